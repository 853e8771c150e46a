//! The catalog: one generation's immutable tree of a mirror.
//!
//! A generation is a single byte buffer, written once by [`build`] and then
//! only read, so it can be persisted and reloaded as is (restart serves
//! instantly and offline) and shared between threads behind an `Arc`.
//!
//! ```text
//! header   magic, version, counts, generation number, creation time
//! nodes    node_count × 48-byte records in breadth-first order: the children
//!          of every directory are contiguous and sorted by name, so lookup
//!          is a binary search; node 0 is the mirror root
//! inos     node_count × (u64 ino, u32 node) sorted by ino (getattr/open)
//! prefixes URL prefixes shared by many artifacts ("https://host/")
//! units    names of the units (projects, packages) this generation holds
//! strings  names, explicit URLs, prefixes and units
//! digests  algorithm code + raw digest bytes
//! trailer  SHA-256 of everything before it
//! ```
//!
//! Inode numbers are derived, not allocated: the top byte is the mirror's
//! slot, the rest a hash of the path (directories) or of the path and the
//! content digest (files). An unchanged file keeps its inode across swaps and
//! restarts; a changed file gets a new one, so the kernel can keep data
//! cached per inode forever and only directory entries need invalidating.
//!
//! A node costs 48 bytes plus its name, its digest and 12 bytes of index;
//! an artifact whose upstream URL is a shared prefix plus its own path (the
//! common case) stores no URL at all.

mod build;
mod format;

pub use build::{Body, BuildError, BuildOutput, Entry, build, ino_for};
pub use format::LoadError;

use std::ops::Range;

use crate::digest::Digest;

/// Index of a node within one generation.
pub type NodeId = u32;

/// Inode of the filesystem root (above every mirror).
pub const ROOT_INO: u64 = 1;

/// Mask of the per-mirror part of an inode number.
pub const INO_HASH_MASK: u64 = (1 << 56) - 1;

/// The mirror slot encoded in an inode number.
pub fn ino_slot(ino: u64) -> u8 {
    (ino >> 56) as u8
}

/// One immutable generation of a mirror's tree.
pub struct Generation {
    buf: Vec<u8>,
    hdr: format::Header,
}

/// What a file node serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Fetched from upstream on first read, verified against the digest.
    Remote { url: String },
    /// Stored at sync time in the mirror's metadata store under its SHA-256.
    Stored,
}

/// A file node's facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// `None` when upstream metadata gave no size (invariant 8: learn it first).
    pub size: Option<u64>,
    pub digest: Digest,
    pub source: Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

impl Generation {
    /// The generation number (monotonic per mirror).
    pub fn number(&self) -> u64 {
        self.hdr.number
    }

    /// Unix time the generation was built.
    pub fn created(&self) -> u64 {
        self.hdr.created
    }

    pub fn node_count(&self) -> u32 {
        self.hdr.node_count
    }

