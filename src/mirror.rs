//! One mirror at run time: its current generation (and the previous one,
//! for handles and lookups that raced a swap), its metadata store, its
//! counters, and the two ways a generation changes: a full sync
//! (`mirror/sync.rs`) or the materialization of one unit on lookup.
//!
//! ```text
//! <state_dir>/mirrors/<name>/generations/<n>.cat   persisted generations
//! <state_dir>/mirrors/<name>/current               number of the served one
//! <state_dir>/mirrors/<name>/blobs/                metadata files served (never evicted)
//! <state_dir>/mirrors/<name>/docs.json             upstream validators for conditional requests
//! <state_dir>/mirrors/<name>/status.json           last sync and counters
//! <state_dir>/mirrors/<name>/built_by              the layout and upstream that built them
//! ```
//!
//! A swap happens only after the new generation and every metadata file it
//! serves are durable on disk (invariant 2); then one pointer write makes it
//! current, in memory and on disk.

mod docs;
mod identity;
mod sync;

pub use sync::{SyncReport, jittered};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::catalog::{self, Body, Entry, Generation, Invalidations, Source};
use crate::config::MirrorConfig;
use crate::fetch::Fetcher;
use crate::layout::{Adapter, LayoutSpec};
use crate::stats::{Counters, Snapshot};
use crate::store::Store;

/// Where lookups wait for a unit being materialized: `Ok(false)` = upstream does not have it.
type Waiter = watch::Receiver<Option<Result<bool, String>>>;

/// Called with what the kernel must forget after a swap.
pub type SwapHook = Box<dyn Fn(Invalidations) + Send + Sync>;

pub struct Mirror {
    pub config: MirrorConfig,
    pub slot: u8,
    pub spec: Arc<LayoutSpec>,
    adapter: Arc<dyn Adapter>,
    dir: PathBuf,
    /// Metadata files the generations serve, by SHA-256.
    pub meta: Arc<Store>,
    current: RwLock<Arc<Generation>>,
    previous: RwLock<Option<Arc<Generation>>>,
    pub counters: Arc<Counters>,
    /// Serializes generation changes (syncs and materializations).
    swap_lock: tokio::sync::Mutex<()>,
    /// One sync of this mirror at a time (a second request waits its turn).
    sync_lock: tokio::sync::Mutex<()>,
    /// Units upstream does not have, remembered for `negative_ttl`.
    negative: moka::sync::Cache<String, ()>,
    materializing: Mutex<HashMap<String, Waiter>>,
    /// Placeholder directories handed out by lookups (see
    /// [`Adapter::lazy_dir`]): inode to mirror-relative path.
    placeholders: moka::sync::Cache<u64, Arc<str>>,
    docs: docs::DocCache,
    record: Mutex<SyncRecord>,
    on_swap: RwLock<Option<SwapHook>>,
    /// Woken after every swap (the immediate-download prefetcher waits here).
    pub swapped: tokio::sync::Notify,
    /// Metadata blobs written by a sync in progress, not yet referenced by
    /// a generation: garbage collection keeps them.
    pinned: Mutex<std::collections::HashSet<crate::digest::Digest>>,
    /// Held while a metadata blob is written and made live (kept by the
    /// document cache or pinned), and while garbage is collected: a blob
    /// written between the collector's view of what is live and its sweep
    /// would otherwise be swept (a lookup storm of Maven sidecars did it).
    pub(crate) gc_lock: Mutex<()>,
}

/// The outcome of the last sync, as `status` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncRecord {
    /// Unix seconds the last sync finished (0: never).
    pub last_sync: u64,
    pub ok: bool,
    pub message: String,
    pub duration_ms: u64,
    /// Unix seconds of the last successful sync.
    pub last_success: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct StatusFile {
    sync: SyncRecord,
    counters: Snapshot,
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("mirror {mirror}: {path}: {source}")]
    Io {
        mirror: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mirror {mirror}: {0}", mirror = .1)]
    Sync(crate::layout::SyncError, String),
    #[error("mirror {mirror}: {what}")]
    Other { mirror: String, what: String },
}

