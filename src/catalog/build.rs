//! Building a generation from the entries a sync produced.
//!
//! Entries arrive in any order from the layout adapters; the builder sorts
//! them into a tree, withholds conflicting claims on one path, derives inode
//! numbers and modification times (carried over from the previous
//! generation when the content is unchanged), and encodes the result.

use std::collections::{BTreeMap, HashMap, HashSet};

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

enum TmpNode {
    Dir(BTreeMap<String, TmpNode>),
    File(TmpFile),
}

/// Flattened node before encoding.
struct Flat {
    ino: u64,
    parent: u32,
    name: String,
    mtime: u32,
    /// Directory children range, or the file.
    first_child: u32,
    n_children: u32,
    file: Option<TmpFile>,
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
    let mut conflicts = Vec::new();
    let mut withheld: HashSet<String> = HashSet::new();
    let mut root: BTreeMap<String, TmpNode> = BTreeMap::new();
    let mut blob_seen: HashSet<Digest> = HashSet::new();

    for e in entries {
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
        let path = e.path.as_str();
        if withheld.contains(path) {
            continue;
        }
        if let Err(why) = insert(&mut root, path, file) {
            tracing::warn!(path, "withholding entry: {why}");
            conflicts.push(format!("{path}: {why}"));
            if why.starts_with("claimed twice") {
                withheld.insert(path.to_string());
                remove(&mut root, path);
            }
        }
    }

    // Breadth-first flattening: children of each directory become contiguous.
    let mut flat: Vec<Flat> = vec![Flat {
        ino: ino_for(slot, "", None, 0),
        parent: 0,
        name: String::new(),
        mtime: now,
        first_child: 0,
        n_children: 0,
        file: None,
    }];
    let mut used: HashSet<u64> = HashSet::from([flat[0].ino]);
    let mut queue: std::collections::VecDeque<(u32, String, BTreeMap<String, TmpNode>)> =
        std::collections::VecDeque::from([(0u32, String::new(), root)]);
    while let Some((idx, path, children)) = queue.pop_front() {
        let first = u32::try_from(flat.len()).map_err(|_| BuildError::TooLarge("nodes"))?;
        flat[idx as usize].first_child = first;
        flat[idx as usize].n_children = children.len() as u32;
        for (name, node) in children {
            let child_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            let child_idx = u32::try_from(flat.len()).map_err(|_| BuildError::TooLarge("nodes"))?;
            let (content, file, dir) = match node {
                TmpNode::File(f) => (Some(f.digest.clone()), Some(f), None),
                TmpNode::Dir(d) => (None, None, Some(d)),
            };
            let mut salt = 0;
            let ino = loop {
                let ino = ino_for(slot, &child_path, content.as_ref(), salt);
                if used.insert(ino) {
                    break ino;
                }
                salt += 1;
            };
            flat.push(Flat {
                ino,
                parent: idx,
                name,
                mtime: 0,
                first_child: 0,
                n_children: 0,
                file,
            });
            if let Some(d) = dir {
                queue.push_back((child_idx, child_path, d));
            }
        }
    }

    // Listing hashes, then modification times (carried over when unchanged).
    let dir_hashes: Vec<u64> = flat
        .iter()
        .map(|n| match n.file {
            Some(_) => 0,
            None => listing_hash(&flat, n),
        })
        .collect();
    for (i, n) in flat.iter_mut().enumerate() {
        let carried = prev
            .and_then(|p| p.find_ino(n.ino).map(|id| (p, id)))
            .filter(|(p, id)| match &n.file {
                Some(_) => p.kind(*id) == Kind::File,
                None => p.kind(*id) == Kind::Dir && p.dir_hash(*id) == dir_hashes[i],
            })
            .map(|(p, id)| p.mtime(id));
        let own = n.file.as_ref().and_then(|f| f.mtime);
        n.mtime = own.or(carried).unwrap_or(now);
    }

    let mut units = units;
    units.sort();
    units.dedup();
    encode(number, now, flat, &dir_hashes, &units).map(|generation| BuildOutput {
        generation,
        blobs,
        conflicts,
    })
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

fn insert(root: &mut BTreeMap<String, TmpNode>, path: &str, file: TmpFile) -> Result<(), String> {
    let mut parts = path.split('/').peekable();
    let mut dir = root;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return match dir.get(part) {
                None => {
                    dir.insert(part.to_string(), TmpNode::File(file));
                    Ok(())
                }
                Some(TmpNode::File(old)) if same(old, &file) => Ok(()),
                Some(TmpNode::File(old)) => Err(format!(
                    "claimed twice with different content ({} and {})",
                    old.digest, file.digest
                )),
                Some(TmpNode::Dir(_)) => Err("is a directory of other entries".into()),
            };
        }
        let next = dir
            .entry(part.to_string())
            .or_insert_with(|| TmpNode::Dir(BTreeMap::new()));
        dir = match next {
            TmpNode::Dir(d) => d,
            TmpNode::File(_) => return Err(format!("`{part}` is a file, not a directory")),
        };
    }
    Ok(())
}

