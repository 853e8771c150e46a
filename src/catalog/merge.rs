//! Merging trees (units' segments, or a base and segments) into one base.
//!
//! The merge walks all sources breadth-first at once: a directory of the
//! output is the union of that path's directories in every source, and its
//! children are their children merged by name. A file claimed by several
//! sources with the same content appears once; claims that differ are all
//! withheld (neither upstream can be believed), as is a file where another
//! source has a directory. The sources' string and digest arenas are copied
//! whole, so a node costs a record rewrite, not a string copy; inode numbers
//! and times come from the sources (a directory's is its newest
//! descendant's, as in a segment).

use std::collections::HashMap;

use super::Kind;
use super::format::{self, BuildError, Rec, Writer};
use super::tree::{Tree, TreeId, UrlParts};

/// A merged base and what was withheld from it.
pub struct Merged {
    pub tree: Tree,
    /// Paths withheld because sources disagreed about them.
    pub conflicts: Vec<String>,
}

/// One source's node: (source index, node).
type Occ = (u32, TreeId);

/// What became of one name's occurrences.
enum Placed {
    Dir(u32),
    File,
    Withheld,
}

struct Sources<'a> {
    trees: &'a [&'a Tree],
    /// Where each source's strings and digests start in the output's.
    string_base: Vec<u32>,
    digest_base: Vec<u32>,
    /// Output prefix id of each source's prefixes (`None`: written explicitly).
    prefix_map: Vec<Vec<Option<u8>>>,
}

/// Merges `sources` into one indexed tree for the mirror in `slot`.
pub fn merge(slot: u8, now: u32, sources: &[&Tree]) -> Result<Merged, BuildError> {
    let mut w = Writer::new(
        sources.iter().map(|t| t.node_count() as usize).sum(),
        sources
            .iter()
            .map(|t| t.hdr.strings.len() + t.hdr.digests.len())
            .sum(),
    );
    let src = Sources::new(sources, &mut w)?;
    // Own strings (URLs that could not keep a prefix id), after the sources'.
    let mut extra: Vec<u8> = Vec::new();
    let mut conflicts = Vec::new();
    let root_ino = sources.first().map_or(0, |t| t.ino(0));
    w.push(&Rec {
        ino: if sources.is_empty() {
            super::ino_for(slot, "", None, 0)
        } else {
            root_ino
        },
        kind: format::KIND_DIR,
        mtime: sources.iter().map(|t| t.mtime(0)).max().unwrap_or(now),
        ..Rec::default()
    })?;
    // Directories of the current level: (output id, range in `occs`).
    let mut level: Vec<(u32, usize, usize)> = vec![(0, 0, sources.len())];
    let mut occs: Vec<Occ> = (0..sources.len() as u32).map(|s| (s, 0)).collect();
    let mut children: Vec<Occ> = Vec::new();
    while !level.is_empty() {
        let mut next_level = Vec::new();
        let mut next_occs: Vec<Occ> = Vec::new();
        for &(out, lo, hi) in &level {
            children.clear();
            for &(s, n) in &occs[lo..hi] {
                children.extend(sources[s as usize].children(n).map(|c| (s, c)));
            }
            let name = |o: &Occ| sources[o.0 as usize].name(o.1);
            children.sort_by(|a, b| name(a).cmp(&name(b)).then(a.0.cmp(&b.0)));
            let first = w.len();
            let mut i = 0;
            while i < children.len() {
                let mut j = i + 1;
                while j < children.len() && name(&children[j]) == name(&children[i]) {
                    j += 1;
                }
                let group = &children[i..j];
                let before = next_occs.len();
                match src.place(
                    &mut w,
                    &mut extra,
                    out,
                    group,
                    &mut next_occs,
                    &mut conflicts,
                )? {
                    Placed::Dir(id) => next_level.push((id, before, next_occs.len())),
                    Placed::File | Placed::Withheld => {}
                }
                i = j;
            }
            w.set_children(out, first, w.len() - first);
        }
        level = next_level;
        occs = next_occs;
    }
    drop(children);
    drop(occs);
    let strings: Vec<&[u8]> = sources
        .iter()
        .map(|t| &t.buf[t.hdr.strings.clone()])
        .chain(std::iter::once(&extra[..]))
        .collect();
    let digests: Vec<&[u8]> = sources
        .iter()
        .map(|t| &t.buf[t.hdr.digests.clone()])
        .collect();
    let tree = Tree::sealed(w.finish(slot, "", &strings, &digests, true)?)?;
    Ok(Merged { tree, conflicts })
}

