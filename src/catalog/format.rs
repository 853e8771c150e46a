//! The byte layout of a persisted generation, and its validation on load.
//!
//! Loading checks the trailing SHA-256 and then every offset, so a torn or
//! corrupted file is refused as a whole (the previous generation is served)
//! and the accessors in `catalog.rs` never index out of bounds.

use std::ops::Range;
use std::path::Path;

use crate::digest::{Algo, Digest};

use super::Generation;

pub(super) const MAGIC: &[u8; 8] = b"REGFSCAT";
pub(super) const VERSION: u32 = 1;
pub(super) const HEADER_LEN: usize = 64;
pub(super) const NODE_LEN: usize = 48;
pub(super) const TRAILER_LEN: usize = 32;

// Node record fields (byte offsets inside a record).
pub(super) const OFF_SIZE: usize = 8; // file size, or a directory's listing hash
pub(super) const OFF_PARENT: usize = 16;
pub(super) const OFF_NAME: usize = 20;
pub(super) const OFF_NAME_LEN: usize = 24;
pub(super) const OFF_KIND: usize = 26;
pub(super) const OFF_FLAGS: usize = 27;
pub(super) const OFF_MTIME: usize = 28;
pub(super) const OFF_A: usize = 32; // dir: first child; file: digest offset
pub(super) const OFF_B: usize = 36; // dir: child count; file: URL prefix id or URL offset
pub(super) const OFF_C: usize = 40; // file: explicit URL length

pub(super) const KIND_DIR: u8 = 0;
pub(super) const KIND_REMOTE: u8 = 1;
pub(super) const KIND_STORED: u8 = 2;
pub(super) const FLAG_URL_PREFIX: u8 = 1;
pub(super) const SIZE_UNKNOWN: u64 = u64::MAX;

/// Decoded header: counts and the byte range of every section.
#[derive(Clone, Debug)]
pub(super) struct Header {
    pub number: u64,
    pub created: u64,
    pub node_count: u32,
    pub unit_count: u32,
    pub nodes: Range<usize>,
    pub inos: Range<usize>,
    pub prefixes: Range<usize>,
    pub units: Range<usize>,
    pub strings: Range<usize>,
    pub digests: Range<usize>,
}

/// Section sizes, written into the header.
pub(super) struct Counts {
    pub number: u64,
    pub created: u64,
    pub nodes: u32,
    pub prefixes: u32,
    pub units: u32,
    pub strings: u32,
    pub digests: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read catalog: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: corrupt catalog: {what}")]
    Corrupt { path: String, what: String },
}

impl Header {
    fn layout(c: &Counts) -> Header {
        let mut at = HEADER_LEN;
        let mut take = |len: usize| {
            let r = at..at + len;
            at += len;
            r
        };
        Header {
            number: c.number,
            created: c.created,
            node_count: c.nodes,
            unit_count: c.units,
            nodes: take(c.nodes as usize * NODE_LEN),
            inos: take(c.nodes as usize * 12),
            prefixes: take(c.prefixes as usize * 8),
            units: take(c.units as usize * 8),
            strings: take(c.strings as usize),
            digests: take(c.digests as usize),
        }
    }

    fn total_len(&self) -> usize {
        self.digests.end + TRAILER_LEN
    }
}

/// Writes the header for `counts` into a zeroed buffer of the right length.
pub(super) fn new_buffer(c: &Counts) -> (Vec<u8>, Header) {
    let hdr = Header::layout(c);
    let mut buf = vec![0u8; hdr.total_len()];
    buf[0..8].copy_from_slice(MAGIC);
    buf[8..12].copy_from_slice(&VERSION.to_le_bytes());
    buf[12..16].copy_from_slice(&c.nodes.to_le_bytes());
    buf[16..24].copy_from_slice(&c.number.to_le_bytes());
    buf[24..32].copy_from_slice(&c.created.to_le_bytes());
    buf[32..36].copy_from_slice(&c.prefixes.to_le_bytes());
    buf[36..40].copy_from_slice(&c.units.to_le_bytes());
    buf[40..44].copy_from_slice(&c.strings.to_le_bytes());
    buf[44..48].copy_from_slice(&c.digests.to_le_bytes());
    (buf, hdr)
}

/// Seals a filled buffer with its checksum trailer.
pub(super) fn seal(buf: &mut [u8]) {
    let end = buf.len() - TRAILER_LEN;
    let sum = Digest::sha256_of(&buf[..end]);
    buf[end..].copy_from_slice(sum.as_bytes());
}

impl Generation {
    /// The encoded bytes, to persist.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Reads and validates a persisted generation.
    pub fn load(path: &Path) -> Result<Generation, LoadError> {
        let buf = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Generation::from_bytes(buf).map_err(|what| LoadError::Corrupt {
            path: path.display().to_string(),
            what,
        })
    }

