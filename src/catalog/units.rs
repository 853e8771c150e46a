//! The units a generation holds, sorted by name, each with its segment
//! (by hash) and where its nodes are: merged into the base, or an overlay
//! source.
//!
//! The table is split into chunks of consecutive units, each shared
//! between generations until written, so deriving the next table for a
//! materialized unit copies the chunk pointers and the one chunk it lands
//! in, not every unit (profiled on B8 at 10,000 npm units: copying the
//! whole table was the largest cost that grew with the catalog).

use std::sync::Arc;

/// Where a unit's nodes are served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Base,
    /// Overlay source index (≥ 1).
    Overlay(u32),
}

/// Units a chunk holds when built; one that grows to twice this is split.
const CHUNK: usize = 256;

#[derive(Clone, Copy, Debug)]
struct Rec {
    off: u32,
    len: u32,
    seg: [u8; 16],
    /// 0: in the base; else the overlay source.
    src: u32,
}

/// Consecutive units: one string arena, records sorted by name.
#[derive(Clone, Default, Debug)]
struct Chunk {
    names: String,
    recs: Vec<Rec>,
}

impl Chunk {
    fn unit(&self, r: &Rec) -> Unit<'_> {
        Unit {
            name: &self.names[r.off as usize..(r.off + r.len) as usize],
            seg: r.seg,
            place: if r.src == 0 {
                Place::Base
            } else {
                Place::Overlay(r.src)
            },
        }
    }

    fn rec(&mut self, u: &Unit) -> Rec {
        let off = self.names.len() as u32;
        self.names.push_str(u.name);
        Rec {
            off,
            len: u.name.len() as u32,
            seg: u.seg,
            src: match u.place {
                Place::Base => 0,
                Place::Overlay(s) => s,
            },
        }
    }

    fn search(&self, name: &str) -> Result<usize, usize> {
        self.recs.binary_search_by(|r| self.unit(r).name.cmp(name))
    }

    fn last_name(&self) -> &str {
        self.recs.last().map_or("", |r| self.unit(r).name)
    }

    /// Adds `u`, or replaces the unit of its name.
    fn put(&mut self, u: &Unit) {
        match self.search(u.name) {
            Ok(i) => {
                let r = &mut self.recs[i];
                r.seg = u.seg;
                r.src = match u.place {
                    Place::Base => 0,
                    Place::Overlay(s) => s,
                };
            }
            Err(i) => {
                let r = self.rec(u);
                self.recs.insert(i, r);
            }
        }
    }

    fn of<'a>(units: impl IntoIterator<Item = Unit<'a>>) -> Chunk {
        let mut c = Chunk::default();
        for u in units {
            let r = c.rec(&u);
            c.recs.push(r);
        }
        c
    }
}

#[derive(Clone, Default, Debug)]
pub struct Units {
    chunks: Vec<Arc<Chunk>>,
    len: usize,
}

/// One unit of a [`Units`] table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit<'a> {
    pub name: &'a str,
    /// The segment's hash (its file name).
    pub seg: [u8; 16],
    pub place: Place,
}

impl Units {
    /// A table of `units`, given in any order (a name given twice keeps the last).
    pub fn new<'a>(units: impl IntoIterator<Item = Unit<'a>>) -> Units {
        let mut v: Vec<Unit> = units.into_iter().collect();
        v.sort_by(|a, b| a.name.cmp(b.name));
        v.reverse();
        v.dedup_by(|a, b| a.name == b.name);
        v.reverse();
        Units {
            len: v.len(),
            chunks: v
                .chunks(CHUNK)
                .map(|c| Arc::new(Chunk::of(c.iter().copied())))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Unit<'_>> + '_ {
        Iter {
            chunks: &self.chunks,
            at: (0, 0),
            left: self.len,
        }
    }

    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.iter().map(|u| u.name)
    }

    /// The chunk that holds `name` or would: the first whose last name is
    /// not below it (the last chunk for a name above every other).
    fn chunk_for(&self, name: &str) -> usize {
        self.chunks
            .partition_point(|c| c.last_name() < name)
            .min(self.chunks.len().saturating_sub(1))
    }

    pub fn get(&self, name: &str) -> Option<Unit<'_>> {
        let c = self.chunks.get(self.chunk_for(name))?;
        c.search(name).ok().map(|i| c.unit(&c.recs[i]))
    }

    /// This table with `units` added (or replaced, by name).
    pub fn with<'a>(&self, units: impl IntoIterator<Item = Unit<'a>>) -> Units {
        let mut out = self.clone();
        for u in units {
            if out.chunks.is_empty() {
                out.chunks.push(Arc::default());
            }
            let i = out.chunk_for(u.name);
            let c = Arc::make_mut(&mut out.chunks[i]);
            let before = c.recs.len();
            c.put(&u);
            out.len += c.recs.len() - before;
            if c.recs.len() >= 2 * CHUNK {
                let (lo, hi) = c.recs.split_at(CHUNK);
                let halves = [lo, hi].map(|h| Chunk::of(h.iter().map(|r| c.unit(r))));
                let [lo, hi] = halves.map(Arc::new);
                out.chunks[i] = lo;
                out.chunks.insert(i + 1, hi);
            }
        }
        out
    }

    pub fn byte_len(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.names.len() + c.recs.len() * std::mem::size_of::<Rec>())
            .sum()
    }
}

struct Iter<'a> {
    chunks: &'a [Arc<Chunk>],
    /// (chunk, record) of the next unit.
    at: (usize, usize),
    left: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Unit<'a>;

    fn next(&mut self) -> Option<Unit<'a>> {
        loop {
            let c = self.chunks.get(self.at.0)?;
            if let Some(r) = c.recs.get(self.at.1) {
                self.at.1 += 1;
                self.left -= 1;
                return Some(c.unit(r));
            }
            self.at = (self.at.0 + 1, 0);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}
