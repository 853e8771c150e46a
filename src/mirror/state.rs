//! A mirror's catalog on disk: trees named by their hash and roots that
//! name them.
//!
//! ```text
//! <mirror>/catalog/seg-<hash>      one unit's segment (or the root entries,
//!                                  or carried-over entries)
//! <mirror>/catalog/base-<hash>     a base: segments merged
//! <mirror>/catalog/root-<seq>      a generation's root (`catalog::RootFile`)
//! ```
//!
//! Trees are written before the root that names them, the filesystem is
//! synced before the root is written and the directory after, so a crash
//! leaves the last complete root and everything it names. Loading takes the newest root whose trees
//! all validate; a torn or corrupted file sends it to the one before.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::catalog::{self, Generation, Info, LoadError, Place, RootFile, Tree, Unit, Units};
use crate::digest::encode_hex;

/// How long a tree file no root names is kept as possibly in flight.
const IN_FLIGHT: std::time::Duration = std::time::Duration::from_secs(60);

pub(super) struct Catalog {
    dir: PathBuf,
    /// Tree files written (or reused) since the last sync ended that no
    /// root may name yet: a sync writes its segments long before its root,
    /// so garbage collection keeps these whatever their age.
    fresh: Mutex<HashSet<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TreeKind {
    Segment,
    Base,
}

impl TreeKind {
    fn prefix(self) -> &'static str {
        match self {
            TreeKind::Segment => "seg-",
            TreeKind::Base => "base-",
        }
    }
}

/// Why no generation could be loaded.
pub(super) enum Loaded {
    Generation(Generation),
    /// Nothing on disk: a first start.
    Nothing,
    /// State of an older regfs (catalog format 1), which this one does not read.
    OldFormat,
}

impl Catalog {
    pub fn open(mirror_dir: &Path) -> std::io::Result<Catalog> {
        let dir = mirror_dir.join("catalog");
        std::fs::create_dir_all(&dir)?;
        crate::durable::clean_temps(&dir);
        Ok(Catalog {
            dir,
            fresh: Mutex::default(),
        })
    }

    pub fn path(&self, kind: TreeKind, hash: &[u8; 16]) -> PathBuf {
        self.dir
            .join(format!("{}{}", kind.prefix(), encode_hex(hash)))
    }

    /// Writes `tree` unless a file of that hash exists. It is durable once
    /// the next root is written ([`Catalog::put_root`] syncs the filesystem
    /// first).
    pub fn put_tree(&self, kind: TreeKind, tree: &Tree) -> std::io::Result<()> {
        let path = self.path(kind, &tree.hash());
        if let Some(name) = path.file_name() {
            let name = name.to_string_lossy().into_owned();
            self.fresh.lock().unwrap().insert(name);
        }
        if path.exists() {
            return Ok(());
        }
        crate::durable::write_unsynced(&path, tree.as_bytes())
    }

    /// Forgets the trees written so far as in flight (a sync ended: what it
    /// wrote is named by its root now, or never will be); those of a
    /// lookup still in flight are kept by their age.
    pub fn settle(&self) {
        self.fresh.lock().unwrap().clear();
    }

    pub fn load_tree(&self, kind: TreeKind, hash: &[u8; 16]) -> Result<Tree, LoadError> {
        let path = self.path(kind, hash);
        let tree = Tree::load(&path)?;
        if tree.hash() != *hash {
            return Err(LoadError::Corrupt {
                path: path.display().to_string(),
                what: "its content does not match its name".into(),
            });
        }
        Ok(tree)
    }

    /// Writes the root of `g` and syncs the directory: `g` is what a
    /// restart serves from now on.
    pub fn put_root(&self, g: &Generation) -> std::io::Result<()> {
        crate::durable::sync_fs(&self.dir)?;
        let root = root_of(g);
        let path = self.dir.join(format!("root-{:020}", root.seq));
        crate::durable::write_unsynced_dir(&path, &root.encode())?;
        crate::durable::sync_dir(&self.dir)
    }

