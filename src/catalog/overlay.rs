//! The overlay: segments not merged into the base yet (units materialized
//! since the last merge, and the root entries), viewed as one tree with it.
//!
//! A directory only one source has is read in that source directly. A
//! directory several sources have (the mirror root, PyPI's `packages/ab/`,
//! `simple/`) gets a merged listing here: its children from every source,
//! sorted by name, each a node of the source that has it. Adding a segment
//! touches only the directories that segment has and copies only their
//! listings, so materializing a unit costs that unit (and the listings it
//! joins), not the catalog. Conflicting claims are withheld as the merge
//! withholds them (`merge.rs`), so merging the overlay into the base later
//! changes nothing a reader can see.

use std::collections::HashSet;
use std::sync::Arc;

use super::chunked::InoMap;
use super::tree::{Tree, TreeId};
use super::{Kind, NodeId};

#[derive(Clone, Default)]
pub(super) struct Overlay {
    /// Source `k` (k ≥ 1) is `segs[k - 1]`; `None` once removed.
    pub segs: Vec<Option<Arc<Tree>>>,
    /// Directories several sources have, by inode.
    pub dirs: InoMap<Arc<MergedDir>>,
    /// Inode → node for what the segments add below the merged directories.
    pub inos: InoMap<NodeId>,
    /// Nodes the view leaves out: withheld conflicts, and a segment's copy
    /// of a file another source already serves.
    pub hidden: HashSet<NodeId>,
    /// Nodes the segments hold (for deciding when to merge them into the base).
    pub nodes: usize,
}

#[derive(Clone, Debug)]
pub(super) struct MergedDir {
    /// This directory in each source that has it.
    pub occ: Vec<NodeId>,
    /// Children sorted by name, each a node of a source that has it.
    pub children: Vec<NodeId>,
    /// The newest of the sources' times for this directory.
    pub mtime: u32,
}

impl Overlay {
    fn tree<'a>(&'a self, base: &'a Tree, src: u32) -> &'a Tree {
        if src == 0 {
            base
        } else {
            self.segs[src as usize - 1]
                .as_deref()
                .expect("a node of a removed segment")
        }
    }

    /// The children of directory `n` as the view has them.
    fn listing(&self, base: &Tree, n: NodeId) -> Vec<NodeId> {
        let t = self.tree(base, n.src);
        match self.dirs.get(&t.ino(n.id)) {
            Some(m) => m.children.clone(),
            None => t
                .children(n.id)
                .map(|id| NodeId { src: n.src, id })
                .collect(),
        }
    }

    /// A free source index for a new segment.
    pub fn free_src(&self) -> u32 {
        match self.segs.iter().position(Option::is_none) {
            Some(i) => i as u32 + 1,
            None => self.segs.len() as u32 + 1,
        }
    }

    /// Adds `seg` as source `src` (from [`Overlay::free_src`]); conflicts
    /// are logged and returned.
    pub fn add(&mut self, base: &Tree, src: u32, seg: Arc<Tree>) -> Vec<String> {
        let i = src as usize - 1;
        if self.segs.len() <= i {
            self.segs.resize(i + 1, None);
        }
        self.nodes += seg.node_count() as usize;
        self.segs[i] = Some(seg.clone());
        let mut conflicts = Vec::new();
        self.merge_dir(base, &seg, src, 0, NodeId { src: 0, id: 0 }, &mut conflicts);
        conflicts
    }

    /// Merges directory `sd` of segment `src` into the view's directory `vd`.
    fn merge_dir(
        &mut self,
        base: &Tree,
        seg: &Tree,
        src: u32,
        sd: TreeId,
        vd: NodeId,
        conflicts: &mut Vec<String>,
    ) {
        let vt = self.tree(base, vd.src);
        let ino = vt.ino(vd.id);
        let mut md = match self.dirs.get(&ino) {
            Some(m) => (**m).clone(),
            None => MergedDir {
                occ: vec![vd],
                children: self.listing(base, vd),
                mtime: vt.mtime(vd.id),
            },
        };
        md.occ.push(NodeId { src, id: sd });
        md.mtime = md.mtime.max(seg.mtime(sd));
        // The segment's few children go into the listing by binary search:
        // the cost is theirs (and one copy), not the listing's length.
        let old = std::mem::take(&mut md.children);
        let mut out = Vec::with_capacity(old.len() + seg.children(sd).len());
        let mut recurse = Vec::new();
        let mut at = 0;
        for c in seg.children(sd) {
            let name = seg.name(c);
            let pos = at + old[at..].partition_point(|e| self.tree(base, e.src).name(e.id) < name);
            out.extend_from_slice(&old[at..pos]);
            at = pos;
            let new = NodeId { src, id: c };
            let Some(&e) = old
                .get(at)
                .filter(|e| self.tree(base, e.src).name(e.id) == name)
            else {
                self.own(seg, src, c);
                out.push(new);
                continue;
            };
            at += 1;
            let et = self.tree(base, e.src);
            match (et.kind(e.id), seg.kind(c)) {
                (Kind::Dir, Kind::Dir) => {
                    out.push(e);
                    recurse.push((c, e));
                }
                (Kind::File, Kind::File) => {
                    if same_file(et, e.id, seg, c) {
                        out.push(e);
                        self.hidden.insert(new);
                    } else {
                        let why = format!(
                            "{}: claimed by two units with different content ({} and {})",
                            seg.path(c),
                            et.digest_of(e.id),
                            seg.digest_of(c)
                        );
                        tracing::warn!("withholding entry: {why}");
                        conflicts.push(why);
                        self.hide(base, e);
                        self.hidden.insert(new);
                    }
                }
                (Kind::Dir, Kind::File) => {
                    out.push(e);
                    self.hidden.insert(new);
                    conflicts.push(file_vs_dir(&seg.path(c)));
                }
                (Kind::File, Kind::Dir) => {
                    self.hide(base, e);
                    self.own(seg, src, c);
                    out.push(new);
                    conflicts.push(file_vs_dir(&seg.path(c)));
                }
            }
        }
        out.extend_from_slice(&old[at..]);
        md.children = out;
        self.dirs.insert(ino, Arc::new(md));
        for (c, e) in recurse {
            self.merge_dir(base, seg, src, c, e, conflicts);
        }
    }