    /// Size of the encoded generation in bytes (what it costs in memory).
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    pub fn units(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.hdr.unit_count).map(|i| {
            let r = self.hdr.units.start + i as usize * 8;
            self.string(self.u32_at(r), self.u32_at(r + 4))
        })
    }

    pub fn has_unit(&self, unit: &str) -> bool {
        // Units are stored sorted.
        let n = self.hdr.unit_count as usize;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let r = self.hdr.units.start + mid * 8;
            match self.string(self.u32_at(r), self.u32_at(r + 4)).cmp(unit) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    pub fn root(&self) -> NodeId {
        0
    }

    pub fn ino(&self, id: NodeId) -> u64 {
        self.u64_at(self.rec(id))
    }

    pub fn kind(&self, id: NodeId) -> Kind {
        if self.buf[self.rec(id) + format::OFF_KIND] == format::KIND_DIR {
            Kind::Dir
        } else {
            Kind::File
        }
    }

    pub fn name(&self, id: NodeId) -> &str {
        let r = self.rec(id);
        let len = u16::from_le_bytes([
            self.buf[r + format::OFF_NAME_LEN],
            self.buf[r + format::OFF_NAME_LEN + 1],
        ]);
        self.string(self.u32_at(r + format::OFF_NAME), len as u32)
    }

    pub fn parent(&self, id: NodeId) -> NodeId {
        self.u32_at(self.rec(id) + format::OFF_PARENT)
    }

    /// Modification time in Unix seconds.
    pub fn mtime(&self, id: NodeId) -> u32 {
        self.u32_at(self.rec(id) + format::OFF_MTIME)
    }

    /// The node's children (empty for files), sorted by name.
    pub fn children(&self, id: NodeId) -> Range<NodeId> {
        let r = self.rec(id);
        if self.buf[r + format::OFF_KIND] != format::KIND_DIR {
            return 0..0;
        }
        let first = self.u32_at(r + format::OFF_A);
        first..first + self.u32_at(r + format::OFF_B)
    }

    /// A hash of a directory's (name, inode) pairs; equal hashes mean equal listings.
    pub fn dir_hash(&self, id: NodeId) -> u64 {
        self.u64_at(self.rec(id) + format::OFF_SIZE)
    }

    /// Finds `name` among the children of directory `dir`.
    pub fn lookup(&self, dir: NodeId, name: &str) -> Option<NodeId> {
        let range = self.children(dir);
        let (mut lo, mut hi) = (range.start, range.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.name(mid).as_bytes().cmp(name.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// Resolves a `/`-separated path from the root.
    pub fn resolve(&self, path: &str) -> Option<NodeId> {
        let mut id = self.root();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            id = self.lookup(id, c)?;
        }
        Some(id)
    }

    /// Finds the node with inode number `ino`.
    pub fn find_ino(&self, ino: u64) -> Option<NodeId> {
        let base = self.hdr.inos.start;
        let (mut lo, mut hi) = (0usize, self.hdr.node_count as usize);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let r = base + mid * 12;
            match self.u64_at(r).cmp(&ino) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.u32_at(r + 8)),
            }
        }
        None
    }

    /// The file facts of a file node; `None` for directories.
    pub fn file(&self, id: NodeId) -> Option<FileInfo> {
        let r = self.rec(id);
        let kind = self.buf[r + format::OFF_KIND];
        if kind == format::KIND_DIR {
            return None;
        }
        let size = self.u64_at(r + format::OFF_SIZE);
        let digest = self.digest_at(self.u32_at(r + format::OFF_A));
        let source = if kind == format::KIND_STORED {
            Source::Stored
        } else {
            Source::Remote {
                url: self.url(id, r),
            }
        };
        Some(FileInfo {
            size: (size != format::SIZE_UNKNOWN).then_some(size),
            digest,
            source,
        })
    }

    /// The digest of a stored (metadata) file; `None` for anything else.
    /// Cheaper than [`Generation::file`]: no URL is built.
    pub fn stored_digest(&self, id: NodeId) -> Option<Digest> {
        let r = self.rec(id);
        (self.buf[r + format::OFF_KIND] == format::KIND_STORED)
            .then(|| self.digest_at(self.u32_at(r + format::OFF_A)))
    }

    /// The digest of a remote artifact; `None` for anything else.
    pub fn remote_digest(&self, id: NodeId) -> Option<Digest> {
        let r = self.rec(id);
        (self.buf[r + format::OFF_KIND] == format::KIND_REMOTE)
            .then(|| self.digest_at(self.u32_at(r + format::OFF_A)))
    }

    /// The mirror-relative path of a node (no leading `/`; empty for the root).
    pub fn path(&self, id: NodeId) -> String {
        let mut parts = Vec::new();
        let mut cur = id;
        while cur != 0 {
            parts.push(self.name(cur));
            cur = self.parent(cur);
        }
        parts.reverse();
        parts.join("/")
    }

    /// Every file node, in tree order.
    pub fn files(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.hdr.node_count).filter(|&id| self.kind(id) == Kind::File)
    }

    fn url(&self, id: NodeId, r: usize) -> String {
        let b = self.u32_at(r + format::OFF_B);
        let c = self.u32_at(r + format::OFF_C);
        if self.buf[r + format::OFF_FLAGS] & format::FLAG_URL_PREFIX != 0 {
            let p = self.hdr.prefixes.start + b as usize * 8;
            let prefix = self.string(self.u32_at(p), self.u32_at(p + 4));
            format!("{prefix}{}", self.path(id))
        } else {
            self.string(b, c).to_string()
        }
    }

    fn digest_at(&self, off: u32) -> Digest {
        let at = self.hdr.digests.start + off as usize;
        let algo = crate::digest::Algo::from_code(self.buf[at]).expect("validated at load");
        Digest::from_bytes(algo, &self.buf[at + 1..at + 1 + algo.byte_len()])
            .expect("validated at load")
    }

    fn rec(&self, id: NodeId) -> usize {
        self.hdr.nodes.start + id as usize * format::NODE_LEN
    }

    fn string(&self, off: u32, len: u32) -> &str {
        let at = self.hdr.strings.start + off as usize;
        // Validated as UTF-8 when the generation was loaded or built.
        std::str::from_utf8(&self.buf[at..at + len as usize]).unwrap_or("")
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.buf[at..at + 4].try_into().unwrap())
    }

    fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.buf[at..at + 8].try_into().unwrap())
    }
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("number", &self.hdr.number)
            .field("nodes", &self.hdr.node_count)
            .field("bytes", &self.buf.len())
            .finish()
    }
}

/// What the kernel must forget after swapping `old` for `new`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Invalidations {
    /// Directories whose listing changed (drop cached readdir and attributes).
    pub inodes: Vec<u64>,
    /// (parent inode, name) entries that now resolve differently or not at all.
    pub entries: Vec<(u64, String)>,
}

/// Compares two generations of one mirror and lists what changed.
pub fn diff(old: &Generation, new: &Generation) -> Invalidations {
    let mut out = Invalidations::default();
    for dir in 0..old.node_count() {
        if old.kind(dir) != Kind::Dir {
            continue;
        }
        let ino = old.ino(dir);
        let new_dir = new.find_ino(ino).filter(|&d| new.kind(d) == Kind::Dir);
        if let Some(nd) = new_dir {
            if new.dir_hash(nd) == old.dir_hash(dir) {
                continue;
            }
        }
        out.inodes.push(ino);
        for child in old.children(dir) {
            let name = old.name(child);
            let same = new_dir
                .and_then(|nd| new.lookup(nd, name))
                .is_some_and(|nc| new.ino(nc) == old.ino(child));
            if !same {
                out.entries.push((ino, name.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