    /// Root sequence numbers on disk, newest first.
    fn roots(&self) -> Vec<u64> {
        let mut seqs: Vec<u64> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("root-")?.parse().ok())
            .collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs
    }

    /// The newest generation whose root and trees all load.
    pub fn load(&self, slot: u8, mirror: &str) -> Loaded {
        let seqs = self.roots();
        if seqs.is_empty() {
            let dir = self.dir.parent().unwrap_or(&self.dir);
            if dir.join("current").exists() || dir.join("generations").exists() {
                return Loaded::OldFormat;
            }
            return Loaded::Nothing;
        }
        for seq in seqs {
            let path = self.dir.join(format!("root-{seq:020}"));
            let root = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| RootFile::decode(&b));
            let loaded = root
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|r| self.assemble(slot, &r).map_err(|e| e.to_string()));
            match loaded {
                Ok(g) => return Loaded::Generation(g),
                Err(e) => {
                    tracing::error!(mirror, "{e}; trying the generation before it")
                }
            }
        }
        Loaded::Nothing
    }

    pub fn assemble(&self, slot: u8, r: &RootFile) -> Result<Generation, LoadError> {
        let base = match &r.base {
            Some(h) => self.load_tree(TreeKind::Base, h)?,
            None => empty_base(slot, r.created as u32),
        };
        let overlay: Vec<&(String, [u8; 16], bool)> = r.units.iter().filter(|u| !u.2).collect();
        let mut segs = Vec::with_capacity(overlay.len() + 1);
        for (_, h, _) in &overlay {
            segs.push(Arc::new(self.load_tree(TreeKind::Segment, h)?));
        }
        if let Some(h) = &r.roots {
            segs.push(Arc::new(self.load_tree(TreeKind::Segment, h)?));
        }
        let info = Info {
            number: r.number,
            materialized: r.materialized,
            created: r.created,
            seq: r.seq,
            roots: None,
            carry: r.carry,
        };
        let (g, srcs, _) = Generation::assemble(slot, Arc::new(base), info.clone(), segs);
        let mut at = srcs.iter();
        let mut units = Vec::with_capacity(r.units.len());
        for (name, seg, in_base) in &r.units {
            let place = if *in_base {
                Place::Base
            } else {
                Place::Overlay(*at.next().expect("one source per overlay unit"))
            };
            units.push(Unit {
                name,
                seg: *seg,
                place,
            });
        }
        let info = Info {
            roots: r.roots.and(at.next().copied()),
            ..info
        };
        Ok(g.with(info, Units::new(units)))
    }

    /// Removes roots and trees that none of `keep` names.
    pub fn collect_garbage(&self, keep: &[&Generation]) {
        let mut live: HashSet<String> = HashSet::new();
        for g in keep {
            let r = root_of(g);
            live.insert(format!("root-{:020}", r.seq));
            for (kind, h) in r
                .base
                .iter()
                .map(|h| (TreeKind::Base, h))
                .chain(
                    r.roots
                        .iter()
                        .chain(&r.carry)
                        .map(|h| (TreeKind::Segment, h)),
                )
                .chain(r.units.iter().map(|u| (TreeKind::Segment, &u.1)))
            {
                live.insert(format!("{}{}", kind.prefix(), encode_hex(h)));
            }
        }
        let mut fresh = self.fresh.lock().unwrap();
        fresh.retain(|n| !live.contains(n));
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = ["root-", "seg-", "base-"]
                .iter()
                .any(|p| name.starts_with(p));
            // A segment written in the last minute may be a lookup's that
            // is not swapped in yet.
            let recent = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|a| a < IN_FLIGHT));
            let keep = live.contains(&name)
                || fresh.contains(&name)
                || (recent && name.starts_with("seg-"));
            if ours && !keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Removes one tree file (a replaced root entries' segment).
    pub fn remove_tree(&self, kind: TreeKind, hash: &[u8; 16]) {
        let _ = std::fs::remove_file(self.path(kind, hash));
    }

    /// Removes a root file older than the previous one.
    pub fn remove_root(&self, seq: u64) {
        if seq > 0 {
            let _ = std::fs::remove_file(self.dir.join(format!("root-{seq:020}")));
        }
    }
}

/// A base with nothing in it but the mirror root.
pub(super) fn empty_base(slot: u8, now: u32) -> Tree {
    catalog::merge(slot, now, &[])
        .map(|m| m.tree)
        .expect("an empty tree encodes")
}

/// The root that names `g`'s trees.
pub(super) fn root_of(g: &Generation) -> RootFile {
    let info = g.info();
    RootFile {
        seq: info.seq,
        number: info.number,
        materialized: info.materialized,
        created: info.created,
        base: Some(g.base().hash()),
        roots: info.roots.and_then(|src| g.segment(src)).map(|t| t.hash()),
        carry: info.carry,
        units: g
            .units_table()
            .iter()
            .map(|u| (u.name.to_string(), u.seg, u.place == Place::Base))
            .collect(),
    }
}
