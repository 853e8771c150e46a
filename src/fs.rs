//! The filesystem, in plain Rust types: lookup, getattr, readdir, open,
//! read and release over the mirrors' generations and the store. fuser
//! never appears here (see `fuse.rs`), so all of it is testable without a
//! mount.
//!
//! Operations that may wait for upstream (`lookup`, `getattr`, `open`) are
//! `async`; the FUSE adapter polls them once on its own thread and moves
//! them to the runtime only if they are really waiting, so cached paths
//! never pay for a task switch. Metadata of synced trees is answered from
//! the catalog alone (invariant 5). The size in an attribute is always the
//! artifact's true size (invariant 8): when metadata had none, the artifact
//! is fetched and verified before the attribute is answered.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::catalog::{self, Generation, Kind, NodeId, ROOT_INO, Source};
use crate::fetch::{Artifact, Fetcher};
use crate::mirror::Mirror;
use crate::stats::OpCounters;
use crate::store::Store;

mod pending;
mod shared;

pub use pending::PendingFile;
use pending::read_at;
use shared::OpenFiles;
pub use shared::{Cursors, ObjectKey};

/// How long the kernel may cache entries and attributes. Swaps invalidate
/// what changed explicitly, so this can be long.
pub const TTL: Duration = Duration::from_secs(24 * 3600);

/// How long the kernel may cache a size learnt from response headers.
pub const PROVISIONAL_TTL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    /// Unix seconds.
    pub mtime: u32,
    pub nlink: u32,
    /// The size came from upstream's response headers while the download
    /// goes on: the kernel re-asks soon, so should the download fail after
    /// all, no stale size outlives it.
    pub provisional: bool,
}

/// Inode of `.regfs/` at the mount root, and of `.regfs/status.json`.
pub const CONTROL_INO: u64 = 2;
pub const STATUS_INO: u64 = 3;
/// Inode of `.regfs/status.html`, the status page.
pub const STATUS_HTML_INO: u64 = 4;

/// The report files in `.regfs/`: inode, name, format.
const REPORTS: [(u64, &str, Report); 2] = [
    (STATUS_INO, "status.json", Report::Json),
    (STATUS_HTML_INO, "status.html", Report::Html),
];

/// What a report file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// `status.json`: what `regfs status --json` prints.
    Json,
    /// `status.html`: the status page.
    Html,
}

/// An open file: the verified bytes on local disk, or (for
/// `.regfs/status.json`) a snapshot in memory.
pub struct Opened {
    pub fh: u64,
    pub ino: u64,
    pub kind: OpenKind,
    /// The store object behind it (not for in-memory files): whoever keeps
    /// its descriptor for reuse checks that store's removals first.
    pub object: Option<(Arc<Store>, ObjectKey)>,
}

pub enum OpenKind {
    /// Verified bytes on local disk (kernel passthrough may serve them).
    Local(Arc<File>),
    /// Being fetched: reads wait for the verified download.
    Pending,
    /// Generated in memory (status.json): no page cache.
    Memory,
}

enum Handle {
    File(Arc<File>),
    Bytes(Arc<Vec<u8>>),
    Pending(Arc<PendingFile>),
}

impl Attr {
    /// How long the kernel may cache this attribute: status.json changes.
    pub fn ttl(&self) -> Duration {
        if REPORTS.iter().any(|(i, _, _)| *i == self.ino) {
            Duration::ZERO
        } else if self.provisional {
            PROVISIONAL_TTL
        } else {
            TTL
        }
    }
}

/// Receives directory entries; returns true when its buffer is full.
pub trait DirSink {
    fn add(&mut self, ino: u64, offset: u64, kind: Kind, name: &str) -> bool;
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("read-only file system")]
    ReadOnly,
    #[error("bad file handle")]
    BadHandle,
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("local I/O: {0}")]
    Local(String),
}

impl FsError {
    /// The errno a reader sees. Exhaustive on purpose: a new variant must choose.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::ReadOnly => libc::EROFS,
            FsError::BadHandle => libc::EBADF,
            FsError::Upstream(_) => libc::EIO,
            FsError::Local(_) => libc::EIO,
        }
    }
}

/// A node resolved from an inode number.
enum Node {
    Root,
    Control,
    Status(Report),
    InMirror {
        mirror: Arc<Mirror>,
        generation: Arc<Generation>,
        id: NodeId,
    },
    /// A directory a lookup vouched for before anything under it is known.
    Placeholder {
        mirror: Arc<Mirror>,
        path: Arc<str>,
    },
}