impl Mirror {
    /// Opens a mirror's state, loading the last good generation (or an empty one).
    pub fn open(config: MirrorConfig, slot: u8, state_dir: &Path) -> Result<Mirror, MirrorError> {
        let dir = state_dir.join("mirrors").join(&config.name);
        let io = |path: &Path| {
            let (mirror, path) = (config.name.clone(), path.to_owned());
            move |source| MirrorError::Io {
                mirror,
                path,
                source,
            }
        };
        let gens = dir.join("generations");
        std::fs::create_dir_all(&gens).map_err(io(&gens))?;
        crate::durable::clean_temps(&dir);
        crate::durable::clean_temps(&gens);
        let meta = Store::open(&dir.join("blobs"), None)
            .map(Store::batched)
            .map_err(|e| MirrorError::Other {
                mirror: config.name.clone(),
                what: e.to_string(),
            })?;
        identity::claim(&config, &dir).map_err(io(&dir))?;
        let spec = config.spec.clone();
        let adapter = config.adapter.clone();
        let current = match load_current(&dir) {
            Some(g) => g,
            None => {
                let out = catalog::build(
                    slot,
                    0,
                    crate::timestamp::now() as u32,
                    adapter.root_entries(&[]),
                    Vec::new(),
                    None,
                )
                .map_err(|e| MirrorError::Other {
                    mirror: config.name.clone(),
                    what: e.to_string(),
                })?;
                for (d, bytes) in &out.blobs {
                    meta.put_bytes(d, bytes).map_err(|e| MirrorError::Other {
                        mirror: config.name.clone(),
                        what: e.to_string(),
                    })?;
                }
                out.generation
            }
        };
        let status: StatusFile = std::fs::read(dir.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let counters = Arc::new(Counters::default());
        counters.restore(&status.counters);
        tracing::info!(mirror = %config.name, generation = current.number(), nodes = current.node_count(), "loaded generation");
        Ok(Mirror {
            negative: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(spec.negative_ttl)
                .build(),
            placeholders: moka::sync::Cache::new(100_000),
            docs: docs::DocCache::load(&dir.join("docs.json")),
            slot,
            spec,
            adapter,
            dir,
            meta: Arc::new(meta),
            current: RwLock::new(Arc::new(current)),
            previous: RwLock::new(None),
            counters,
            swap_lock: tokio::sync::Mutex::new(()),
            sync_lock: tokio::sync::Mutex::new(()),
            materializing: Mutex::default(),
            record: Mutex::new(status.sync),
            on_swap: RwLock::new(None),
            swapped: tokio::sync::Notify::new(),
            pinned: Mutex::default(),
            gc_lock: Mutex::default(),
            config,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The generation being served.
    pub fn current(&self) -> Arc<Generation> {
        self.current.read().unwrap().clone()
    }

    /// The generation served before the last swap, if still held.
    pub fn previous(&self) -> Option<Arc<Generation>> {
        self.previous.read().unwrap().clone()
    }

    pub fn sync_record(&self) -> SyncRecord {
        self.record.lock().unwrap().clone()
    }

    /// Waits until no sync or materialization of this mirror is running.
    pub async fn wait_idle(&self) {
        let _sync = self.sync_lock.lock().await;
        let _swap = self.swap_lock.lock().await;
    }

    pub fn set_swap_hook(&self, hook: SwapHook) {
        *self.on_swap.write().unwrap() = Some(hook);
    }

    /// Files of the served generation that no digest covers (see
    /// [`Adapter::unverified`]).
    pub fn unverified(&self) -> u64 {
        self.adapter.unverified(&self.current())
    }

    /// Does a lookup of `name` in `parent` materialize a unit here?
    pub fn lazy_unit(&self, parent: &str, name: &str) -> Option<String> {
        self.adapter.lazy_unit(parent, name)
    }

    /// The inode of a placeholder directory for `name` in `parent`, when the
    /// layout allows one there. Its inode is the one the catalog gives that
    /// directory once something under it is materialized.
    pub fn placeholder_dir(&self, parent: &str, name: &str) -> Option<u64> {
        if !self.adapter.lazy_dir(parent, name) {
            return None;
        }
        let path = if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}/{name}")
        };
        let ino = catalog::ino_for(self.slot, &path, None, 0);
        self.placeholders.insert(ino, path.into());
        Some(ino)
    }

    /// The path of a placeholder directory handed out earlier.
    pub fn placeholder_path(&self, ino: u64) -> Option<Arc<str>> {
        self.placeholders.get(&ino)
    }

    /// Candidate URLs for an artifact (its own, then fallback upstreams).
    pub fn artifact_urls(&self, url: &str) -> Vec<String> {
        let learnt = self.adapter.fallback_upstreams();
        if learnt.is_empty() {
            return crate::fetch::fallback_urls(url, &self.config.upstreams);
        }
        let mut bases = self.config.upstreams.clone();
        bases.extend(
            learnt
                .into_iter()
                .filter(|u| !self.config.upstreams.contains(u)),
        );
        crate::fetch::fallback_urls(url, &bases)
    }

    /// Makes `unit` part of the tree if upstream has it; `Ok(false)` if not.
    /// Concurrent calls for one unit share one upstream request.
    pub async fn materialize(
        self: &Arc<Self>,
        fetcher: &Arc<Fetcher>,
        unit: &str,
    ) -> Result<bool, String> {
        if self.current().has_unit(unit) {
            return Ok(true);
        }
        if self.negative.contains_key(unit) {
            return Ok(false);
        }
        let mut rx = {
            let mut m = self.materializing.lock().unwrap();
            match m.get(unit) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    m.insert(unit.to_string(), rx.clone());
                    let (me, fetcher, unit) = (self.clone(), fetcher.clone(), unit.to_string());
                    tokio::spawn(async move {
                        let in_flight = InFlight {
                            mirror: &me,
                            unit: &unit,
                        };
                        let r = me.materialize_now(&fetcher, &unit).await;
                        if let Err(e) = &r {
                            crate::warn_limited!(mirror = %me.name(), unit, "materializing failed: {e}");
                        }
                        drop(in_flight);
                        let _ = tx.send(Some(r));
                    });
                    rx
                }
            }
        };
        match tokio::time::timeout(self.spec.lookup_timeout, rx.wait_for(Option::is_some)).await {
            Ok(Ok(v)) => v.clone().unwrap_or(Ok(false)),
            Ok(Err(_)) => Err("materialization ended without a result".into()),
            Err(_) => Err(format!(
                "upstream did not answer within {:?}",
                self.spec.lookup_timeout
            )),
        }
    }

