//! The byte layout of a persisted tree (a unit's segment or a mirror's
//! base), how one is written, and its validation on load.
//!
//! ```text
//! header   64 bytes: magic, version, counts, the mirror slot, a label
//! nodes    node_count × 36-byte records in breadth-first order: the
//!          children of every directory are contiguous and sorted by name
//! inos     node_count × u32 node ids sorted by inode (bases only: the view
//!          finds a segment's nodes through its own index)
//! prefixes URL prefixes shared by many artifacts ("https://host/"), (off, len)
//! urls     (node, off, len) of artifacts whose URL is not prefix + path
//! strings  names, URLs, prefixes and the label
//! digests  algorithm code + raw digest bytes, each distinct one once
//! trailer  SHA-256 of everything before it
//! ```
//!
//! Loading checks the trailer and then every offset, so a torn or corrupted
//! file is refused as a whole and the accessors in `tree.rs` never index
//! out of bounds.

use std::ops::Range;

use crate::digest::Digest;

pub(super) const MAGIC: &[u8; 8] = b"REGFSTRE";
/// Version 1 was the single-buffer generation (`generations/<n>.cat`);
/// version 3 added packed hex names (`FLAG_NAME_HEX`), and reads version 2.
pub(super) const VERSION: u32 = 3;
pub(super) const HEADER_LEN: usize = 64;
pub(super) const NODE_LEN: usize = 36;
pub(super) const TRAILER_LEN: usize = 32;

// Node record fields (byte offsets inside a record).
pub(super) const OFF_INO: usize = 0;
/// File: size (u64, `SIZE_UNKNOWN` if none). Dir: first child, child count (u32 each).
pub(super) const OFF_PAYLOAD: usize = 8;
pub(super) const OFF_PARENT: usize = 16;
pub(super) const OFF_NAME: usize = 20;
/// File: offset of its digest in the digest section.
pub(super) const OFF_DIGEST: usize = 24;
pub(super) const OFF_MTIME: usize = 28;
pub(super) const OFF_NAME_LEN: usize = 32;
pub(super) const OFF_KIND: usize = 33;
pub(super) const OFF_FLAGS: usize = 34;
/// Remote file with `FLAG_URL_PREFIX`: index of its URL prefix.
pub(super) const OFF_PREFIX: usize = 35;

pub(super) const KIND_DIR: u8 = 0;
pub(super) const KIND_REMOTE: u8 = 1;
pub(super) const KIND_STORED: u8 = 2;
/// The URL is a shared prefix plus the node's path.
pub(super) const FLAG_URL_PREFIX: u8 = 1;
/// The URL is in the `urls` section.
pub(super) const FLAG_URL_EXPLICIT: u8 = 2;
/// Any node: the name is packed hex (`name.rs`); `name_len` counts packed bytes.
pub(super) const FLAG_NAME_HEX: u8 = 0x80;
pub(super) const SIZE_UNKNOWN: u64 = u64::MAX;
/// Prefix ids fit a byte; further prefixes are written as explicit URLs.
pub(super) const MAX_PREFIXES: usize = 255;

/// Decoded header: counts and the byte range of every section.
#[derive(Clone, Debug)]
pub(super) struct Header {
    pub node_count: u32,
    pub prefix_count: u32,
    pub url_count: u32,
    pub indexed: bool,
    pub slot: u8,
    pub label: (u32, u32),
    pub nodes: Range<usize>,
    pub inos: Range<usize>,
    pub prefixes: Range<usize>,
    pub urls: Range<usize>,
    pub strings: Range<usize>,
    pub digests: Range<usize>,
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
            node_count: c.nodes,
            prefix_count: c.prefixes,
            url_count: c.urls,
            indexed: c.indexed,
            slot: c.slot,
            label: c.label,
            nodes: take(c.nodes as usize * NODE_LEN),
            inos: take(if c.indexed { c.nodes as usize * 4 } else { 0 }),
            prefixes: take(c.prefixes as usize * 8),
            urls: take(c.urls as usize * 12),
            strings: take(c.strings as usize),
            digests: take(c.digests as usize),
        }
    }

    fn total_len(&self) -> usize {
        self.digests.end + TRAILER_LEN
    }
}

/// Section sizes, written into the header.
pub(super) struct Counts {
    pub nodes: u32,
    pub prefixes: u32,
    pub urls: u32,
    pub strings: u32,
    pub digests: u32,
    pub indexed: bool,
    pub slot: u8,
    pub label: (u32, u32),
}

/// One node before encoding.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Rec {
    pub ino: u64,
    pub payload: u64,
    pub parent: u32,
    pub name: u32,
    pub name_len: u8,
    pub digest: u32,
    pub mtime: u32,
    pub kind: u8,
    pub flags: u8,
    pub prefix: u8,
}

impl Rec {
    pub fn dir_payload(first: u32, count: u32) -> u64 {
        u64::from(first) | (u64::from(count) << 32)
    }
}

