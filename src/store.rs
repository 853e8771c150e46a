//! The content-addressed store: verified bytes keyed by their digest.
//!
//! ```text
//! <root>/objects/<algo>/<hex[0:2]>/<hex[2:]>   one verified object per digest
//! <root>/tmp/<n>.part                          downloads in progress
//! ```
//!
//! Nothing reaches `objects/` unverified: a [`Pending`] hashes while it is
//! written, and [`Pending::commit`] checks size and digest, `fsync`s the data
//! and only then renames it into place (invariant 3, ARCHITECTURE.md). After a power
//! cut an object is either absent or complete; leftovers in `tmp/` are
//! removed at startup. Objects are deduplicated across mirrors and
//! generations. A store with a size bound evicts least recently used objects
//! down to 90% of the bound; the LRU order survives restarts through the
//! objects' mtimes, refreshed at most hourly per object.

mod pending;
mod removals;
pub mod shared;

pub use pending::Pending;
pub use removals::{LOG_CAP, Removed};

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::digest::{Algo, Digest, decode_hex};

/// How often (seconds) an object's mtime is refreshed when it is opened.
const TOUCH_INTERVAL: u64 = 3600;

/// Gives each store of the process its own [`Store::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct Store {
    /// Tells this store apart from the others of the process (holders
    /// keep one removal cursor per store).
    id: u64,
    root: PathBuf,
    max_size: Option<u64>,
    /// `fsync` each object before publishing it. A store that is synced as
    /// a whole before anything references it ([`Store::sync_all`]), or that
    /// is [`Store::checkpointed`], skips it.
    sync_each: bool,
    /// Objects were published since the last checkpoint.
    dirty: std::sync::atomic::AtomicBool,
    index: Mutex<Index>,
    next_tmp: AtomicU64,
    /// How digests that do not stream are computed (the layouts bring them).
    file_digests: Vec<crate::digest::FileDigest>,
    /// Every removal, for holders of descriptors kept open for reuse.
    removals: removals::Removals,
    /// Objects eviction never takes, by holder (a snapshot taken
    /// `--with-artifacts`): see [`Store::hold`].
    held: std::sync::RwLock<HashMap<String, Arc<HashSet<Digest>>>>,
}

#[derive(Default)]
struct Index {
    objects: HashMap<Digest, Slot>,
    total: u64,
    tick: u64,
}

struct Slot {
    size: u64,
    /// Logical clock of the last use (LRU order).
    used: u64,
    /// Unix seconds the object's mtime was last set.
    touched: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    Size { expected: u64, actual: u64 },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    Digest { expected: Digest, actual: Digest },
}

impl StoreError {
    /// The filesystem holding the store is full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }
}

/// When the last checkpoint was taken (Unix seconds), and the clean-shutdown marker.
const CHECKPOINT: &str = "checkpoint";
const CLEAN: &str = "clean";

/// Why [`Store::open_object`] has no object to give.
#[derive(Debug, thiserror::Error)]
pub enum Absent {
    #[error("not in the cache")]
    NotIndexed,
    #[error("its file {0} is gone (evicted, or removed behind regfs's back)")]
    Gone(PathBuf),
    #[error("cannot open {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What [`Store::make_room`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// The space is free now.
    Free,
    /// Evicted these least recently used objects.
    Evicted { objects: u64, bytes: u64 },
    /// The shortfall is the whole cache or more: nothing evicted.
    Refused { short: u64, usage: u64 },
}

/// Counts for status output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub objects: u64,
    pub bytes: u64,
}

impl Store {
    /// Opens (creating) a store, removes leftover temp files and indexes
    /// the objects present.
    pub fn open(root: &Path, max_size: Option<u64>) -> Result<Store, StoreError> {
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        fs::create_dir_all(&objects).map_err(io_err(&objects))?;
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let mut leftovers = 0;
        for e in fs::read_dir(&tmp).map_err(io_err(&tmp))?.flatten() {
            if fs::remove_file(e.path()).is_ok() {
                leftovers += 1;
            }
        }
        if leftovers > 0 {
            tracing::info!(store = %root.display(), leftovers, "removed incomplete downloads left by an earlier run");
        }
        let mut found: Vec<(Digest, u64, u64)> = Vec::new();
        for algo in [Algo::GoH1, Algo::Sha1, Algo::Sha256, Algo::Sha512] {
            let dir = objects.join(algo.name());
            let Ok(fanout) = fs::read_dir(&dir) else {
                continue;
            };
            for sub in fanout.flatten() {
                let prefix = sub.file_name().to_string_lossy().into_owned();
                let Ok(files) = fs::read_dir(sub.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let hex = format!("{prefix}{}", f.file_name().to_string_lossy());
                    let Ok(meta) = f.metadata() else { continue };
                    match decode_hex(&hex).and_then(|b| Digest::from_bytes(algo, &b)) {
                        Some(d) if meta.is_file() => {
                            found.push((d, meta.len(), meta.mtime().max(0) as u64))
                        }
                        _ => {
                            tracing::warn!(path = %f.path().display(), "ignoring unexpected file in the store")
                        }
                    }
                }
            }
        }
        found.sort_by_key(|(_, _, mtime)| *mtime);
        let mut index = Index::default();
        for (d, size, mtime) in found {
            index.tick += 1;
            index.total += size;
            index.objects.insert(
                d,
                Slot {
                    size,
                    used: index.tick,
                    touched: mtime,
                },
            );
        }
        let store = Store {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            root: root.to_owned(),
            max_size,
            sync_each: true,
            dirty: std::sync::atomic::AtomicBool::new(false),
            index: Mutex::new(index),
            next_tmp: AtomicU64::new(0),
            file_digests: Vec::new(),
            removals: removals::Removals::new(),
            held: std::sync::RwLock::default(),
        };
        store.evict_if_needed(None);
        Ok(store)
    }

