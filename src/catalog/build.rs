//! Building a tree from the entries of one unit (its segment).
//!
//! Entries arrive in any order from the layout adapters; the builder sorts
//! them into a tree, withholds conflicting claims on one path, derives inode
//! numbers and modification times (carried over from the previous
//! generation when the content is unchanged), and encodes the result.

use std::collections::{HashMap, HashSet};

use crate::digest::Digest;
use crate::path::RelPath;

use super::format::{self, BuildError, Rec, Writer, push_digest, push_name, push_string};
use super::tree::Tree;
use super::{INO_HASH_MASK, Kind};

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

/// A built tree plus what must happen before it is served.
pub struct Built {
    pub tree: Tree,
    /// Inline bodies to put into the metadata store, by SHA-256.
    pub blobs: Vec<(Digest, Vec<u8>)>,
    /// Paths withheld because entries disagreed about them.
    pub conflicts: Vec<String>,
}

/// What a previous generation says about a file, for carrying its
/// modification time over (a file with the same inode) when upstream gives
/// none. A directory's time is its newest descendant's, so equal entries
/// always build equal trees.
pub trait Prev {
    fn file_mtime(&self, ino: u64) -> Option<u32>;
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

/// Builds the tree of `entries` for the mirror in `slot`, labelled `label`
/// (the unit); `indexed` adds the inode index a base needs.
pub fn build_tree(
    slot: u8,
    now: u32,
    label: &str,
    entries: Vec<Entry>,
    prev: Option<&dyn Prev>,
    indexed: bool,
) -> Result<Built, BuildError> {
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
    let flat = flatten(slot, &items)?;
    encode(slot, now, label, &flat, &items, prev, indexed).map(|tree| Built {
        tree,
        blobs,
        conflicts,
    })
}

/// Breadth-first layout: the children of each directory become contiguous.
fn flatten(slot: u8, items: &[Item]) -> Result<Vec<Flat<'_>>, BuildError> {
    let mut flat: Vec<Flat> = vec![Flat {
        ino: ino_for(slot, "", None, 0),
        parent: 0,
        name: "",
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
    Ok(flat)
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

fn same(a: &TmpFile, b: &TmpFile) -> bool {
    a.digest == b.digest
        && a.url == b.url
        && (a.size == b.size || a.size.is_none() || b.size.is_none())
}

fn encode(
    slot: u8,
    now: u32,
    label: &str,
    flat: &[Flat],
    items: &[Item],
    prev: Option<&dyn Prev>,
    indexed: bool,
) -> Result<Tree, BuildError> {
    let mut w = Writer::new(flat.len(), 0);
    let mut strings = Vec::new();
    let mut digests = Vec::new();
    // Names repeat (index.html, by-hash, SHA256…): each is stored once.
    let mut interned: HashMap<&str, (u32, u8, u8)> = HashMap::new();
    let mut prefix_ids: HashMap<&str, u8> = HashMap::new();
    let mut digest_ids: HashMap<&Digest, u32> = HashMap::new();
    for (i, n) in flat.iter().enumerate() {
        let (name, name_len, flags) = match interned.get(n.name) {
            Some(&stored) => stored,
            None => {
                let stored = push_name(&mut strings, n.name)?;
                interned.insert(n.name, stored);
                stored
            }
        };
        let mut rec = Rec {
            ino: n.ino,
            parent: n.parent,
            name,
            name_len,
            flags,
            ..Rec::default()
        };
        let Some(item) = n.item.map(|it| &items[it]) else {
            rec.kind = format::KIND_DIR;
            rec.payload = Rec::dir_payload(n.first_child, n.n_children);
            w.push(&rec)?;
            continue;
        };
        let f = &item.file;
        rec.digest = match digest_ids.get(&f.digest) {
            Some(&off) => off,
            None => {
                let off = push_digest(&mut digests, &f.digest)?;
                digest_ids.insert(&f.digest, off);
                off
            }
        };
        rec.payload = f.size.unwrap_or(format::SIZE_UNKNOWN);
        rec.mtime = f
            .mtime
            .or_else(|| prev.and_then(|p| p.file_mtime(n.ino)))
            .unwrap_or(now);
        match &f.url {
            None => rec.kind = format::KIND_STORED,
            Some(url) => {
                rec.kind = format::KIND_REMOTE;
                let prefix = url
                    .strip_suffix(item.path.as_str())
                    .filter(|p| !p.is_empty());
                let id = match prefix {
                    Some(p) => match prefix_ids.get(p) {
                        Some(&id) => Some(id),
                        None if w.prefixes.len() < format::MAX_PREFIXES => {
                            let id = w.prefixes.len() as u8;
                            let off = push_string(&mut strings, p)?;
                            w.prefixes.push((off, p.len() as u32));
                            prefix_ids.insert(p, id);
                            Some(id)
                        }
                        None => None,
                    },
                    None => None,
                };
                match id {
                    Some(id) => {
                        rec.flags |= format::FLAG_URL_PREFIX;
                        rec.prefix = id;
                    }
                    None => {
                        rec.flags |= format::FLAG_URL_EXPLICIT;
                        let off = push_string(&mut strings, url)?;
                        let len =
                            u32::try_from(url.len()).map_err(|_| BuildError::TooLarge("URL"))?;
                        w.urls.push((i as u32, off, len));
                    }
                }
            }
        }
        w.push(&rec)?;
    }
    drop(digest_ids);
    drop(prefix_ids);
    drop(interned);
    w.lift_dir_mtimes(now);
    Tree::sealed(w.finish(slot, label, &[&strings], &[&digests], indexed)?)
}

impl Prev for Tree {
    fn file_mtime(&self, ino: u64) -> Option<u32> {
        let id = self.find_ino(ino)?;
        (self.kind(id) == Kind::File).then(|| self.mtime(id))
    }
}
