//! A generation as readers see it: the base merged with the overlay.

use std::sync::Arc;

use crate::digest::Digest;

use super::build::Prev;
use super::name::Name;
use super::overlay::{MergedDir, Overlay};
use super::tree::Tree;
use super::units::Units;
use super::{FileInfo, Kind, NodeId};

/// One immutable generation of a mirror's tree: a base (the units merged
/// by the last sync or merge, `merge.rs`) and an overlay of segments added
/// since (`overlay.rs`). Cheap to derive from the previous one: the base,
/// the segments and every unchanged merged listing are shared.
#[derive(Clone)]
pub struct Generation {
    pub(super) slot: u8,
    /// The slot its inodes are shown under: `slot`, or a snapshot's own
    /// (see [`Generation::shown_as`]).
    pub(super) shown: u8,
    pub(super) info: Info,
    pub(super) base: Arc<Tree>,
    pub(super) overlay: Arc<Overlay>,
    pub(super) units: Arc<Units>,
}

/// What a generation records besides its tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// Syncs that changed the tree (what `status` calls the generation).
    pub number: u64,
    /// Units materialized by lookups, in all.
    pub materialized: u64,
    /// Unix time the generation was made.
    pub created: u64,
    /// Every swap's sequence number (names the persisted root).
    pub seq: u64,
    /// The source of the root entries' segment in the overlay, if any.
    pub roots: Option<u32>,
    /// The carried-over entries' segment (merged into the base), if any.
    pub carry: Option<[u8; 16]>,
}

/// The children of a directory, in name order.
pub enum Children<'a> {
    Merged(std::slice::Iter<'a, NodeId>),
    Tree(u32, std::ops::Range<u32>),
}