/// A report file's bytes and when they were rendered.
type Rendered = (std::time::Instant, Arc<Vec<u8>>);

/// Renders the status document of the mirrors served (see `status.rs`).
pub type StatusRenderer = Box<dyn Fn(&[Arc<Mirror>], &Store, Report) -> Vec<u8> + Send + Sync>;

pub struct Fs {
    /// Mirrors by slot.
    mirrors: RwLock<HashMap<u8, Arc<Mirror>>>,
    store: Arc<Store>,
    fetcher: Arc<Fetcher>,
    handles: RwLock<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    started: u32,
    /// Operations served, for metrics.
    pub ops: Arc<OpCounters>,
    /// Renders `.regfs/status.json` for the mirrors served.
    render_status: StatusRenderer,
    /// The last rendering of each report file and when it was made.
    reports: std::sync::Mutex<HashMap<u64, Rendered>>,
    /// One descriptor per open object, shared by all its handles (reads are
    /// positional), so 10,000 opens of a file cost one fd.
    open_files: std::sync::Mutex<OpenFiles>,
}

impl Fs {
    /// `render_status` renders `.regfs/status.json` and `status.html` from the mirrors served.
    pub fn new(
        mirrors: Vec<Arc<Mirror>>,
        store: Arc<Store>,
        fetcher: Arc<Fetcher>,
        render_status: StatusRenderer,
    ) -> Arc<Fs> {
        Arc::new(Fs {
            mirrors: RwLock::new(mirrors.into_iter().map(|m| (m.slot, m)).collect()),
            store,
            fetcher,
            handles: RwLock::default(),
            next_fh: AtomicU64::new(1),
            started: crate::timestamp::now() as u32,
            ops: Arc::default(),
            render_status,
            reports: std::sync::Mutex::default(),
            open_files: std::sync::Mutex::default(),
        })
    }

    /// Serves exactly these mirrors from now on (a configuration reload).
    pub fn set_mirrors(&self, mirrors: Vec<Arc<Mirror>>) {
        *self.mirrors.write().unwrap() = mirrors.into_iter().map(|m| (m.slot, m)).collect();
    }