    /// Validates an encoded generation.
    pub fn from_bytes(buf: Vec<u8>) -> Result<Generation, String> {
        if buf.len() < HEADER_LEN + TRAILER_LEN || &buf[0..8] != MAGIC {
            return Err("not a regfs catalog".into());
        }
        let u32_at = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
        if u32_at(8) != VERSION {
            return Err(format!(
                "catalog version {} (this regfs reads {VERSION})",
                u32_at(8)
            ));
        }
        let counts = Counts {
            nodes: u32_at(12),
            number: u64_at(16),
            created: u64_at(24),
            prefixes: u32_at(32),
            units: u32_at(36),
            strings: u32_at(40),
            digests: u32_at(44),
        };
        let hdr = Header::layout(&counts);
        if hdr.total_len() != buf.len() {
            return Err(format!(
                "length {} does not match its header ({})",
                buf.len(),
                hdr.total_len()
            ));
        }
        let end = buf.len() - TRAILER_LEN;
        if Digest::sha256_of(&buf[..end]).as_bytes() != &buf[end..] {
            return Err("checksum mismatch (torn or corrupted write)".into());
        }
        if counts.nodes == 0 {
            return Err("no root node".into());
        }
        let generation = Generation { buf, hdr };
        generation.validate()?;
        Ok(generation)
    }

    /// Checks every reference inside the buffer so accessors cannot go out of bounds.
    fn validate(&self) -> Result<(), String> {
        let h = &self.hdr;
        let n = h.node_count;
        let strings_len = h.strings.len();
        let str_ok = |off: u32, len: u32| -> Result<(), String> {
            let (off, len) = (off as usize, len as usize);
            let at = h.strings.start + off;
            if off + len > strings_len {
                return Err("string out of range".into());
            }
            std::str::from_utf8(&self.buf[at..at + len])
                .map_err(|_| "string is not UTF-8".to_string())?;
            Ok(())
        };
        for p in 0..counts_of(&h.prefixes) {
            let r = h.prefixes.start + p * 8;
            str_ok(self.u32_at(r), self.u32_at(r + 4))?;
        }
        for u in 0..h.unit_count as usize {
            let r = h.units.start + u * 8;
            str_ok(self.u32_at(r), self.u32_at(r + 4))?;
        }
        let prefix_count = counts_of(&h.prefixes) as u32;
        for id in 0..n {
            let r = self.rec(id);
            let name_len =
                u16::from_le_bytes([self.buf[r + OFF_NAME_LEN], self.buf[r + OFF_NAME_LEN + 1]]);
            str_ok(self.u32_at(r + OFF_NAME), name_len as u32)?;
            if id != 0 && self.u32_at(r + OFF_PARENT) >= id {
                return Err(format!("node {id}: parent does not precede it"));
            }
            let (a, b, c) = (
                self.u32_at(r + OFF_A),
                self.u32_at(r + OFF_B),
                self.u32_at(r + OFF_C),
            );
            match self.buf[r + OFF_KIND] {
                KIND_DIR => {
                    if (a as u64 + b as u64) > n as u64 || (b > 0 && a <= id) {
                        return Err(format!("node {id}: children out of range"));
                    }
                }
                kind @ (KIND_REMOTE | KIND_STORED) => {
                    let at = a as usize;
                    let algo = self
                        .buf
                        .get(h.digests.start + at)
                        .filter(|_| at < h.digests.len())
                        .and_then(|&code| Algo::from_code(code))
                        .ok_or_else(|| format!("node {id}: bad digest"))?;
                    if at + 1 + algo.byte_len() > h.digests.len() {
                        return Err(format!("node {id}: digest out of range"));
                    }
                    if kind == KIND_REMOTE {
                        if self.buf[r + OFF_FLAGS] & FLAG_URL_PREFIX != 0 {
                            if b >= prefix_count {
                                return Err(format!("node {id}: URL prefix out of range"));
                            }
                        } else {
                            str_ok(b, c)?;
                        }
                    }
                }
                k => return Err(format!("node {id}: unknown kind {k}")),
            }
        }
        let mut prev = None;
        for i in 0..n as usize {
            let r = h.inos.start + i * 12;
            let ino = self.u64_at(r);
            let id = self.u32_at(r + 8);
            if prev.is_some_and(|p| p >= ino) || id >= n {
                return Err("inode index not sorted or out of range".into());
            }
            // Sorted, unique, and one entry per node: each must name its node.
            if self.u64_at(self.rec(id)) != ino {
                return Err(format!("inode index entry {i} does not match node {id}"));
            }
            prev = Some(ino);
        }
        Ok(())
    }
}

fn counts_of(r: &Range<usize>) -> usize {
    r.len() / 8
}