    /// Leaves node `n` (a file) out of the view.
    fn hide(&mut self, base: &Tree, n: NodeId) {
        let ino = self.tree(base, n.src).ino(n.id);
        if self.inos.get(&ino) == Some(&n) {
            self.inos.remove(&ino);
        }
        self.hidden.insert(n);
    }

    /// Registers the subtree at `id` of segment `src`, which no other source has.
    fn own(&mut self, seg: &Tree, src: u32, id: TreeId) {
        let mut todo = vec![id];
        while let Some(n) = todo.pop() {
            self.inos.insert(seg.ino(n), NodeId { src, id: n });
            todo.extend(seg.children(n));
        }
    }

    fn disown(&mut self, seg: &Tree, src: u32, id: TreeId) {
        let mut todo = vec![id];
        while let Some(n) = todo.pop() {
            let node = NodeId { src, id: n };
            if self.inos.get(&seg.ino(n)) == Some(&node) {
                self.inos.remove(&seg.ino(n));
            }
            self.hidden.remove(&node);
            todo.extend(seg.children(n));
        }
    }

    /// Removes source `src`: its files and the directories only it had
    /// leave the view. (A claim it withheld from another source stays
    /// withheld until the next merge into the base; the root entries it is
    /// used for never collide with a unit's paths.)
    pub fn remove(&mut self, base: &Tree, src: u32) {
        let Some(seg) = self.segs.get(src as usize - 1).cloned().flatten() else {
            return;
        };
        self.nodes -= (seg.node_count() as usize).min(self.nodes);
        self.unmerge_dir(base, &seg, src, 0);
        self.hidden.retain(|n| n.src != src);
        self.segs[src as usize - 1] = None;
    }

    /// Takes directory `sd` of the removed segment out of its merged
    /// directory; false when the directory is left with no source.
    fn unmerge_dir(&mut self, base: &Tree, seg: &Tree, src: u32, sd: TreeId) -> bool {
        let ino = seg.ino(sd);
        let Some(m) = self.dirs.get(&ino) else {
            return false;
        };
        let mut md = (**m).clone();
        md.occ.retain(|o| o.src != src);
        let mut children = std::mem::take(&mut md.children);
        for c in seg.children(sd) {
            let name = seg.name(c);
            let Ok(at) =
                children.binary_search_by(|e| self.tree(base, e.src).name(e.id).cmp(&name))
            else {
                continue;
            };
            let e = children[at];
            let child_ino = self.tree(base, e.src).ino(e.id);
            if seg.kind(c) == Kind::Dir && self.dirs.contains_key(&child_ino) {
                if self.unmerge_dir(base, seg, src, c) {
                    // Still there from another source: point at that one.
                    children[at] = self.dirs[&child_ino].occ[0];
                } else {
                    children.remove(at);
                }
            } else if e.src == src {
                self.disown(seg, src, c);
                children.remove(at);
            }
        }
        if md.occ.is_empty() {
            self.dirs.remove(&ino);
            return false;
        }
        md.mtime = md
            .occ
            .iter()
            .map(|o| self.tree(base, o.src).mtime(o.id))
            .max()
            .unwrap_or(0);
        md.children = children;
        self.dirs.insert(ino, Arc::new(md));
        true
    }
}

fn file_vs_dir(path: &str) -> String {
    let why = format!("{path}: is a file in one unit, a directory in another");
    tracing::warn!("withholding entry: {why}");
    why
}

/// Two files at one path that serve the same bytes from the same place.
pub(super) fn same_file(ta: &Tree, a: TreeId, tb: &Tree, b: TreeId) -> bool {
    if ta.is_stored(a) != tb.is_stored(b) || ta.digest_raw(a) != tb.digest_raw(b) {
        return false;
    }
    if let (Some(x), Some(y)) = (ta.size(a), tb.size(b)) {
        if x != y {
            return false;
        }
    }
    ta.is_stored(a) || ta.url(a) == tb.url(b)
}