    async fn materialize_now(&self, fetcher: &Arc<Fetcher>, unit: &str) -> Result<bool, String> {
        let src = docs::Source::new(self, fetcher);
        let out = match self
            .adapter
            .unit(unit, &src, crate::timestamp::now(), true)
            .await
        {
            Ok(Some(out)) => out,
            Ok(None) => {
                self.negative.insert(unit.to_string(), ());
                return Ok(false);
            }
            Err(e) => return Err(e.to_string()),
        };
        let _guard = self.swap_lock.lock().await;
        let cur = self.current();
        if cur.has_unit(unit) {
            return Ok(true);
        }
        let mut units: Vec<String> = cur.units().map(str::to_string).collect();
        units.push(unit.to_string());
        let mut entries: Vec<Entry> = entries_of(&cur)
            .into_iter()
            .filter(|e| !self.adapter.is_root_entry(e.path.as_str()))
            .collect();
        entries.extend(out.entries);
        entries.extend(self.adapter.root_entries(&sorted(units.clone())));
        self.docs.save();
        self.install(entries, units)
            .map(|_| true)
            .map_err(|e| e.to_string())
    }

    /// Builds, persists and swaps in a new generation. Call with `swap_lock` held.
    fn install(
        &self,
        entries: Vec<Entry>,
        units: Vec<String>,
    ) -> Result<Arc<Generation>, MirrorError> {
        let other = |what: String| MirrorError::Other {
            mirror: self.name().to_string(),
            what,
        };
        let started = std::time::Instant::now();
        let old = self.current();
        let out = catalog::build(
            self.slot,
            old.number() + 1,
            crate::timestamp::now() as u32,
            entries,
            units,
            Some(&old),
        )
        .map_err(|e| other(e.to_string()))?;
        for c in &out.conflicts {
            tracing::warn!(mirror = %self.name(), "conflict: {c}");
        }
        for (d, bytes) in &out.blobs {
            self.meta
                .put_bytes(d, bytes)
                .map_err(|e| other(e.to_string()))?;
        }
        let built = started.elapsed();
        // Every blob the new generation serves is on disk before it is.
        self.meta.sync_all().map_err(|e| other(e.to_string()))?;
        let synced = started.elapsed();
        let generation = Arc::new(out.generation);
        let n = generation.number();
        let path = self.dir.join("generations").join(format!("{n}.cat"));
        let io = |p: &Path| {
            let (mirror, path) = (self.name().to_string(), p.to_owned());
            move |source| MirrorError::Io {
                mirror,
                path,
                source,
            }
        };
        crate::durable::write_atomic(&path, generation.as_bytes()).map_err(io(&path))?;
        let ptr = self.dir.join("current");
        crate::durable::write_atomic(&ptr, n.to_string().as_bytes()).map_err(io(&ptr))?;
        *self.previous.write().unwrap() = Some(old.clone());
        *self.current.write().unwrap() = generation.clone();
        tracing::info!(mirror = %self.name(), generation = n, nodes = generation.node_count(), bytes = generation.byte_len(), build_ms = built.as_millis() as u64, sync_ms = (synced - built).as_millis() as u64, persist_ms = (started.elapsed() - synced).as_millis() as u64, "serving new generation");
        if let Some(hook) = self.on_swap.read().unwrap().as_ref() {
            hook(catalog::diff(&old, &generation));
        }
        self.collect_garbage(&generation, &old);
        self.swapped.notify_waiters();
        Ok(generation)
    }