fn remove(root: &mut BTreeMap<String, TmpNode>, path: &str) {
    let Some((dir_path, name)) = path.rsplit_once('/') else {
        root.remove(path);
        return;
    };
    let mut dir = root;
    for part in dir_path.split('/') {
        match dir.get_mut(part) {
            Some(TmpNode::Dir(d)) => dir = d,
            _ => return,
        }
    }
    dir.remove(name);
}

fn same(a: &TmpFile, b: &TmpFile) -> bool {
    a.digest == b.digest
        && a.url == b.url
        && (a.size == b.size || a.size.is_none() || b.size.is_none())
}

fn encode(
    number: u64,
    now: u32,
    flat: Vec<Flat>,
    dir_hashes: &[u64],
    units: &[String],
) -> Result<Generation, BuildError> {
    // Strings (deduplicated), URL prefixes and digests first, to size the buffer.
    let mut strings: Vec<u8> = Vec::new();
    let mut interned: HashMap<String, u32> = HashMap::new();
    let mut intern = |s: &str, strings: &mut Vec<u8>| -> Result<u32, BuildError> {
        if let Some(&off) = interned.get(s) {
            return Ok(off);
        }
        let off = u32::try_from(strings.len()).map_err(|_| BuildError::TooLarge("strings"))?;
        strings.extend_from_slice(s.as_bytes());
        interned.insert(s.to_string(), off);
        Ok(off)
    };
    let mut prefixes: Vec<(u32, u32)> = Vec::new();
    let mut prefix_ids: HashMap<String, u32> = HashMap::new();
    let mut digests: Vec<u8> = Vec::new();
    let mut digest_ids: HashMap<Digest, u32> = HashMap::new();

    struct Rec {
        name: (u32, u16),
        a: u32,
        b: u32,
        c: u32,
        flags: u8,
        kind: u8,
        size: u64,
    }
    let mut paths: Vec<String> = Vec::with_capacity(flat.len());
    let mut recs = Vec::with_capacity(flat.len());
    for (i, n) in flat.iter().enumerate() {
        let path = if i == 0 {
            String::new()
        } else if n.parent == 0 {
            n.name.clone()
        } else {
            format!("{}/{}", paths[n.parent as usize], n.name)
        };
        let name = (intern(&n.name, &mut strings)?, n.name.len() as u16);
        let rec = match &n.file {
            None => Rec {
                name,
                a: n.first_child,
                b: n.n_children,
                c: 0,
                flags: 0,
                kind: format::KIND_DIR,
                size: dir_hashes[i],
            },
            Some(f) => {
                let a = match digest_ids.get(&f.digest) {
                    Some(&off) => off,
                    None => {
                        let off = u32::try_from(digests.len())
                            .map_err(|_| BuildError::TooLarge("digests"))?;
                        digests.push(f.digest.algo().code());
                        digests.extend_from_slice(f.digest.as_bytes());
                        digest_ids.insert(f.digest.clone(), off);
                        off
                    }
                };
                let size = f.size.unwrap_or(format::SIZE_UNKNOWN);
                match &f.url {
                    None => Rec {
                        name,
                        a,
                        b: 0,
                        c: 0,
                        flags: 0,
                        kind: format::KIND_STORED,
                        size,
                    },
                    Some(url) => match url.strip_suffix(path.as_str()).filter(|p| !p.is_empty()) {
                        Some(prefix) => {
                            let id = match prefix_ids.get(prefix) {
                                Some(&id) => id,
                                None => {
                                    let id = prefixes.len() as u32;
                                    prefixes
                                        .push((intern(prefix, &mut strings)?, prefix.len() as u32));
                                    prefix_ids.insert(prefix.to_string(), id);
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
                            let off = intern(url, &mut strings)?;
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
                }
            }
        };
        recs.push(rec);
        paths.push(path);
    }
    drop(paths);
    let mut unit_refs = Vec::with_capacity(units.len());
    for u in units {
        unit_refs.push((intern(u, &mut strings)?, u.len() as u32));
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
        rec[format::OFF_NAME..format::OFF_NAME + 4].copy_from_slice(&r.name.0.to_le_bytes());
        rec[format::OFF_NAME_LEN..format::OFF_NAME_LEN + 2]
            .copy_from_slice(&r.name.1.to_le_bytes());
        rec[format::OFF_KIND] = r.kind;
        rec[format::OFF_FLAGS] = r.flags;
        rec[format::OFF_MTIME..format::OFF_MTIME + 4].copy_from_slice(&n.mtime.to_le_bytes());
        rec[format::OFF_A..format::OFF_A + 4].copy_from_slice(&r.a.to_le_bytes());
        rec[format::OFF_B..format::OFF_B + 4].copy_from_slice(&r.b.to_le_bytes());
        rec[format::OFF_C..format::OFF_C + 4].copy_from_slice(&r.c.to_le_bytes());
    }
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
    let _ = now;
    Generation::from_bytes(buf).map_err(|_| BuildError::TooLarge("internal encoding error"))
}