/// A tree being written: the header and node records go straight into the
/// final buffer (a merge of a million nodes holds no second copy), the other
/// sections are appended by [`Writer::finish`].
pub(super) struct Writer {
    buf: Vec<u8>,
    nodes: u32,
    pub prefixes: Vec<(u32, u32)>,
    /// (node, off, len), pushed in node order.
    pub urls: Vec<(u32, u32, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("catalog too large: {0}")]
    TooLarge(&'static str),
    #[error("internal error: the encoded catalog does not validate: {0}")]
    Internal(String),
}

impl Writer {
    /// `nodes` is a capacity hint (an upper bound costs only address space).
    pub fn new(nodes: usize, extra: usize) -> Writer {
        let mut buf = Vec::with_capacity(HEADER_LEN + nodes * (NODE_LEN + 4) + extra);
        buf.resize(HEADER_LEN, 0);
        Writer {
            buf,
            nodes: 0,
            prefixes: Vec::new(),
            urls: Vec::new(),
        }
    }

    pub fn len(&self) -> u32 {
        self.nodes
    }

    /// Appends a node record and returns its id.
    pub fn push(&mut self, r: &Rec) -> Result<u32, BuildError> {
        let id = self.nodes;
        self.nodes = id.checked_add(1).ok_or(BuildError::TooLarge("nodes"))?;
        let mut rec = [0u8; NODE_LEN];
        rec[OFF_INO..OFF_INO + 8].copy_from_slice(&r.ino.to_le_bytes());
        rec[OFF_PAYLOAD..OFF_PAYLOAD + 8].copy_from_slice(&r.payload.to_le_bytes());
        rec[OFF_PARENT..OFF_PARENT + 4].copy_from_slice(&r.parent.to_le_bytes());
        rec[OFF_NAME..OFF_NAME + 4].copy_from_slice(&r.name.to_le_bytes());
        rec[OFF_DIGEST..OFF_DIGEST + 4].copy_from_slice(&r.digest.to_le_bytes());
        rec[OFF_MTIME..OFF_MTIME + 4].copy_from_slice(&r.mtime.to_le_bytes());
        rec[OFF_NAME_LEN] = r.name_len;
        rec[OFF_KIND] = r.kind;
        rec[OFF_FLAGS] = r.flags;
        rec[OFF_PREFIX] = r.prefix;
        self.buf.extend_from_slice(&rec);
        Ok(id)
    }

    fn at(&self, id: u32) -> usize {
        HEADER_LEN + id as usize * NODE_LEN
    }

    /// Sets a directory's children once they are laid out.
    pub fn set_children(&mut self, id: u32, first: u32, count: u32) {
        let at = self.at(id) + OFF_PAYLOAD;
        self.buf[at..at + 8].copy_from_slice(&Rec::dir_payload(first, count).to_le_bytes());
    }

    /// Gives every directory the time of its newest descendant (`now` if
    /// it has none): parents precede children, so one backward pass does.
    pub fn lift_dir_mtimes(&mut self, now: u32) {
        let u32_at =
            |buf: &[u8], at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().unwrap());
        for id in (1..self.nodes).rev() {
            let at = self.at(id);
            let (parent, mtime) = (
                u32_at(&self.buf, at + OFF_PARENT),
                u32_at(&self.buf, at + OFF_MTIME),
            );
            let p = self.at(parent) + OFF_MTIME;
            if mtime > u32_at(&self.buf, p) {
                put32(&mut self.buf, p, mtime);
            }
        }
        for id in 0..self.nodes {
            let at = self.at(id);
            if self.buf[at + OFF_KIND] == KIND_DIR && u32_at(&self.buf, at + OFF_MTIME) == 0 {
                put32(&mut self.buf, at + OFF_MTIME, now);
            }
        }
    }

    /// Appends the other sections (`strings` and `digests` as the
    /// concatenation of their chunks, then `label`), seals the buffer and
    /// validates it; `indexed` adds the inode index.
    pub fn finish(
        self,
        slot: u8,
        label: &str,
        strings: &[&[u8]],
        digests: &[&[u8]],
        indexed: bool,
    ) -> Result<Vec<u8>, BuildError> {
        let Writer {
            mut buf,
            nodes,
            prefixes,
            urls,
        } = self;
        let strings_len: usize = strings.iter().map(|s| s.len()).sum::<usize>() + label.len();
        let digests_len: usize = digests.iter().map(|s| s.len()).sum();
        let c = Counts {
            nodes,
            prefixes: prefixes.len() as u32,
            urls: urls.len() as u32,
            strings: u32::try_from(strings_len).map_err(|_| BuildError::TooLarge("strings"))?,
            digests: u32::try_from(digests_len).map_err(|_| BuildError::TooLarge("digests"))?,
            indexed,
            slot,
            label: ((strings_len - label.len()) as u32, label.len() as u32),
        };
        let hdr = Header::layout(&c);
        buf.reserve_exact(hdr.total_len() - buf.len());
        if indexed {
            let order = ino_order(&mut buf, nodes, slot);
            for id in order {
                buf.extend_from_slice(&id.to_le_bytes());
            }
        }
        for (off, len) in &prefixes {
            buf.extend_from_slice(&off.to_le_bytes());
            buf.extend_from_slice(&len.to_le_bytes());
        }
        for (node, off, len) in &urls {
            buf.extend_from_slice(&node.to_le_bytes());
            buf.extend_from_slice(&off.to_le_bytes());
            buf.extend_from_slice(&len.to_le_bytes());
        }
        for s in strings {
            buf.extend_from_slice(s);
        }
        buf.extend_from_slice(label.as_bytes());
        for d in digests {
            buf.extend_from_slice(d);
        }
        debug_assert_eq!(buf.len(), hdr.digests.end);
        buf[0..8].copy_from_slice(MAGIC);
        put32(&mut buf, 8, VERSION);
        put32(&mut buf, 12, c.nodes);
        put32(&mut buf, 16, c.prefixes);
        put32(&mut buf, 20, c.urls);
        put32(&mut buf, 24, c.strings);
        put32(&mut buf, 28, c.digests);
        buf[32] = u8::from(indexed);
        buf[33] = slot;
        put32(&mut buf, 36, c.label.0);
        put32(&mut buf, 40, c.label.1);
        let sum = Digest::sha256_of(&buf);
        buf.extend_from_slice(sum.as_bytes());
        buf.shrink_to_fit();
        Ok(buf)
    }
}

