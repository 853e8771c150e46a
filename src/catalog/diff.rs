//! What the kernel must forget after a swap.
//!
//! A directory's listing changes only where a unit's contribution to it
//! changed, so a swap is compared at the directories of the segments it
//! added, replaced or dropped (their old and new versions), name by name:
//! the cost is those units', not the catalog's. [`diff_all`] walks every
//! directory instead (for tests, which check the two agree).

use super::tree::Tree;
use super::{Generation, Kind};

/// What the kernel must forget after swapping `old` for `new`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Invalidations {
    /// Directories whose listing changed (drop cached readdir and attributes).
    pub inodes: Vec<u64>,
    /// (parent inode, name) entries that now resolve differently or not at all.
    pub entries: Vec<(u64, String)>,
}

impl Invalidations {
    pub fn is_empty(&self) -> bool {
        self.inodes.is_empty() && self.entries.is_empty()
    }

    fn sort(&mut self) {
        self.inodes.sort_unstable();
        self.inodes.dedup();
        self.entries.sort_unstable();
        self.entries.dedup();
    }
}

/// Compares two generations of one mirror at the directories of
/// `touched`: every segment whose contribution differs between them. Each
/// directory is compared where a segment has it, name by name, so what is
/// held is the answer alone (a first sync of a million files under a mount
/// used to collect every name first: 135 MiB at the B5 scale). A
/// directory the old generation did not have is skipped: the kernel has
/// nothing cached of it.
pub fn diff(old: &Generation, new: &Generation, touched: &[&Tree]) -> Invalidations {
    let mut out = Invalidations::default();
    for t in touched {
        for d in 0..t.node_count() {
            if t.kind(d) != Kind::Dir {
                continue;
            }
            let dir = t.ino(d);
            let Some(od) = old.find_ino(dir).filter(|&n| old.kind(n) == Kind::Dir) else {
                continue;
            };
            let nd = new.find_ino(dir).filter(|&n| new.kind(n) == Kind::Dir);
            let mut changed = false;
            for c in t.children(d) {
                let name = t.name(c);
                let name = name.as_str();
                let o = old.lookup(od, &name).map(|c| old.ino(c));
                let n = nd.and_then(|d| new.lookup(d, &name)).map(|c| new.ino(c));
                if o != n {
                    changed = true;
                    if o.is_some() {
                        out.entries.push((dir, name.to_string()));
                    }
                }
            }
            if changed {
                out.inodes.push(dir);
            }
        }
    }
    out.sort();
    out
}

/// Compares two generations at every directory of `old`.
pub fn diff_all(old: &Generation, new: &Generation) -> Invalidations {
    let mut out = Invalidations::default();
    let mut todo = vec![old.root()];
    while let Some(d) = todo.pop() {
        let ino = old.ino(d);
        let nd = new.find_ino(ino).filter(|&n| new.kind(n) == Kind::Dir);
        let same_listing = nd.is_some_and(|nd| {
            old.children(d)
                .map(|c| (old.name(c), old.ino(c)))
                .eq(new.children(nd).map(|c| (new.name(c), new.ino(c))))
        });
        for c in old.children(d) {
            if old.kind(c) == Kind::Dir {
                todo.push(c);
            }
        }
        if same_listing {
            continue;
        }
        out.inodes.push(ino);
        for c in old.children(d) {
            let name = old.name(c).as_str();
            let same = nd
                .and_then(|nd| new.lookup(nd, &name))
                .is_some_and(|nc| new.ino(nc) == old.ino(c));
            if !same {
                out.entries.push((ino, name.to_string()));
            }
        }
    }
    out.sort();
    out
}
