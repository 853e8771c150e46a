//! One immutable tree in a single byte buffer: a unit's segment, or a
//! mirror's base (many segments merged). Written once by `build.rs` or
//! `merge.rs`, then only read; persisted and reloaded as is.

use std::ops::Range;
use std::path::Path;

use crate::digest::{Algo, Digest};

use super::format::{self, Header};
use super::name::Name;
use super::{FileInfo, Kind, Source};

/// Index of a node within one tree.
pub type TreeId = u32;

pub struct Tree {
    pub(super) buf: Vec<u8>,
    pub(super) hdr: Header,
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

impl Tree {
    /// Reads and validates a persisted tree.
    pub fn load(path: &Path) -> Result<Tree, LoadError> {
        let buf = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Tree::from_bytes(buf).map_err(|what| LoadError::Corrupt {
            path: path.display().to_string(),
            what,
        })
    }

    /// The tree `format::Writer` just sealed in `buf`.
    pub(super) fn sealed(buf: Vec<u8>) -> Result<Tree, format::BuildError> {
        Tree::from_bytes(buf).map_err(format::BuildError::Internal)
    }

    /// Validates an encoded tree.
    pub fn from_bytes(buf: Vec<u8>) -> Result<Tree, String> {
        let hdr = format::header(&buf)?;
        let tree = Tree { buf, hdr };
        tree.validate()?;
        Ok(tree)
    }

    /// The encoded bytes, to persist.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The first 16 bytes of the trailer (the SHA-256 of the content): the
    /// tree's name, so equal trees share one file.
    pub fn hash(&self) -> [u8; 16] {
        self.buf[self.buf.len() - format::TRAILER_LEN..][..16]
            .try_into()
            .expect("16 bytes")
    }

    /// What the tree holds (a unit's name; empty for a base).
    pub fn label(&self) -> &str {
        self.string(self.hdr.label.0, self.hdr.label.1)
    }

    pub fn node_count(&self) -> u32 {
        self.hdr.node_count
    }

    /// The mirror slot the tree was built for (its inodes' top byte).
    pub fn slot(&self) -> u8 {
        self.hdr.slot
    }

    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    pub fn ino(&self, id: TreeId) -> u64 {
        self.u64_at(self.rec(id) + format::OFF_INO)
    }

    pub fn kind(&self, id: TreeId) -> Kind {
        if self.buf[self.rec(id) + format::OFF_KIND] == format::KIND_DIR {
            Kind::Dir
        } else {
            Kind::File
        }
    }

    pub fn name(&self, id: TreeId) -> Name<'_> {
        let r = self.rec(id);
        let (off, len) = (
            self.u32_at(r + format::OFF_NAME),
            u32::from(self.buf[r + format::OFF_NAME_LEN]),
        );
        if self.buf[r + format::OFF_FLAGS] & format::FLAG_NAME_HEX != 0 {
            let at = self.hdr.strings.start + off as usize;
            Name::Hex(&self.buf[at..at + len as usize])
        } else {
            Name::Plain(self.string(off, len))
        }
    }

    pub fn parent(&self, id: TreeId) -> TreeId {
        self.u32_at(self.rec(id) + format::OFF_PARENT)
    }

    pub fn mtime(&self, id: TreeId) -> u32 {
        self.u32_at(self.rec(id) + format::OFF_MTIME)
    }

    /// (first child, count); (0, 0) for files.
    pub(super) fn child_range(&self, id: TreeId) -> (u32, u32) {
        let r = self.rec(id);
        if self.buf[r + format::OFF_KIND] != format::KIND_DIR {
            return (0, 0);
        }
        let p = r + format::OFF_PAYLOAD;
        (self.u32_at(p), self.u32_at(p + 4))
    }

    /// The node's children (empty for files), sorted by name.
    pub fn children(&self, id: TreeId) -> Range<TreeId> {
        let (first, count) = self.child_range(id);
        first..first + count
    }

    /// Finds `name` among the children of directory `dir`.
    pub fn lookup(&self, dir: TreeId, name: &str) -> Option<TreeId> {
        let range = self.children(dir);
        let (mut lo, mut hi) = (range.start, range.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.name(mid).cmp_bytes(name.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// Resolves a `/`-separated path from the root.
    pub fn resolve(&self, path: &str) -> Option<TreeId> {
        let mut id = 0;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            id = self.lookup(id, c)?;
        }
        Some(id)
    }

    /// Finds the node with inode number `ino` (trees with an inode index;
    /// `None` otherwise). Inode numbers are uniform hashes below the slot
    /// byte, so an interpolation search needs a handful of probes.
    pub fn find_ino(&self, ino: u64) -> Option<TreeId> {
        if !self.hdr.indexed {
            return None;
        }
        let key = |i: usize| self.ino(self.u32_at(self.hdr.inos.start + i * 4));
        let (mut lo, mut hi) = (0usize, self.hdr.node_count as usize);
        let mut rounds = 0;
        while lo < hi {
            let mid = if hi - lo > 8 && rounds < 4 {
                rounds += 1;
                let (a, b) = (key(lo), key(hi - 1));
                if ino < a || ino > b {
                    return None;
                }
                let span = u128::from((b - a).max(1));
                lo + ((u128::from(ino - a) * (hi - lo - 1) as u128) / span) as usize
            } else {
                lo + (hi - lo) / 2
            };
            match key(mid).cmp(&ino) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return Some(self.u32_at(self.hdr.inos.start + mid * 4));
                }
            }
        }
        None
    }