    /// Digests computed from a complete file (see
    /// [`crate::digest::FileDigest`]) this store can verify.
    pub fn with_file_digests(mut self, file_digests: Vec<crate::digest::FileDigest>) -> Store {
        self.file_digests = file_digests;
        self
    }

    /// The digest of a file, of the algorithm of `like`.
    pub fn digest_file(&self, path: &Path, like: &Digest) -> io::Result<Digest> {
        crate::digest::digest_file(path, like, &self.file_digests)
    }

    /// Durability by checkpoint instead of an `fsync` per object: objects
    /// are published at once; [`Store::checkpoint`] (every few seconds)
    /// flushes the filesystem and records when; after an unclean shutdown,
    /// opening the store re-hashes only the objects written since the last
    /// checkpoint and drops any that do not match. A clean shutdown
    /// ([`Store::close`]) leaves a marker that skips even that.
    pub fn checkpointed(mut self) -> Store {
        self.sync_each = false;
        let marker = self.root.join(CLEAN);
        if marker.exists() {
            let _ = fs::remove_file(&marker);
            return self;
        }
        let since = fs::read_to_string(self.root.join(CHECKPOINT))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let started = std::time::Instant::now();
        let suspects: Vec<(Digest, u64)> = self
            .objects()
            .into_iter()
            .filter(|(d, _)| {
                fs::metadata(self.object_path(d))
                    .and_then(|m| m.modified())
                    .map(|t| {
                        t.duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs())
                            + 1
                            >= since
                    })
                    .unwrap_or(true)
            })
            .collect();
        let (mut bad, mut bytes) = (0, 0);
        for (d, size) in &suspects {
            bytes += size;
            let ok = self
                .digest_file(&self.object_path(d), d)
                .is_ok_and(|got| got == *d);
            if !ok {
                tracing::warn!(digest = %d, "dropping an object an unclean shutdown left incomplete");
                self.remove(d);
                bad += 1;
            }
        }
        if !suspects.is_empty() {
            tracing::info!(store = %self.root.display(), checked = suspects.len(), bytes, dropped = bad, ms = started.elapsed().as_millis() as u64, "unclean shutdown: re-verified the objects written since the last checkpoint");
        }
        self
    }

    /// Flushes everything published so far and records the time it covers.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return Ok(());
        }
        let covered = crate::timestamp::now();
        self.sync_all()?;
        let path = self.root.join(CHECKPOINT);
        crate::durable::write_atomic(&path, covered.to_string().as_bytes()).map_err(io_err(&path))
    }

    /// A clean shutdown: checkpoint, then mark the store clean.
    pub fn close(&self) -> Result<(), StoreError> {
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
        self.checkpoint()?;
        let marker = self.root.join(CLEAN);
        crate::durable::write_atomic(&marker, b"").map_err(io_err(&marker))
    }

    /// Objects are published without their own `fsync`; the caller must
    /// call [`Store::sync_all`] before anything durable references them.
    pub fn batched(mut self) -> Store {
        self.sync_each = false;
        self
    }

    /// Flushes every object written so far to disk (one `syncfs`).
    pub fn sync_all(&self) -> Result<(), StoreError> {
        let dir = File::open(&self.root).map_err(io_err(&self.root))?;
        // SAFETY: syncfs on a descriptor we own.
        if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } != 0 {
            return Err(StoreError::Io {
                path: self.root.clone(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the object for `d` lives (whether or not it is present).
    pub fn object_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root
            .join("objects")
            .join(d.algo().name())
            .join(&hex[..2])
            .join(&hex[2..])
    }

    /// The size of the object for `d`, if present.
    pub fn size_of(&self, d: &Digest) -> Option<u64> {
        self.index.lock().unwrap().objects.get(d).map(|s| s.size)
    }

    /// Opens the object for `d` for reading and marks it used; if there is
    /// none, says why.
    pub fn open_object(&self, d: &Digest) -> Result<(File, u64), Absent> {
        let path = self.object_path(d);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A download may have renamed it into place since the open
                // failed (it is indexed right after): forget the entry only
                // if the file is still missing under the index lock, or a
                // reader that looked a moment too early would drop the
                // entry of an object just stored, and every later reader
                // would fetch it again.
                let removed = {
                    let mut idx = self.index.lock().unwrap();
                    match path.exists() {
                        true => None,
                        false => idx.objects.remove(d).inspect(|s| idx.total -= s.size),
                    }
                };
                let gone = removed.is_some();
                if gone {
                    self.removals.record(d);
                }
                return Err(if gone {
                    Absent::Gone(path)
                } else {
                    Absent::NotIndexed
                });
            }
            Err(source) => return Err(Absent::Unreadable { path, source }),
        };
        let now = crate::timestamp::now();
        let (size, touch) = {
            let mut idx = self.index.lock().unwrap();
            idx.tick += 1;
            let tick = idx.tick;
            let slot = idx.objects.get_mut(d).ok_or(Absent::NotIndexed)?;
            slot.used = tick;
            let touch = now.saturating_sub(slot.touched) > TOUCH_INTERVAL;
            if touch {
                slot.touched = now;
            }
            (slot.size, touch)
        };
        if touch {
            let t = std::time::SystemTime::now();
            let _ = file.set_times(fs::FileTimes::new().set_modified(t));
        }
        Ok((file, size))
    }

    /// Marks the object for `d` as just used (LRU order) without opening it.
    pub fn mark_used(&self, d: &Digest) {
        let mut idx = self.index.lock().unwrap();
        idx.tick += 1;
        let tick = idx.tick;
        if let Some(slot) = idx.objects.get_mut(d) {
            slot.used = tick;
        }
    }

    /// Starts writing an object expected to have digest `expect`.
    pub fn begin(&self, expect: Digest, expected_size: Option<u64>) -> Result<Pending, StoreError> {
        self.begin_as(expect, expected_size, false)
    }

    /// Starts writing an object to pin on first use: `weak` is checked
    /// (unless it is [`Digest::none`]) and the object is kept under its
    /// SHA-256 ([`Pending::commit_keyed`] tells it).
    pub fn begin_pinning(
        &self,
        weak: Digest,
        expected_size: Option<u64>,
    ) -> Result<Pending, StoreError> {
        self.begin_as(weak, expected_size, true)
    }

    fn begin_as(
        &self,
        expect: Digest,
        expected_size: Option<u64>,
        pinning: bool,
    ) -> Result<Pending, StoreError> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join("tmp")
            .join(format!("{}-{n}.part", std::process::id()));
        let file = File::create(&path).map_err(io_err(&path))?;
        Ok(Pending::new(file, path, expect, expected_size, pinning))
    }

    /// Stores `bytes` whose SHA-256 is `d` (metadata blobs).
    pub fn put_bytes(&self, d: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        if self.size_of(d).is_some() {
            return Ok(());
        }
        let mut p = self.begin(d.clone(), Some(bytes.len() as u64))?;
        p.write(bytes)?;
        p.commit(self).map(|_| ())
    }

    pub fn usage(&self) -> Usage {
        let idx = self.index.lock().unwrap();
        Usage {
            objects: idx.objects.len() as u64,
            bytes: idx.total,
        }
    }

    /// Every object with its size.
    pub fn objects(&self) -> Vec<(Digest, u64)> {
        self.index
            .lock()
            .unwrap()
            .objects
            .iter()
            .map(|(d, s)| (d.clone(), s.size))
            .collect()
    }

    /// Removes the object for `d` (evicted, garbage, or found bad by `verify
    /// --repair`). Holders of descriptors kept open for reuse learn of it
    /// through [`Store::removed_since`] and drop theirs: an evicted file
    /// must give its space back, a bad one must not be served again.
    pub fn remove(&self, d: &Digest) {
        let _ = fs::remove_file(self.object_path(d));
        self.forget(d);
    }

    /// Tells this store apart from the other stores of the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// How many objects this store has removed so far (a holder's cursor).
    pub fn removal_count(&self) -> u64 {
        self.removals.count()
    }

    /// The objects removed after `cursor`, and the cursor to ask with next.
    pub fn removed_since(&self, cursor: u64) -> (u64, Removed) {
        self.removals.since(cursor)
    }

    /// Changes whenever an object is removed (for a holder that releases
    /// descriptors promptly: a download waiting for disk space needs them
    /// gone before its retry).
    pub fn watch_removals(&self) -> tokio::sync::watch::Receiver<u64> {
        self.removals.watch()
    }

    /// Removes every object for which `keep` is false; returns (objects, bytes) removed.
    pub fn retain(&self, keep: impl Fn(&Digest) -> bool) -> (u64, u64) {
        let doomed: Vec<(Digest, u64)> = self
            .objects()
            .into_iter()
            .filter(|(d, _)| !keep(d))
            .collect();
        let bytes = doomed.iter().map(|(_, s)| s).sum();
        for (d, _) in &doomed {
            self.remove(d);
        }
        (doomed.len() as u64, bytes)
    }

    /// Keeps `digests` from eviction for `holder` (replacing what it held
    /// before; an empty set releases it). Removal by `verify --repair` of a
    /// corrupt object still happens: a held object is one never evicted,
    /// not one served unverified.
    pub fn hold(&self, holder: &str, digests: HashSet<Digest>) {
        let mut held = self.held.write().unwrap();
        if digests.is_empty() {
            held.remove(holder);
        } else {
            held.insert(holder.to_string(), Arc::new(digests));
        }
    }

    /// Is `d` held from eviction by anyone?
    pub fn is_held(&self, d: &Digest) -> bool {
        self.held.read().unwrap().values().any(|h| h.contains(d))
    }

    /// Evicts least recently used objects until at most `target` bytes
    /// remain, never `spare` nor a held object.
    pub fn evict_to(&self, target: u64, spare: Option<&Digest>) -> (u64, u64) {
        let held: Vec<Arc<HashSet<Digest>>> = self.held.read().unwrap().values().cloned().collect();
        let victims: Vec<(Digest, u64)> = {
            let idx = self.index.lock().unwrap();
            if idx.total <= target {
                return (0, 0);
            }
            let mut by_age: Vec<(&Digest, &Slot)> = idx
                .objects
                .iter()
                .filter(|(d, _)| Some(*d) != spare && !held.iter().any(|h| h.contains(*d)))
                .collect();
            by_age.sort_unstable_by_key(|(_, s)| s.used);
            let mut excess = idx.total - target;
            let mut out = Vec::new();
            for (d, s) in by_age {
                if excess == 0 {
                    break;
                }
                excess = excess.saturating_sub(s.size);
                out.push((d.clone(), s.size));
            }
            out
        };
        for (d, _) in &victims {
            self.remove(d);
        }
        let bytes = victims.iter().map(|(_, s)| s).sum();
        if !victims.is_empty() {
            tracing::info!(store = %self.root.display(), objects = victims.len(), bytes, "evicted least recently used objects");
        }
        (victims.len() as u64, bytes)
    }

    /// The size bound, if any (`cache_max_size`).
    pub fn max_size(&self) -> Option<u64> {
        self.max_size
    }

    /// Bytes free for this store on its filesystem (0 if unknown).
    pub fn available(&self) -> u64 {
        let Ok(path) = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes()) else {
            return 0;
        };
        // SAFETY: statvfs into a zeroed struct we own, on a NUL-terminated path.
        unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            if libc::statvfs(path.as_ptr(), &mut st) != 0 {
                return 0;
            }
            (st.f_bavail as u64).saturating_mul(st.f_frsize as u64)
        }
    }

    /// Makes `need` bytes free on the store's filesystem when it is full
    /// before `max_size` is: evicts least recently used objects (never
    /// `spare`) for the shortfall only, and never the whole cache.
    pub fn make_room(&self, need: u64, spare: Option<&Digest>) -> Room {
        let short = need.saturating_sub(self.available());
        if short == 0 {
            return Room::Free;
        }
        let usage = self.usage().bytes;
        if short >= usage {
            return Room::Refused { short, usage };
        }
        let (objects, bytes) = self.evict_to(usage - short, spare);
        Room::Evicted { objects, bytes }
    }

    fn evict_if_needed(&self, spare: Option<&Digest>) {
        if let Some(max) = self.max_size {
            if self.usage().bytes > max {
                self.evict_to(max / 10 * 9, spare);
            }
        }
    }

    fn forget(&self, d: &Digest) {
        let removed = {
            let mut idx = self.index.lock().unwrap();
            idx.objects.remove(d).inspect(|s| idx.total -= s.size)
        };
        if removed.is_some() {
            self.removals.record(d);
        }
    }

    fn insert(&self, d: &Digest, size: u64) {
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
        let mut idx = self.index.lock().unwrap();
        idx.tick += 1;
        let used = idx.tick;
        if idx
            .objects
            .insert(
                d.clone(),
                Slot {
                    size,
                    used,
                    touched: crate::timestamp::now(),
                },
            )
            .is_none()
        {
            idx.total += size;
        }
    }
}

#[cfg(test)]
mod tests;
