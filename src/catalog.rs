//! The catalog: a mirror's tree, one immutable generation at a time.
//!
//! A generation is a small root over immutable per-unit segments, so
//! changing one unit (a lazy lookup, a sync that touched three projects)
//! costs that unit, not the whole catalog:
//!
//! ```text
//! root     generation number, the units and their segments (root.rs)
//! segment  one unit's tree (a PyPI project, an npm package, a Debian
//!          suite), built from its entries (build.rs), persisted and
//!          validated on its own, named by its hash and shared by every
//!          generation in which the unit is unchanged
//! base     the segments of the last sync merged into one tree (merge.rs)
//! overlay  segments added since (materialized units, the root entries
//!          such as PyPI's simple/index.html), merged into the view only
//!          where their directories meet the base's (overlay.rs)
//! ```
//!
//! Every tree is one byte buffer (`format.rs`): breadth-first nodes, sorted
//! children, so a lookup is a binary search, and the view adds at most one
//! hash probe per directory. When the overlay grows past a bound it is
//! merged into a new base in the background; readers cannot tell (the view
//! is the same).
//!
//! Inode numbers are derived, not allocated: the top byte is the mirror's
//! slot, the rest a hash of the path (directories) or of the path and the
//! content digest (files). An unchanged file keeps its inode across swaps and
//! restarts whichever tree holds it; a changed file gets a new one, so the
//! kernel can keep data cached per inode forever and only directory entries
//! need invalidating (`diff.rs`).

mod build;
mod chunked;
mod diff;
mod format;
mod merge;
mod name;
mod overlay;
mod root;
mod tree;
mod units;
mod validate;
mod view;

pub use build::{Body, Built, Entry, Prev, build_tree, ino_for};
pub use diff::{Invalidations, diff, diff_all};
pub use format::BuildError;
pub use merge::{Merged, merge};
pub use name::Name;
pub use root::RootFile;
pub use tree::{LoadError, Tree, TreeId};
pub use units::{Place, Unit, Units};
pub use view::{Children, Generation, Info};

use std::sync::Arc;

use crate::digest::Digest;

/// A node of a generation: node `id` of source `src` (0: the base; k: the
/// overlay's k-th segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub src: u32,
    pub id: TreeId,
}

/// Inode of the filesystem root (above every mirror).
pub const ROOT_INO: u64 = 1;

/// Mask of the per-mirror part of an inode number.
pub const INO_HASH_MASK: u64 = (1 << 56) - 1;

/// The mirror slot encoded in an inode number.
pub fn ino_slot(ino: u64) -> u8 {
    (ino >> 56) as u8
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

impl FileInfo {
    /// How an entry serves this file again in a later generation (signed
    /// layouts keep superseded files reachable for a grace period).
    pub fn into_body(self) -> Body {
        match self.source {
            Source::Stored => Body::Stored {
                digest: self.digest,
                size: self.size.unwrap_or(0),
            },
            Source::Remote { url } => Body::Remote {
                url,
                size: self.size,
                digest: self.digest,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// A generation built from entries in one step (tests and layouts' tests).
pub struct BuildOutput {
    pub generation: Generation,
    /// Inline bodies to put into the metadata store, by SHA-256.
    pub blobs: Vec<(Digest, Vec<u8>)>,
    /// Paths withheld because entries disagreed about them.
    pub conflicts: Vec<String>,
}

/// Builds generation `number` of the mirror in `slot` from `entries`, as
/// one base tree, carrying times over from `prev`.
pub fn build(
    slot: u8,
    number: u64,
    now: u32,
    entries: Vec<Entry>,
    units: Vec<String>,
    prev: Option<&Generation>,
) -> Result<BuildOutput, BuildError> {
    let built = build_tree(slot, now, "", entries, prev.map(|p| p as &dyn Prev), true)?;
    let units = Units::new(units.iter().map(|u| Unit {
        name: u,
        seg: [0; 16],
        place: Place::Base,
    }));
    let info = Info {
        number,
        created: u64::from(now),
        ..Info::default()
    };
    Ok(BuildOutput {
        generation: Generation::of_base(slot, built.tree, info, units),
        blobs: built.blobs,
        conflicts: built.conflicts,
    })
}

/// Derives the next generation from `cur` by adding `segs` to its overlay
/// and dropping the overlay sources `drop`; returns it with the sources the
/// segments got and the conflicts withheld.
pub fn extend(
    cur: &Generation,
    drop: &[u32],
    segs: Vec<Arc<Tree>>,
) -> (Generation, Vec<u32>, Vec<String>) {
    let mut overlay = (*cur.overlay).clone();
    for &src in drop {
        overlay.remove(&cur.base, src);
    }
    let mut srcs = Vec::with_capacity(segs.len());
    let mut conflicts = Vec::new();
    for seg in segs {
        let src = overlay.free_src();
        conflicts.extend(overlay.add(&cur.base, src, seg));
        srcs.push(src);
    }
    let next = Generation {
        slot: cur.slot,
        shown: cur.shown,
        info: cur.info.clone(),
        base: cur.base.clone(),
        overlay: Arc::new(overlay),
        units: cur.units.clone(),
    };
    (next, srcs, conflicts)
}

impl Generation {
    /// This generation with `info` and `units` replaced.
    pub fn with(mut self, info: Info, units: Units) -> Generation {
        self.info = info;
        self.units = Arc::new(units);
        self
    }

    /// A generation of `base` and the overlay segments `segs`.
    pub fn assemble(
        slot: u8,
        base: Arc<Tree>,
        info: Info,
        segs: Vec<Arc<Tree>>,
    ) -> (Generation, Vec<u32>, Vec<String>) {
        let g = Generation {
            slot,
            shown: slot,
            info,
            base,
            overlay: Arc::default(),
            units: Arc::default(),
        };
        extend(&g, &[], segs)
    }
}

#[cfg(test)]
mod tests;
