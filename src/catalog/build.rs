//! Building a generation from the entries a sync produced.
//!
//! Entries arrive in any order from the layout adapters; the builder sorts
//! them into a tree, withholds conflicting claims on one path, derives inode
//! numbers and modification times (carried over from the previous
//! generation when the content is unchanged), and encodes the result.

use std::collections::{HashMap, HashSet};

use crate::digest::Digest;
use crate::path::RelPath;

use super::format::{self, Counts};
use super::{Generation, INO_HASH_MASK, Kind};

/// One file a sync wants in the tree. Directories are implied by paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: RelPath,
    /// Unix seconds; `None` = keep the previous generation's, or now.
    pub mtime: Option<u32>,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// An artifact fetched from `url` on first read and verified against `digest`.
    Remote {
        url: String,
        size: Option<u64>,
        digest: Digest,
    },
    /// Bytes produced by the sync (an upstream document, verbatim or rewritten).
    Inline(Vec<u8>),
    /// Bytes already in the mirror's metadata store (carried over).
    Stored { digest: Digest, size: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("catalog too large: {0}")]
    TooLarge(&'static str),
    #[error("internal error: the encoded catalog does not validate: {0}")]
    Internal(String),
}

/// A built generation plus what must happen before it is served.
pub struct BuildOutput {
    pub generation: Generation,
    /// Inline bodies to put into the metadata store, by SHA-256.
    pub blobs: Vec<(Digest, Vec<u8>)>,
    /// Paths withheld because entries disagreed about them.
    pub conflicts: Vec<String>,
}

struct TmpFile {
    mtime: Option<u32>,
    size: Option<u64>,
    digest: Digest,
    /// `None` for stored bodies.
    url: Option<String>,
}

/// An entry reduced to what the tree needs, sortable by path.
struct Item {
    path: String,
    file: TmpFile,
}

/// Flattened node before encoding. Names borrow from the sorted items.
struct Flat<'a> {
    ino: u64,
    parent: u32,
    name: &'a str,
    mtime: u32,
    /// Directory children range.
    first_child: u32,
    n_children: u32,
    /// The item of a file node.
    item: Option<usize>,
}

/// Derives the inode number of a path (and, for files, its content).
pub fn ino_for(slot: u8, path: &str, content: Option<&Digest>, salt: u32) -> u64 {
    let mut h = crate::digest::Hasher::new(crate::digest::Algo::Sha256);
    h.update(path.as_bytes());
    h.update(&[0]);
    if let Some(d) = content {
        h.update(d.as_bytes());
    }
    if salt > 0 {
        h.update(&salt.to_le_bytes());
    }
    let d = h.finish();
    let v = u64::from_le_bytes(d.as_bytes()[..8].try_into().unwrap()) & INO_HASH_MASK;
    (u64::from(slot) << 56) | v.max(2)
}

/// Orders paths component by component (`/` sorts before every other byte),
/// so that every directory's descendants are contiguous and its children
/// come out in the byte order lookups search in.
fn path_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.as_bytes()
        .iter()
        .map(key)
        .cmp(b.as_bytes().iter().map(key))
}