    /// Drops generation files and metadata blobs that neither the current
    /// nor the previous generation (nor the document cache) needs.
    fn collect_garbage(&self, cur: &Generation, prev: &Generation) {
        let keep = [cur.number(), prev.number()];
        if let Ok(rd) = std::fs::read_dir(self.dir.join("generations")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name
                    .strip_suffix(".cat")
                    .and_then(|n| n.parse::<u64>().ok());
                if n.is_some_and(|n| !keep.contains(&n)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _gc = self.gc_lock.lock().unwrap();
        let mut live: std::collections::HashSet<crate::digest::Digest> = self.docs.blobs();
        live.extend(self.pinned.lock().unwrap().iter().cloned());
        for g in [cur, prev] {
            live.extend(g.files().filter_map(|id| g.stored_digest(id)));
        }
        let (n, bytes) = self.meta.retain(|d| live.contains(d));
        if n > 0 {
            tracing::debug!(mirror = %self.name(), blobs = n, bytes, "removed unused metadata blobs");
        }
    }

    /// Writes a unit's generated files to the metadata store as soon as the
    /// unit is done (rather than holding them all until the build), pinned
    /// until the sync ends.
    pub(crate) fn spool(&self, entries: &mut [Entry]) -> Result<(), String> {
        for e in entries.iter_mut() {
            if let Body::Inline(bytes) = &e.body {
                let digest = crate::digest::Digest::sha256_of(bytes);
                let _gc = self.gc_lock.lock().unwrap();
                self.meta
                    .put_bytes(&digest, bytes)
                    .map_err(|err| err.to_string())?;
                self.pinned.lock().unwrap().insert(digest.clone());
                e.body = Body::Stored {
                    digest,
                    size: bytes.len() as u64,
                };
            }
        }
        Ok(())
    }

    pub(crate) fn unpin_all(&self) {
        self.pinned.lock().unwrap().clear();
    }

    fn record_sync(&self, rec: SyncRecord) {
        *self.record.lock().unwrap() = rec;
        self.save_status();
    }

    /// Persists the sync record and counters.
    pub fn save_status(&self) {
        let status = StatusFile {
            sync: self.sync_record(),
            counters: self.counters.snapshot(),
        };
        let path = self.dir.join("status.json");
        if let Err(e) = crate::durable::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&status).unwrap_or_default(),
        ) {
            tracing::warn!(mirror = %self.name(), "cannot save {}: {e}", path.display());
        }
    }
}

/// A unit's entry in `materializing`, removed however its materialization
/// ends: a panic in an adapter too (invariant 9 says there is none, but a
/// unit stuck in flight would answer EIO until a restart).
struct InFlight<'a> {
    mirror: &'a Mirror,
    unit: &'a str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.mirror
            .materializing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(self.unit);
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn load_current(dir: &Path) -> Option<Generation> {
    let n: u64 = std::fs::read_to_string(dir.join("current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Fall back to older generations if the newest is unreadable.
    let mut candidates: Vec<u64> = std::fs::read_dir(dir.join("generations"))
        .ok()?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".cat")?
                .parse()
                .ok()
        })
        .filter(|&g| g <= n)
        .collect();
    candidates.sort_unstable_by(|a, b| b.cmp(a));
    for g in candidates {
        match Generation::load(&dir.join("generations").join(format!("{g}.cat"))) {
            Ok(gen_) => return Some(gen_),
            Err(e) => tracing::error!("{e}; trying an older generation"),
        }
    }
    None
}

/// The entries that rebuild `g`'s files.
pub fn entries_of(g: &Generation) -> Vec<Entry> {
    g.files()
        .filter_map(|id| {
            let f = g.file(id)?;
            let path = crate::path::RelPath::new(g.path(id)).ok()?;
            let body = match f.source {
                Source::Remote { url } => Body::Remote {
                    url,
                    size: f.size,
                    digest: f.digest,
                },
                Source::Stored => Body::Stored {
                    digest: f.digest,
                    size: f.size.unwrap_or(0),
                },
            };
            Some(Entry {
                path,
                mtime: Some(g.mtime(id)),
                body,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;

/// Assigns each mirror name a stable slot (the top byte of its inodes),
/// persisted in `<state_dir>/slots.json`.
pub fn assign_slots(state_dir: &Path, names: &[&str]) -> std::io::Result<HashMap<String, u8>> {
    let path = state_dir.join("slots.json");
    let mut slots: HashMap<String, u8> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut changed = false;
    for name in names {
        if slots.contains_key(*name) {
            continue;
        }
        let used: std::collections::HashSet<u8> = slots.values().copied().collect();
        let free = (1..=255u8).find(|s| !used.contains(s)).ok_or_else(|| {
            std::io::Error::other("more than 255 mirrors ever configured in this state_dir")
        })?;
        slots.insert(name.to_string(), free);
        changed = true;
    }
    if changed {
        std::fs::create_dir_all(state_dir)?;
        crate::durable::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&slots).unwrap_or_default(),
        )?;
    }
    Ok(slots)
}