impl Iterator for Children<'_> {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        match self {
            Children::Merged(it) => it.next().copied(),
            Children::Tree(src, r) => r.next().map(|id| NodeId { src: *src, id }),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match self {
            Children::Merged(it) => it.len(),
            Children::Tree(_, r) => r.len(),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Children<'_> {}

impl Generation {
    /// A generation of just `base`.
    pub fn of_base(slot: u8, base: Tree, info: Info, units: Units) -> Generation {
        Generation {
            slot,
            shown: slot,
            info,
            base: Arc::new(base),
            overlay: Arc::default(),
            units: Arc::new(units),
        }
    }

    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The generation number: syncs that changed the tree.
    pub fn number(&self) -> u64 {
        self.info.number
    }

    /// Units materialized by lookups so far.
    pub fn materialized(&self) -> u64 {
        self.info.materialized
    }

    /// Unix time the generation was made.
    pub fn created(&self) -> u64 {
        self.info.created
    }

    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// This generation with its inodes shown under `slot` instead of the
    /// mirror's: the same trees served at a second place (a snapshot's
    /// directory) without two directories sharing an inode.
    pub fn shown_as(&self, slot: u8) -> Generation {
        Generation {
            shown: slot,
            ..self.clone()
        }
    }

    /// The slot of the inodes [`Generation::ino`] gives.
    pub fn shown_slot(&self) -> u8 {
        self.shown
    }

    pub fn base(&self) -> &Arc<Tree> {
        &self.base
    }

    pub fn units_table(&self) -> &Arc<Units> {
        &self.units
    }

    /// The overlay segment at source `src`.
    pub fn segment(&self, src: u32) -> Option<&Arc<Tree>> {
        self.overlay
            .segs
            .get((src as usize).checked_sub(1)?)?
            .as_ref()
    }

    /// The overlay's segments with their sources.
    pub fn segments(&self) -> impl Iterator<Item = (u32, &Arc<Tree>)> + '_ {
        self.overlay
            .segs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as u32 + 1, s)))
    }

    /// Nodes held (base and overlay segments).
    pub fn node_count(&self) -> u64 {
        u64::from(self.base.node_count()) + self.overlay.nodes as u64
    }

    /// Nodes in the overlay's segments.
    pub fn overlay_nodes(&self) -> usize {
        self.overlay.nodes
    }

    /// What the generation costs in memory, roughly: its trees' bytes and
    /// the overlay's indexes.
    pub fn byte_len(&self) -> usize {
        let segs: usize = self.segments().map(|(_, s)| s.byte_len()).sum();
        let merged: usize = self
            .overlay
            .dirs
            .values()
            .map(|m| 48 + 8 * (m.children.len() + m.occ.len()))
            .sum();
        self.base.byte_len() + segs + merged + 24 * self.overlay.inos.len() + self.units.byte_len()
    }

    pub fn units(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.units.names()
    }

    pub fn has_unit(&self, unit: &str) -> bool {
        self.units.get(unit).is_some()
    }

    pub fn root(&self) -> NodeId {
        NodeId { src: 0, id: 0 }
    }

    pub(super) fn tree(&self, src: u32) -> &Tree {
        if src == 0 {
            &self.base
        } else {
            self.overlay.segs[src as usize - 1]
                .as_deref()
                .expect("a node of a removed segment")
        }
    }

    fn merged(&self, n: NodeId) -> Option<&MergedDir> {
        if self.overlay.dirs.is_empty() {
            return None;
        }
        let t = self.tree(n.src);
        if t.kind(n.id) != Kind::Dir {
            return None;
        }
        self.overlay.dirs.get(&t.ino(n.id)).map(|m| &**m)
    }

    pub fn ino(&self, n: NodeId) -> u64 {
        reslot(self.tree(n.src).ino(n.id), self.shown)
    }

    pub fn kind(&self, n: NodeId) -> Kind {
        self.tree(n.src).kind(n.id)
    }

    pub fn name(&self, n: NodeId) -> Name<'_> {
        self.tree(n.src).name(n.id)
    }

    /// The parent directory (the root's is the root).
    pub fn parent(&self, n: NodeId) -> NodeId {
        NodeId {
            src: n.src,
            id: self.tree(n.src).parent(n.id),
        }
    }

    /// Modification time in Unix seconds.
    pub fn mtime(&self, n: NodeId) -> u32 {
        match self.merged(n) {
            Some(m) => m.mtime,
            None => self.tree(n.src).mtime(n.id),
        }
    }

    /// The node's children (empty for files), sorted by name.
    pub fn children(&self, n: NodeId) -> Children<'_> {
        match self.merged(n) {
            Some(m) => Children::Merged(m.children.iter()),
            None => Children::Tree(n.src, self.tree(n.src).children(n.id)),
        }
    }

    /// Child `k` of directory `n` (readdir offsets index this order).
    pub fn child_at(&self, n: NodeId, k: usize) -> Option<NodeId> {
        match self.merged(n) {
            Some(m) => m.children.get(k).copied(),
            None => {
                let r = self.tree(n.src).children(n.id);
                let id = r.start.checked_add(u32::try_from(k).ok()?)?;
                (id < r.end).then_some(NodeId { src: n.src, id })
            }
        }
    }

    /// Finds `name` among the children of directory `dir`.
    pub fn lookup(&self, dir: NodeId, name: &str) -> Option<NodeId> {
        match self.merged(dir) {
            Some(m) => m
                .children
                .binary_search_by(|c| self.name(*c).cmp_bytes(name.as_bytes()))
                .ok()
                .map(|i| m.children[i]),
            None => self
                .tree(dir.src)
                .lookup(dir.id, name)
                .map(|id| NodeId { src: dir.src, id }),
        }
    }

    /// Resolves a `/`-separated path from the root.
    pub fn resolve(&self, path: &str) -> Option<NodeId> {
        let mut n = self.root();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            n = self.lookup(n, c)?;
        }
        Some(n)
    }

    /// Finds the node with inode number `ino`.
    pub fn find_ino(&self, ino: u64) -> Option<NodeId> {
        let ino = reslot(ino, self.slot);
        let o = &*self.overlay;
        if !o.dirs.is_empty() || !o.inos.is_empty() {
            if let Some(m) = o.dirs.get(&ino) {
                return Some(m.occ[0]);
            }
            if let Some(&n) = o.inos.get(&ino) {
                return Some(n);
            }
        }
        let n = NodeId {
            src: 0,
            id: self.base.find_ino(ino)?,
        };
        (o.hidden.is_empty() || !o.hidden.contains(&n)).then_some(n)
    }

    /// The file facts of a file node; `None` for directories.
    pub fn file(&self, n: NodeId) -> Option<FileInfo> {
        self.tree(n.src).file(n.id)
    }

    /// The digest of a stored (metadata) file; `None` for anything else.
    pub fn stored_digest(&self, n: NodeId) -> Option<Digest> {
        let t = self.tree(n.src);
        (t.kind(n.id) == Kind::File && t.is_stored(n.id)).then(|| t.digest_of(n.id))
    }

    /// The digest of a remote artifact; `None` for anything else.
    pub fn remote_digest(&self, n: NodeId) -> Option<Digest> {
        let t = self.tree(n.src);
        (t.kind(n.id) == Kind::File && !t.is_stored(n.id)).then(|| t.digest_of(n.id))
    }

    /// The mirror-relative path of a node (no leading `/`; empty for the root).
    pub fn path(&self, n: NodeId) -> String {
        self.tree(n.src).path(n.id)
    }

    /// Every file node.
    pub fn files(&self) -> impl Iterator<Item = NodeId> + '_ {
        let o = &*self.overlay;
        let base = (0..self.base.node_count())
            .filter(|&id| self.base.kind(id) == Kind::File)
            .map(|id| NodeId { src: 0, id })
            .filter(move |n| o.hidden.is_empty() || !o.hidden.contains(n));
        let added = o
            .inos
            .values()
            .copied()
            .filter(move |n| self.kind(*n) == Kind::File && !o.hidden.contains(n));
        base.chain(added)
    }
}

impl Prev for Generation {
    fn file_mtime(&self, ino: u64) -> Option<u32> {
        let n = self.find_ino(ino)?;
        (self.kind(n) == Kind::File).then(|| self.mtime(n))
    }
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("number", &self.info.number)
            .field("seq", &self.info.seq)
            .field("base", &self.base)
            .field("overlay_nodes", &self.overlay.nodes)
            .finish()
    }
}

/// `ino` with its slot byte set to `slot` (a no-op within the mirror's own
/// slot): how a generation shown as a snapshot maps inodes both ways.
fn reslot(ino: u64, slot: u8) -> u64 {
    (ino & super::INO_HASH_MASK) | (u64::from(slot) << 56)
}