/// Builds generation `number` of the mirror in `slot`.
pub fn build(
    slot: u8,
    number: u64,
    now: u32,
    entries: Vec<Entry>,
    units: Vec<String>,
    prev: Option<&Generation>,
) -> Result<BuildOutput, BuildError> {
    let mut blobs = Vec::new();
    let mut blob_seen: HashSet<Digest> = HashSet::new();
    let mut items: Vec<Item> = entries
        .into_iter()
        .map(|e| {
            let file = match e.body {
                Body::Remote { url, size, digest } => TmpFile {
                    mtime: e.mtime,
                    size,
                    digest,
                    url: Some(url),
                },
                Body::Inline(bytes) => {
                    let digest = Digest::sha256_of(&bytes);
                    let size = bytes.len() as u64;
                    if blob_seen.insert(digest.clone()) {
                        blobs.push((digest.clone(), bytes));
                    }
                    TmpFile {
                        mtime: e.mtime,
                        size: Some(size),
                        digest,
                        url: None,
                    }
                }
                Body::Stored { digest, size } => TmpFile {
                    mtime: e.mtime,
                    size: Some(size),
                    digest,
                    url: None,
                },
            };
            Item {
                path: e.path.as_str().to_string(),
                file,
            }
        })
        .collect();
    drop(blob_seen);
    items.sort_by(|a, b| path_order(&a.path, &b.path));
    let conflicts = withhold_conflicts(&mut items);

    // Breadth-first layout: the children of each directory become contiguous.
    let mut flat: Vec<Flat> = vec![Flat {
        ino: ino_for(slot, "", None, 0),
        parent: 0,
        name: "",
        mtime: now,
        first_child: 0,
        n_children: 0,
        item: None,
    }];
    let mut used: HashSet<u64> = HashSet::from([flat[0].ino]);
    // (node, item range, byte length of the directory's path prefix incl. '/')
    let mut queue = std::collections::VecDeque::from([(0u32, 0usize, items.len(), 0usize)]);
    while let Some((idx, lo, hi, prefix)) = queue.pop_front() {
        let first = u32::try_from(flat.len()).map_err(|_| BuildError::TooLarge("nodes"))?;
        let mut i = lo;
        while i < hi {
            let rest = &items[i].path[prefix..];
            let comp = rest.split('/').next().unwrap_or(rest);
            let mut j = i + 1;
            while j < hi && items[j].path[prefix..].split('/').next() == Some(comp) {
                j += 1;
            }
            let is_file = j == i + 1 && rest.len() == comp.len();
            let path = &items[i].path[..prefix + comp.len()];
            let content = is_file.then(|| &items[i].file.digest);
            let mut salt = 0;
            let ino = loop {
                let ino = ino_for(slot, path, content, salt);
                if used.insert(ino) {
                    break ino;
                }
                salt += 1;
            };
            let child = u32::try_from(flat.len()).map_err(|_| BuildError::TooLarge("nodes"))?;
            flat.push(Flat {
                ino,
                parent: idx,
                name: comp,
                mtime: 0,
                first_child: 0,
                n_children: 0,
                item: is_file.then_some(i),
            });
            if !is_file {
                queue.push_back((child, i, j, prefix + comp.len() + 1));
            }
            i = j;
        }
        flat[idx as usize].first_child = first;
        flat[idx as usize].n_children = flat.len() as u32 - first;
    }
    drop(used);

    // Listing hashes, then modification times (carried over when unchanged).
    let dir_hashes: Vec<u64> = flat
        .iter()
        .map(|n| {
            if n.item.is_some() {
                0
            } else {
                listing_hash(&flat, n)
            }
        })
        .collect();
    for (i, n) in flat.iter_mut().enumerate() {
        let carried = prev
            .and_then(|p| p.find_ino(n.ino).map(|id| (p, id)))
            .filter(|(p, id)| match n.item {
                Some(_) => p.kind(*id) == Kind::File,
                None => p.kind(*id) == Kind::Dir && p.dir_hash(*id) == dir_hashes[i],
            })
            .map(|(p, id)| p.mtime(id));
        let own = n.item.and_then(|it| items[it].file.mtime);
        n.mtime = if i == 0 {
            carried.unwrap_or(now)
        } else {
            own.or(carried).unwrap_or(now)
        };
    }

    let mut units = units;
    units.sort();
    units.dedup();
    encode(number, now, &flat, &items, &dir_hashes, &units).map(|generation| BuildOutput {
        generation,
        blobs,
        conflicts,
    })
}