    /// The file facts of a file node; `None` for directories.
    pub fn file(&self, id: TreeId) -> Option<FileInfo> {
        let r = self.rec(id);
        let kind = self.buf[r + format::OFF_KIND];
        if kind == format::KIND_DIR {
            return None;
        }
        let size = self.u64_at(r + format::OFF_PAYLOAD);
        let source = if kind == format::KIND_STORED {
            Source::Stored
        } else {
            Source::Remote { url: self.url(id) }
        };
        Some(FileInfo {
            size: (size != format::SIZE_UNKNOWN).then_some(size),
            digest: self.digest_of(id),
            source,
        })
    }

    /// Whether a file node is stored in the metadata store (vs. remote).
    /// The digests of the metadata files stored with this tree (not
    /// artifacts fetched from upstream).
    pub fn stored_digests(&self) -> Vec<Digest> {
        (0..self.node_count())
            .filter(|&id| self.kind(id) == Kind::File && self.is_stored(id))
            .map(|id| self.digest_of(id))
            .collect()
    }

    pub(super) fn is_stored(&self, id: TreeId) -> bool {
        self.buf[self.rec(id) + format::OFF_KIND] == format::KIND_STORED
    }

    /// The raw digest of a file node: (algorithm code, bytes).
    pub(super) fn digest_raw(&self, id: TreeId) -> &[u8] {
        let at = self.hdr.digests.start + self.u32_at(self.rec(id) + format::OFF_DIGEST) as usize;
        let algo = Algo::from_code(self.buf[at]).expect("validated at load");
        &self.buf[at..at + 1 + algo.byte_len()]
    }

    /// The digest of a file node.
    pub fn digest_of(&self, id: TreeId) -> Digest {
        let raw = self.digest_raw(id);
        let algo = Algo::from_code(raw[0]).expect("validated at load");
        Digest::from_bytes(algo, &raw[1..]).expect("validated at load")
    }

    /// The size the metadata promised (`None`: learn it first).
    pub(super) fn size(&self, id: TreeId) -> Option<u64> {
        let s = self.u64_at(self.rec(id) + format::OFF_PAYLOAD);
        (s != format::SIZE_UNKNOWN).then_some(s)
    }

    /// The mirror-relative path of a node (no leading `/`; empty for the root).
    pub fn path(&self, id: TreeId) -> String {
        let mut parts = Vec::new();
        let mut cur = id;
        while cur != 0 {
            parts.push(self.name(cur));
            cur = self.parent(cur);
        }
        let mut path = String::with_capacity(parts.iter().map(|n| n.len() + 1).sum());
        for (i, n) in parts.iter().rev().enumerate() {
            if i > 0 {
                path.push('/');
            }
            path.push_str(&n.as_str());
        }
        path
    }

    /// The upstream URL of a remote file node.
    pub fn url(&self, id: TreeId) -> String {
        match self.url_parts(id) {
            UrlParts::Prefix(p) => format!("{p}{}", self.path(id)),
            UrlParts::Explicit(u) => u.to_string(),
        }
    }

    pub(super) fn url_parts(&self, id: TreeId) -> UrlParts<'_> {
        let r = self.rec(id);
        if self.buf[r + format::OFF_FLAGS] & format::FLAG_URL_PREFIX != 0 {
            let p = self.hdr.prefixes.start + self.buf[r + format::OFF_PREFIX] as usize * 8;
            UrlParts::Prefix(self.string(self.u32_at(p), self.u32_at(p + 4)))
        } else {
            let e = self.url_entry(id).unwrap_or(self.hdr.urls.start);
            UrlParts::Explicit(self.string(self.u32_at(e + 4), self.u32_at(e + 8)))
        }
    }

    /// Byte position of `id`'s entry in the URL table.
    pub(super) fn url_entry(&self, id: TreeId) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.hdr.url_count as usize);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let at = self.hdr.urls.start + mid * 12;
            match self.u32_at(at).cmp(&id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(at),
            }
        }
        None
    }

    pub(super) fn rec(&self, id: TreeId) -> usize {
        self.hdr.nodes.start + id as usize * format::NODE_LEN
    }

    /// A string the tree refers to (a name, URL, prefix or the label): only
    /// offsets from the tree's own records reach here.
    pub(super) fn string(&self, off: u32, len: u32) -> &str {
        let at = self.hdr.strings.start + off as usize;
        let bytes = &self.buf[at..at + len as usize];
        // SAFETY: `validate` checked, when the tree was loaded or built,
        // that every string a record refers to is in range and UTF-8, and
        // the buffer is never written afterwards. Names are compared on
        // every lookup: checking them again each time cost 8% of a lazy
        // mirror's materializing lookups (B8, perf).
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    pub(super) fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.buf[at..at + 4].try_into().unwrap())
    }

    pub(super) fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.buf[at..at + 8].try_into().unwrap())
    }
}

/// Where a remote file's URL comes from.
pub(super) enum UrlParts<'a> {
    /// This prefix plus the node's path.
    Prefix(&'a str),
    Explicit(&'a str),
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("label", &self.label())
            .field("nodes", &self.hdr.node_count)
            .field("bytes", &self.buf.len())
            .finish()
    }
}