/// The node ids sorted by inode number, after giving every node a distinct
/// one: different nodes (of two merged sources) can only share one by a hash
/// collision (about 2^-56 a pair); the later node is then renumbered,
/// deterministically.
fn ino_order(buf: &mut [u8], nodes: u32, slot: u8) -> Vec<u32> {
    let at = |id: u32| HEADER_LEN + id as usize * NODE_LEN + OFF_INO;
    let ino = |buf: &[u8], id: u32| u64::from_le_bytes(buf[at(id)..at(id) + 8].try_into().unwrap());
    let mut order: Vec<u32> = (0..nodes).collect();
    loop {
        order.sort_unstable_by_key(|&i| (ino(buf, i), i));
        let dups: Vec<u32> = order
            .windows(2)
            .filter(|p| ino(buf, p[0]) == ino(buf, p[1]))
            .map(|p| p[1])
            .collect();
        if dups.is_empty() {
            return order;
        }
        for id in dups {
            let old = ino(buf, id);
            let mixed = (old ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xff51_afd7_ed55_8ccd);
            let new = (u64::from(slot) << 56) | (mixed & super::INO_HASH_MASK).max(2);
            tracing::warn!(
                old,
                new,
                "renumbering a node whose inode collided with another's"
            );
            buf[at(id)..at(id) + 8].copy_from_slice(&new.to_le_bytes());
        }
    }
}

/// Appends a node name to a string arena, packed if it is long hex, and
/// returns its offset, its stored length and its flag.
pub(super) fn push_name(arena: &mut Vec<u8>, name: &str) -> Result<(u32, u8, u8), BuildError> {
    let off = u32::try_from(arena.len()).map_err(|_| BuildError::TooLarge("strings"))?;
    Ok(match super::name::pack(name) {
        Some(p) => {
            arena.extend_from_slice(&p);
            (off, p.len() as u8, FLAG_NAME_HEX)
        }
        None => {
            arena.extend_from_slice(name.as_bytes());
            (off, name.len() as u8, 0)
        }
    })
}

/// Appends `s` to a string arena and returns its offset.
pub(super) fn push_string(arena: &mut Vec<u8>, s: &str) -> Result<u32, BuildError> {
    let off = u32::try_from(arena.len()).map_err(|_| BuildError::TooLarge("strings"))?;
    arena.extend_from_slice(s.as_bytes());
    Ok(off)
}

/// Appends a digest to a digest arena and returns its offset.
pub(super) fn push_digest(arena: &mut Vec<u8>, d: &Digest) -> Result<u32, BuildError> {
    let off = u32::try_from(arena.len()).map_err(|_| BuildError::TooLarge("digests"))?;
    arena.push(d.algo().code());
    arena.extend_from_slice(d.as_bytes());
    Ok(off)
}

fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Parses and checks a header against the buffer's length and trailer.
pub(super) fn header(buf: &[u8]) -> Result<Header, String> {
    if buf.len() < HEADER_LEN + TRAILER_LEN || &buf[0..8] != MAGIC {
        return Err("not a regfs catalog tree".into());
    }
    let u32_at = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().unwrap());
    if !(2..=VERSION).contains(&u32_at(8)) {
        return Err(format!(
            "catalog tree version {} (this regfs reads {VERSION})",
            u32_at(8)
        ));
    }
    let c = Counts {
        nodes: u32_at(12),
        prefixes: u32_at(16),
        urls: u32_at(20),
        strings: u32_at(24),
        digests: u32_at(28),
        indexed: buf[32] != 0,
        slot: buf[33],
        label: (u32_at(36), u32_at(40)),
    };
    let hdr = Header::layout(&c);
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
    if c.nodes == 0 {
        return Err("no root node".into());
    }
    Ok(hdr)
}