/// Drops paths claimed twice with different content (every claim: neither
/// upstream can be believed) and files that other entries need as a
/// directory. Identical duplicates collapse into one. `items` is sorted.
fn withhold_conflicts(items: &mut Vec<Item>) -> Vec<String> {
    let mut conflicts = Vec::new();
    let mut keep = vec![true; items.len()];
    let mut i = 0;
    while i < items.len() {
        let mut j = i + 1;
        let mut differ = false;
        while j < items.len() && items[j].path == items[i].path {
            if same(&items[i].file, &items[j].file) {
                keep[j] = false;
            } else {
                differ = true;
            }
            j += 1;
        }
        if differ {
            let why = format!(
                "{}: claimed twice with different content ({} and others)",
                items[i].path, items[i].file.digest
            );
            tracing::warn!("withholding entry: {why}");
            conflicts.push(why);
            keep[i..j].iter_mut().for_each(|k| *k = false);
        } else if items.get(j).is_some_and(|n| {
            n.path.len() > items[i].path.len()
                && n.path.starts_with(&items[i].path)
                && n.path.as_bytes()[items[i].path.len()] == b'/'
        }) {
            let why = format!(
                "{}: is a file, but other entries need it as a directory",
                items[i].path
            );
            tracing::warn!("withholding entry: {why}");
            conflicts.push(why);
            keep[i] = false;
        }
        i = j;
    }
    let mut k = keep.into_iter();
    items.retain(|_| k.next().unwrap_or(false));
    conflicts
}

fn listing_hash(flat: &[Flat], dir: &Flat) -> u64 {
    let mut h = crate::digest::Hasher::new(crate::digest::Algo::Sha256);
    for c in &flat[dir.first_child as usize..(dir.first_child + dir.n_children) as usize] {
        h.update(c.name.as_bytes());
        h.update(&[0]);
        h.update(&c.ino.to_le_bytes());
    }
    u64::from_le_bytes(h.finish().as_bytes()[..8].try_into().unwrap())
}

fn same(a: &TmpFile, b: &TmpFile) -> bool {
    a.digest == b.digest
        && a.url == b.url
        && (a.size == b.size || a.size.is_none() || b.size.is_none())
}

/// Appends `s` to the string arena and returns its offset.
fn append(strings: &mut Vec<u8>, s: &str) -> Result<u32, BuildError> {
    let off = u32::try_from(strings.len()).map_err(|_| BuildError::TooLarge("strings"))?;
    strings.extend_from_slice(s.as_bytes());
    Ok(off)
}