    pub fn mirrors(&self) -> Vec<Arc<Mirror>> {
        let mut v: Vec<_> = self.mirrors.read().unwrap().values().cloned().collect();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        v
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn fetcher(&self) -> &Arc<Fetcher> {
        &self.fetcher
    }

    fn node(&self, ino: u64) -> Result<Node, FsError> {
        match ino {
            ROOT_INO => return Ok(Node::Root),
            CONTROL_INO => return Ok(Node::Control),
            STATUS_INO => return Ok(Node::Status(Report::Json)),
            STATUS_HTML_INO => return Ok(Node::Status(Report::Html)),
            _ => {}
        }
        let slot = catalog::ino_slot(ino);
        let found = self.mirrors.read().unwrap().get(&slot).cloned();
        let Some(mirror) = found else {
            // A snapshot's directory (`<mirror>@<name>/`) has a slot of its own.
            let (mirror, snap) = self
                .mirrors()
                .into_iter()
                .find_map(|m| m.snapshot_in_slot(slot).map(|s| (m, s)))
                .ok_or(FsError::NotFound)?;
            let id = snap.view.find_ino(ino).ok_or(FsError::NotFound)?;
            return Ok(Node::InMirror {
                mirror,
                generation: snap.view.clone(),
                id,
            });
        };
        let cur = mirror.served();
        if let Some(id) = cur.find_ino(ino) {
            return Ok(Node::InMirror {
                mirror,
                generation: cur,
                id,
            });
        }
        // A placeholder directory handed out here (its inode is its path's,
        // the one its materialized directory had) is what the current
        // generation makes of that path, materialized since or still a
        // placeholder: the previous generation would still list, and serve,
        // what a sync has since removed.
        if let Some(path) = mirror.placeholder_path(ino) {
            return Ok(match cur.resolve(&path) {
                Some(id) => Node::InMirror {
                    mirror,
                    generation: cur,
                    id,
                },
                None => Node::Placeholder { mirror, path },
            });
        }
        // A lookup or open that raced a swap still resolves in the previous generation.
        let (prev, id) = mirror
            .served_previous()
            .and_then(|prev| prev.find_ino(ino).map(|id| (prev, id)))
            .ok_or(FsError::NotFound)?;
        Ok(Node::InMirror {
            mirror,
            generation: prev,
            id,
        })
    }

    /// The directory `name` at the mount root: a mirror (what it serves)
    /// or a snapshot's `<mirror>@<snapshot>`.
    fn top_dir(&self, name: &str) -> Option<(Arc<Mirror>, Arc<Generation>)> {
        let mirrors = self.mirrors();
        if let Some(m) = mirrors.iter().find(|m| m.name() == name) {
            let g = m.served();
            return Some((m.clone(), g));
        }
        let (mirror, snap) = name.rsplit_once('@')?;
        let m = mirrors.into_iter().find(|m| m.name() == mirror)?;
        let g = m.snapshot(snap)?.view.clone();
        Some((m, g))
    }

    fn dir_attr(&self, ino: u64) -> Attr {
        Attr {
            ino,
            kind: Kind::Dir,
            size: 0,
            mtime: self.started,
            nlink: 2,
            provisional: false,
        }
    }

    /// A report file's bytes, re-rendered at most once a second.
    fn report(&self, report: Report) -> Arc<Vec<u8>> {
        let ino = REPORTS
            .iter()
            .find(|r| r.2 == report)
            .map_or(STATUS_INO, |r| r.0);
        let mut cached = self.reports.lock().unwrap();
        let fresh = cached
            .get(&ino)
            .filter(|(at, _)| at.elapsed() <= Duration::from_secs(1))
            .map(|(_, b)| b.clone());
        fresh.unwrap_or_else(|| {
            let bytes = Arc::new((self.render_status)(&self.mirrors(), &self.store, report));
            cached.insert(ino, (std::time::Instant::now(), bytes.clone()));
            bytes
        })
    }

    fn status_attr(&self, report: Report) -> Attr {
        let ino = REPORTS
            .iter()
            .find(|r| r.2 == report)
            .map_or(STATUS_INO, |r| r.0);
        Attr {
            ino,
            kind: Kind::File,
            size: self.report(report).len() as u64,
            mtime: crate::timestamp::now() as u32,
            nlink: 1,
            provisional: false,
        }
    }

    pub async fn lookup(self: Arc<Self>, parent: u64, name: String) -> Result<Attr, FsError> {
        OpCounters::count(&self.ops.lookup);
        let found_nothing = match self.node(parent)? {
            Node::Root if name == ".regfs" => return Ok(self.dir_attr(CONTROL_INO)),
            Node::Control => {
                return REPORTS
                    .iter()
                    .find(|(_, n, _)| *n == name)
                    .map(|(_, _, r)| self.status_attr(*r))
                    .ok_or(FsError::NotFound);
            }
            Node::Status(_) => return Err(FsError::NotDir),
            Node::Root => {
                let (mirror, g) = self.top_dir(&name).ok_or(FsError::NotFound)?;
                let root = g.root();
                return self.attr(&mirror, &g, root).await;
            }
            Node::InMirror {
                mirror,
                generation,
                id,
            } => {
                if generation.kind(id) != Kind::Dir {
                    return Err(FsError::NotDir);
                }
                if let Some(found) = generation.lookup(id, &name) {
                    return self.attr(&mirror, &generation, found).await;
                }
                if frozen(&mirror, &generation) {
                    // A snapshot materializes nothing: it serves what it pinned.
                    tracing::debug!(mirror = %mirror.name(), name, "lookup miss in a snapshot");
                    return Err(FsError::NotFound);
                }
                (mirror, generation.path(id))
            }
            Node::Placeholder { mirror, path } => (mirror, path.to_string()),
        };
        let (mirror, dir) = found_nothing;
        if let Some(unit) = mirror.lazy_unit(&dir, &name) {
            match mirror.materialize(&self.fetcher, &unit).await {
                Ok(true) => {
                    let g = mirror.current();
                    if let Some(id) = g.resolve(&dir).and_then(|d| g.lookup(d, &name)) {
                        return self.attr(&mirror, &g, id).await;
                    }
                }
                Ok(false) => {}
                Err(e) => return Err(FsError::Upstream(e)),
            }
        }
        if let Some(ino) = mirror.placeholder_dir(&dir, &name) {
            return Ok(self.dir_attr(ino));
        }
        tracing::debug!(mirror = %mirror.name(), dir, name, "lookup miss");
        Err(FsError::NotFound)
    }

    pub async fn getattr(self: Arc<Self>, ino: u64) -> Result<Attr, FsError> {
        OpCounters::count(&self.ops.getattr);
        match self.node(ino)? {
            Node::Root => Ok(self.dir_attr(ROOT_INO)),
            Node::Control => Ok(self.dir_attr(CONTROL_INO)),
            Node::Status(r) => Ok(self.status_attr(r)),
            Node::Placeholder { .. } => Ok(self.dir_attr(ino)),
            Node::InMirror {
                mirror,
                generation,
                id,
            } => self.attr(&mirror, &generation, id).await,
        }
    }

    async fn attr(
        &self,
        mirror: &Arc<Mirror>,
        g: &Generation,
        id: NodeId,
    ) -> Result<Attr, FsError> {
        let ino = g.ino(id);
        let mtime = g.mtime(id);
        let Some(file) = g.file(id) else {
            return Ok(Attr {
                ino,
                kind: Kind::Dir,
                size: 0,
                mtime,
                nlink: 2,
                provisional: false,
            });
        };
        let (size, provisional) = match &file.source {
            Source::Stored => (
                file.size
                    .unwrap_or_else(|| mirror.meta.size_of(&file.digest).unwrap_or(0)),
                false,
            ),
            Source::Remote { url } => {
                let art = self.artifact(mirror, || g.path(id), url, &file)?;
                match (self.cached_size(mirror, &art)?, art.size) {
                    (Some(size), _) | (None, Some(size)) => (size, false),
                    // Invariant 8: learn the true size before answering, from
                    // upstream's headers if they tell it (an exporter that
                    // stats on its event loop waits for those, not for the
                    // whole body), else from the verified download. The read
                    // that follows is a miss, whether or not the download
                    // has finished by its open.
                    (None, None) => {
                        let size = self.fetch_size(mirror, &art).await?;
                        mirror.counters.fetched_by_stat(&file.digest);
                        (size, true)
                    }
                }
            }
        };
        Ok(Attr {
            ino,
            kind: Kind::File,
            size,
            mtime,
            nlink: 1,
            provisional,
        })
    }

    /// Lists a directory from `offset`: entry `k` is `.` (0), `..` (1) or
    /// child `k - 2`, and carries `k + 1` as the offset to resume after it.
    pub fn readdir(&self, ino: u64, offset: u64, sink: &mut dyn DirSink) -> Result<(), FsError> {
        OpCounters::count(&self.ops.readdir);
        let small = |list: Vec<(u64, Kind, String)>, sink: &mut dyn DirSink| {
            for (k, (ino, kind, name)) in list.iter().enumerate().skip(offset as usize) {
                if sink.add(*ino, k as u64 + 1, *kind, name) {
                    break;
                }
            }
        };
        match self.node(ino)? {
            Node::Status(_) => return Err(FsError::NotDir),
            // Nothing under it is known yet; `..` is the mirror root, as
            // the parent may itself be a placeholder the kernel has dropped.
            Node::Placeholder { mirror, .. } => {
                let g = mirror.current();
                small(
                    vec![
                        (ino, Kind::Dir, ".".into()),
                        (g.ino(g.root()), Kind::Dir, "..".into()),
                    ],
                    sink,
                )
            }
            Node::Control => small(
                vec![
                    (CONTROL_INO, Kind::Dir, ".".into()),
                    (ROOT_INO, Kind::Dir, "..".into()),
                    (STATUS_INO, Kind::File, "status.json".into()),
                    (STATUS_HTML_INO, Kind::File, "status.html".into()),
                ],
                sink,
            ),
            Node::Root => {
                let mut list = vec![
                    (ROOT_INO, Kind::Dir, ".".to_string()),
                    (ROOT_INO, Kind::Dir, "..".to_string()),
                    (CONTROL_INO, Kind::Dir, ".regfs".to_string()),
                ];
                for m in self.mirrors() {
                    let g = m.served();
                    list.push((g.ino(g.root()), Kind::Dir, m.name().to_string()));
                    for snap in m.snapshots() {
                        let v = &snap.view;
                        let name = crate::mirror::snapshot_dir_name(m.name(), &snap.name);
                        list.push((v.ino(v.root()), Kind::Dir, name));
                    }
                }
                small(list, sink);
            }
            Node::InMirror {
                generation: g, id, ..
            } => {
                if g.kind(id) != Kind::Dir {
                    return Err(FsError::NotDir);
                }
                let parent = if id == g.root() {
                    ROOT_INO
                } else {
                    g.ino(g.parent(id))
                };
                let total = 2 + g.children(id).len() as u64;
                for k in offset..total {
                    let (ino, kind, name) = match k {
                        0 => (g.ino(id), Kind::Dir, Cow::Borrowed(".")),
                        1 => (parent, Kind::Dir, Cow::Borrowed("..")),
                        _ => {
                            let Some(c) = g.child_at(id, (k - 2) as usize) else {
                                break;
                            };
                            (g.ino(c), g.kind(c), g.name(c).as_str())
                        }
                    };
                    if sink.add(ino, k + 1, kind, &name) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Opens a file for reading, fetching and verifying it first if needed.
    pub async fn open(self: Arc<Self>, ino: u64, write: bool) -> Result<Opened, FsError> {
        OpCounters::count(&self.ops.open);
        if write {
            return Err(FsError::ReadOnly);
        }
        let (mirror, generation, id) = match self.node(ino)? {
            Node::InMirror {
                mirror,
                generation,
                id,
            } => (mirror, generation, id),
            Node::Status(r) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.handles
                    .write()
                    .unwrap()
                    .insert(fh, Handle::Bytes(self.report(r)));
                return Ok(Opened {
                    fh,
                    ino,
                    kind: OpenKind::Memory,
                    object: None,
                });
            }
            Node::Root | Node::Control | Node::Placeholder { .. } => return Err(FsError::IsDir),
        };
        let file = generation.file(id).ok_or(FsError::IsDir)?;
        let art = match &file.source {
            Source::Stored => None,
            Source::Remote { url } => {
                Some(self.artifact(&mirror, || generation.path(id), url, &file)?)
            }
        };
        // The object's digest: a first download's is known once pinned.
        let digest = art
            .as_ref()
            .and_then(Artifact::object_digest)
            .unwrap_or_else(|| file.digest.clone());
        let store = match &file.source {
            Source::Stored => mirror.meta.clone(),
            Source::Remote { .. } => self.store.clone(),
        };
        let object = Some((
            store.clone(),
            ObjectKey {
                store: store.id(),
                digest: digest.clone(),
            },
        ));
        if let Some(art) = &art {
            // A cached object the entry's promised size contradicts is EIO.
            self.cached_size(&mirror, art)?;
        }
        let local = match art {
            None => self.local(&mirror.meta, &file.digest),
            Some(art) => match self.local(&self.store, &digest) {
                Ok(hit) => {
                    mirror.counters.opened_cached(&file.digest);
                    if let Some(size) = self.store.size_of(&digest) {
                        mirror.counters.served(size);
                    }
                    Ok(hit)
                }
                Err(_) => {
                    // Not cached: answer the open now and let reads wait for
                    // the verified bytes. An exporter that opens on its event
                    // loop (nginx) is never blocked by upstream; reads run in
                    // its thread pool. The download starts at once.
                    mirror.counters.opened_uncached(&file.digest);
                    let pending = PendingFile::start(&self, mirror, art);
                    let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                    let handle = Handle::Pending(pending);
                    self.handles.write().unwrap().insert(fh, handle);
                    return Ok(Opened {
                        fh,
                        ino,
                        kind: OpenKind::Pending,
                        object,
                    });
                }
            },
        };
        let f = local.map_err(|why| {
            crate::warn_limited!(digest = %file.digest, "a stored metadata file cannot be opened: {why}");
            FsError::Local(format!("{}: cannot open the stored file: {why}", file.digest))
        })?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .write()
            .unwrap()
            .insert(fh, Handle::File(f.clone()));
        Ok(Opened {
            fh,
            ino,
            kind: OpenKind::Local(f),
            object,
        })
    }

    /// Reads up to `size` bytes at `offset`; short only at end of file. On a
    /// file opened before it was cached, waits for the verified download.
    pub async fn read(
        self: Arc<Self>,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, FsError> {
        OpCounters::count(&self.ops.read);
        let handle = match self
            .handles
            .read()
            .unwrap()
            .get(&fh)
            .ok_or(FsError::BadHandle)?
        {
            Handle::File(f) => Ok(f.clone()),
            Handle::Bytes(b) => {
                let start = (offset as usize).min(b.len());
                let end = start.saturating_add(size as usize).min(b.len());
                return Ok(b[start..end].to_vec());
            }
            Handle::Pending(pending) => Err(pending.clone()),
        };
        let f = match handle {
            Ok(f) => f,
            Err(pending) => pending.get(&self).await?,
        };
        read_at(&f, offset, size)
    }
    pub fn release(&self, fh: u64) {
        self.handles.write().unwrap().remove(&fh);
    }

    /// Number of open file handles.
    pub fn open_handles(&self) -> usize {
        self.handles.read().unwrap().len()
    }
}

/// Is `g` a tree that changes by no lookup: a snapshot's, or the mirror's
/// while a snapshot is published?
fn frozen(mirror: &Mirror, g: &Generation) -> bool {
    g.shown_slot() != mirror.slot || mirror.is_published()
}

/// A read that cannot be served: counted, logged (rate-limited), EIO.
#[cfg(test)]
mod tests;