impl<'a> Sources<'a> {
    fn new(trees: &'a [&'a Tree], w: &mut Writer) -> Result<Sources<'a>, BuildError> {
        let (mut s_at, mut d_at) = (0u64, 0u64);
        let mut string_base = Vec::with_capacity(trees.len());
        let mut digest_base = Vec::with_capacity(trees.len());
        let mut prefix_map = Vec::with_capacity(trees.len());
        let mut ids: HashMap<&str, u8> = HashMap::new();
        for t in trees {
            let base = u32::try_from(s_at).map_err(|_| BuildError::TooLarge("strings"))?;
            string_base.push(base);
            digest_base.push(u32::try_from(d_at).map_err(|_| BuildError::TooLarge("digests"))?);
            let mut map = Vec::with_capacity(t.hdr.prefix_count as usize);
            for p in 0..t.hdr.prefix_count as usize {
                let r = t.hdr.prefixes.start + p * 8;
                let (off, len) = (t.u32_at(r), t.u32_at(r + 4));
                let s = t.string(off, len);
                let id = match ids.get(s) {
                    Some(&id) => Some(id),
                    None if w.prefixes.len() < format::MAX_PREFIXES => {
                        let id = w.prefixes.len() as u8;
                        w.prefixes.push((base + off, len));
                        ids.insert(s, id);
                        Some(id)
                    }
                    None => None,
                };
                map.push(id);
            }
            prefix_map.push(map);
            s_at += t.hdr.strings.len() as u64;
            d_at += t.hdr.digests.len() as u64;
        }
        if s_at > u64::from(u32::MAX) {
            return Err(BuildError::TooLarge("strings"));
        }
        Ok(Sources {
            trees,
            string_base,
            digest_base,
            prefix_map,
        })
    }

    /// Writes the output node for `group` (one name's occurrences under
    /// output directory `parent`): a directory (its directory occurrences
    /// go to `next` for the next level), one file, or nothing (withheld).
    fn place(
        &self,
        w: &mut Writer,
        extra: &mut Vec<u8>,
        parent: u32,
        group: &[Occ],
        next: &mut Vec<Occ>,
        conflicts: &mut Vec<String>,
    ) -> Result<Placed, BuildError> {
        let t = |o: &Occ| self.trees[o.0 as usize];
        let is_dir = |o: &&Occ| t(o).kind(o.1) == Kind::Dir;
        if let Some(&d) = group.iter().find(is_dir) {
            if !group.iter().all(|o| is_dir(&o)) {
                let why = format!(
                    "{}: is a file in one unit, a directory in another",
                    t(&d).path(d.1)
                );
                tracing::warn!("withholding entry: {why}");
                conflicts.push(why);
            }
            // Its sources' times already count every descendant (also any
            // withheld here), as the overlay's merged directories do.
            let mut rec = self.rec(d, parent, format::KIND_DIR);
            let dirs = group.iter().filter(is_dir);
            rec.mtime = dirs.clone().map(|o| t(o).mtime(o.1)).max().unwrap_or(0);
            let id = w.push(&rec)?;
            next.extend(dirs);
            return Ok(Placed::Dir(id));
        }
        let first = group[0];
        if let Some(other) = group[1..].iter().find(|o| !self.same_file(first, **o)) {
            let why = format!(
                "{}: claimed by two units with different content ({} and {})",
                t(&first).path(first.1),
                t(&first).digest_of(first.1),
                t(other).digest_of(other.1)
            );
            tracing::warn!("withholding entry: {why}");
            conflicts.push(why);
            return Ok(Placed::Withheld);
        }
        // A listed size wins over none.
        let best = *group
            .iter()
            .find(|o| t(o).size(o.1).is_some())
            .unwrap_or(&first);
        let tree = t(&best);
        let kind = if tree.is_stored(best.1) {
            format::KIND_STORED
        } else {
            format::KIND_REMOTE
        };
        let mut rec = self.rec(best, parent, kind);
        rec.payload = tree.size(best.1).unwrap_or(format::SIZE_UNKNOWN);
        rec.digest =
            self.digest_base[best.0 as usize] + tree.u32_at(tree.rec(best.1) + format::OFF_DIGEST);
        let id = w.len();
        if kind == format::KIND_REMOTE {
            let explicit = match tree.url_parts(best.1) {
                UrlParts::Prefix(p) => {
                    let src_prefix = tree.buf[tree.rec(best.1) + format::OFF_PREFIX] as usize;
                    match self.prefix_map[best.0 as usize][src_prefix] {
                        Some(out) => {
                            rec.flags |= format::FLAG_URL_PREFIX;
                            rec.prefix = out;
                            None
                        }
                        None => {
                            let url = format!("{p}{}", tree.path(best.1));
                            let off = self.extra_base() + extra.len() as u64;
                            extra.extend_from_slice(url.as_bytes());
                            Some((off, url.len()))
                        }
                    }
                }
                UrlParts::Explicit(_) => {
                    let e = tree.url_entry(best.1).expect("validated at load");
                    let off = u64::from(self.string_base[best.0 as usize])
                        + u64::from(tree.u32_at(e + 4));
                    Some((off, tree.u32_at(e + 8) as usize))
                }
            };
            if let Some((off, len)) = explicit {
                rec.flags |= format::FLAG_URL_EXPLICIT;
                let off = u32::try_from(off).map_err(|_| BuildError::TooLarge("strings"))?;
                w.urls.push((id, off, len as u32));
            }
        }
        w.push(&rec).map(|_| Placed::File)
    }

    /// Where the merge's own strings start.
    fn extra_base(&self) -> u64 {
        self.trees.iter().map(|t| t.hdr.strings.len() as u64).sum()
    }

    /// The output record of occurrence `o`, to be completed for files.
    fn rec(&self, o: Occ, parent: u32, kind: u8) -> Rec {
        let t = self.trees[o.0 as usize];
        let r = t.rec(o.1);
        Rec {
            ino: t.ino(o.1),
            parent,
            name: self.string_base[o.0 as usize] + t.u32_at(r + format::OFF_NAME),
            name_len: t.buf[r + format::OFF_NAME_LEN],
            flags: t.buf[r + format::OFF_FLAGS] & format::FLAG_NAME_HEX,
            mtime: t.mtime(o.1),
            kind,
            ..Rec::default()
        }
    }

    /// Two occurrences of one path that serve the same bytes from the same place.
    fn same_file(&self, a: Occ, b: Occ) -> bool {
        let (ta, tb) = (self.trees[a.0 as usize], self.trees[b.0 as usize]);
        if ta.is_stored(a.1) != tb.is_stored(b.1) || ta.digest_raw(a.1) != tb.digest_raw(b.1) {
            return false;
        }
        if let (Some(x), Some(y)) = (ta.size(a.1), tb.size(b.1)) {
            if x != y {
                return false;
            }
        }
        ta.is_stored(a.1) || ta.url(a.1) == tb.url(b.1)
    }
}