fn encode(
    number: u64,
    now: u32,
    flat: &[Flat],
    items: &[Item],
    dir_hashes: &[u64],
    units: &[String],
) -> Result<Generation, BuildError> {
    // Strings (deduplicated), URL prefixes and digests first, to size the buffer.
    let mut strings: Vec<u8> = Vec::new();
    // Names repeat (index.html, by-hash, SHA256…): each is stored once.
    let mut interned: HashMap<&str, u32> = HashMap::new();
    let mut prefixes: Vec<(u32, u32)> = Vec::new();
    let mut prefix_ids: HashMap<&str, u32> = HashMap::new();
    let mut digests: Vec<u8> = Vec::new();
    let mut digest_ids: HashMap<&Digest, u32> = HashMap::new();

    struct Rec {
        name: u32,
        a: u32,
        b: u32,
        c: u32,
        flags: u8,
        kind: u8,
        size: u64,
    }
    let mut recs = Vec::with_capacity(flat.len());
    for (i, n) in flat.iter().enumerate() {
        let name = match interned.get(n.name) {
            Some(&off) => off,
            None => {
                let off = append(&mut strings, n.name)?;
                interned.insert(n.name, off);
                off
            }
        };
        let Some(item) = n.item.map(|it| &items[it]) else {
            recs.push(Rec {
                name,
                a: n.first_child,
                b: n.n_children,
                c: 0,
                flags: 0,
                kind: format::KIND_DIR,
                size: dir_hashes[i],
            });
            continue;
        };
        let f = &item.file;
        let a = match digest_ids.get(&f.digest) {
            Some(&off) => off,
            None => {
                let off =
                    u32::try_from(digests.len()).map_err(|_| BuildError::TooLarge("digests"))?;
                digests.push(f.digest.algo().code());
                digests.extend_from_slice(f.digest.as_bytes());
                digest_ids.insert(&f.digest, off);
                off
            }
        };
        let size = f.size.unwrap_or(format::SIZE_UNKNOWN);
        let rec = match &f.url {
            None => Rec {
                name,
                a,
                b: 0,
                c: 0,
                flags: 0,
                kind: format::KIND_STORED,
                size,
            },
            Some(url) => match url
                .strip_suffix(item.path.as_str())
                .filter(|p| !p.is_empty())
            {
                Some(prefix) => {
                    let id = match prefix_ids.get(prefix) {
                        Some(&id) => id,
                        None => {
                            let id = prefixes.len() as u32;
                            prefixes.push((append(&mut strings, prefix)?, prefix.len() as u32));
                            prefix_ids.insert(prefix, id);
                            id
                        }
                    };
                    Rec {
                        name,
                        a,
                        b: id,
                        c: 0,
                        flags: format::FLAG_URL_PREFIX,
                        kind: format::KIND_REMOTE,
                        size,
                    }
                }
                None => {
                    let off = append(&mut strings, url)?;
                    Rec {
                        name,
                        a,
                        b: off,
                        c: url.len() as u32,
                        flags: 0,
                        kind: format::KIND_REMOTE,
                        size,
                    }
                }
            },
        };
        recs.push(rec);
    }
    drop(digest_ids);
    drop(prefix_ids);
    drop(interned);
    let mut unit_refs = Vec::with_capacity(units.len());
    for u in units {
        unit_refs.push((append(&mut strings, u)?, u.len() as u32));
    }

    let counts = Counts {
        number,
        created: u64::from(now),
        nodes: flat.len() as u32,
        prefixes: prefixes.len() as u32,
        units: units.len() as u32,
        strings: u32::try_from(strings.len()).map_err(|_| BuildError::TooLarge("strings"))?,
        digests: digests.len() as u32,
    };
    let (mut buf, hdr) = format::new_buffer(&counts);
    for (i, (n, r)) in flat.iter().zip(&recs).enumerate() {
        let at = hdr.nodes.start + i * format::NODE_LEN;
        let rec = &mut buf[at..at + format::NODE_LEN];
        rec[0..8].copy_from_slice(&n.ino.to_le_bytes());
        rec[format::OFF_SIZE..format::OFF_SIZE + 8].copy_from_slice(&r.size.to_le_bytes());
        rec[format::OFF_PARENT..format::OFF_PARENT + 4].copy_from_slice(&n.parent.to_le_bytes());
        rec[format::OFF_NAME..format::OFF_NAME + 4].copy_from_slice(&r.name.to_le_bytes());
        rec[format::OFF_NAME_LEN..format::OFF_NAME_LEN + 2]
            .copy_from_slice(&(n.name.len() as u16).to_le_bytes());
        rec[format::OFF_KIND] = r.kind;
        rec[format::OFF_FLAGS] = r.flags;
        rec[format::OFF_MTIME..format::OFF_MTIME + 4].copy_from_slice(&n.mtime.to_le_bytes());
        rec[format::OFF_A..format::OFF_A + 4].copy_from_slice(&r.a.to_le_bytes());
        rec[format::OFF_B..format::OFF_B + 4].copy_from_slice(&r.b.to_le_bytes());
        rec[format::OFF_C..format::OFF_C + 4].copy_from_slice(&r.c.to_le_bytes());
    }
    drop(recs);
    let mut inos: Vec<(u64, u32)> = flat
        .iter()
        .enumerate()
        .map(|(i, n)| (n.ino, i as u32))
        .collect();
    inos.sort_unstable();
    for (i, (ino, id)) in inos.iter().enumerate() {
        let at = hdr.inos.start + i * 12;
        buf[at..at + 8].copy_from_slice(&ino.to_le_bytes());
        buf[at + 8..at + 12].copy_from_slice(&id.to_le_bytes());
    }
    for (i, (off, len)) in prefixes.iter().chain(&unit_refs).enumerate() {
        let at = hdr.prefixes.start + i * 8;
        buf[at..at + 4].copy_from_slice(&off.to_le_bytes());
        buf[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
    }
    buf[hdr.strings.clone()].copy_from_slice(&strings);
    buf[hdr.digests.clone()].copy_from_slice(&digests);
    format::seal(&mut buf);
    Generation::from_bytes(buf).map_err(BuildError::Internal)
}
