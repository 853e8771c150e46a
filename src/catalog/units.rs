//! The units a generation holds, sorted by name, each with its segment
//! (by hash) and where its nodes are: merged into the base, or an overlay
//! source. One string arena and one array, so deriving the next table
//! costs two copies, not an allocation per unit.

/// Where a unit's nodes are served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Base,
    /// Overlay source index (≥ 1).
    Overlay(u32),
}

#[derive(Clone, Copy, Debug)]
struct Rec {
    off: u32,
    len: u32,
    seg: [u8; 16],
    /// 0: in the base; else the overlay source.
    src: u32,
}

#[derive(Clone, Default, Debug)]
pub struct Units {
    names: String,
    recs: Vec<Rec>,
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
        let mut t = Units::default();
        for u in v {
            t.push(u);
        }
        t
    }

    fn push(&mut self, u: Unit) {
        let off = self.names.len() as u32;
        self.names.push_str(u.name);
        self.recs.push(Rec {
            off,
            len: u.name.len() as u32,
            seg: u.seg,
            src: match u.place {
                Place::Base => 0,
                Place::Overlay(s) => s,
            },
        });
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

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

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Unit<'_>> + '_ {
        self.recs.iter().map(|r| self.unit(r))
    }

    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.iter().map(|u| u.name)
    }

    pub fn get(&self, name: &str) -> Option<Unit<'_>> {
        self.recs
            .binary_search_by(|r| self.unit(r).name.cmp(name))
            .ok()
            .map(|i| self.unit(&self.recs[i]))
    }

    /// This table with `units` added (or replaced, by name).
    pub fn with<'a>(&self, units: impl IntoIterator<Item = Unit<'a>>) -> Units {
        let mut add: Vec<Unit> = units.into_iter().collect();
        add.sort_by(|a, b| a.name.cmp(b.name));
        let mut out = Units {
            names: String::with_capacity(
                self.names.len() + add.iter().map(|u| u.name.len()).sum::<usize>(),
            ),
            recs: Vec::with_capacity(self.recs.len() + add.len()),
        };
        let mut old = self.iter().peekable();
        let mut new = add.into_iter().peekable();
        loop {
            match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => out.push(old.next().expect("peeked")),
                (None, Some(_)) => out.push(new.next().expect("peeked")),
                (Some(o), Some(n)) => match o.name.cmp(n.name) {
                    std::cmp::Ordering::Less => out.push(old.next().expect("peeked")),
                    std::cmp::Ordering::Greater => out.push(new.next().expect("peeked")),
                    std::cmp::Ordering::Equal => {
                        old.next();
                        out.push(new.next().expect("peeked"));
                    }
                },
            }
        }
        out
    }

    pub fn byte_len(&self) -> usize {
        self.names.len() + self.recs.len() * std::mem::size_of::<Rec>()
    }
}
