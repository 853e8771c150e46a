//! One mirror at run time: its current generation (and the previous one,
//! for handles and lookups that raced a swap), its metadata store, its
//! counters, and the ways a generation changes: a full sync
//! (`mirror/sync.rs`), the materialization of units on lookup, and the
//! merge of materialized units into the base (`mirror/compact.rs`).
//!
//! ```text
//! <state_dir>/mirrors/<name>/catalog/        segments, bases, roots (mirror/state.rs)
//! <state_dir>/mirrors/<name>/blobs/          metadata files served (never evicted)
//! <state_dir>/mirrors/<name>/docs.json       upstream validators for conditional requests
//! <state_dir>/mirrors/<name>/status.json     last sync and counters
//! <state_dir>/mirrors/<name>/built_by        the layout and upstream that built them
//! <state_dir>/mirrors/<name>/pins            SHA-256s trusted on first use (crate::pins)
//! <state_dir>/mirrors/<name>/snapshots/       snapshots and the publish switch (mirror/snapshot.rs)
//! ```
//!
//! A swap happens only after the new generation's trees and every metadata
//! file it serves are durable on disk (invariant 2); then its root is
//! written and it becomes current, in memory and on disk. Materializing a
//! unit writes its segment, the root entries' segment and a root: its cost
//! does not grow with the units already there.

mod compact;
mod cooldown;
mod docs;
mod follow;
mod identity;
mod lazy;
mod persist;
mod retain;
mod snapshot;
mod state;
mod sync;
mod trust;

pub use follow::{Followed, Role};
pub use snapshot::{
    Snapshot as MirrorSnapshot, SnapshotError, SnapshotInfo, check_name as check_snapshot_name,
    dir_name as snapshot_dir_name,
};
pub use sync::{Held, SyncReport, UnitFailure, jittered};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::catalog::{self, Body, Entry, Generation, Info, Invalidations, Tree, Units};
use crate::config::MirrorConfig;
use crate::digest::Digest;
use crate::layout::{Adapter, LayoutSpec};
use crate::stats::{Counters, Snapshot};
use crate::store::Store;

use state::{Catalog, Loaded};

/// Where lookups wait for a unit being materialized: `Ok(false)` = upstream does not have it.
type Waiter = watch::Receiver<Option<Result<bool, String>>>;

/// Called with what the kernel must forget after a swap; the handle
/// completes once every notification has been sent.
pub type SwapHook = Box<dyn Fn(Invalidations) -> InvalidationsSent + Send + Sync>;

/// Completes when a swap's notifications have reached the kernel.
pub type InvalidationsSent = tokio::task::JoinHandle<()>;

/// The label of the root entries' segment (units are named otherwise).
const ROOTS_LABEL: &str = ":root entries";

/// How long root entries may lag behind materialized units.
const ROOTS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

pub struct Mirror {
    pub config: MirrorConfig,
    pub slot: u8,
    pub spec: Arc<LayoutSpec>,
    adapter: Arc<dyn Adapter>,
    dir: PathBuf,
    /// Metadata files the generations serve, by SHA-256.
    pub meta: Arc<Store>,
    catalog: Catalog,
    current: RwLock<Arc<Generation>>,
    previous: RwLock<Option<Arc<Generation>>>,
    pub counters: Arc<Counters>,
    /// What `trust_on_first_use` pinned (`mirror/trust.rs`).
    pub pins: Arc<crate::pins::Pins>,
    /// Serializes generation changes (syncs, materializations, merges).
    swap_lock: tokio::sync::Mutex<()>,
    /// One sync of this mirror at a time (a second request waits its turn).
    sync_lock: tokio::sync::Mutex<()>,
    /// Units upstream does not have, remembered for `negative_ttl`.
    negative: moka::sync::Cache<String, ()>,
    materializing: Mutex<HashMap<String, Waiter>>,
    /// Segments of materialized units waiting for a swap: whoever swaps
    /// next takes them all (materializations that arrive together share
    /// one root write).
    pending: Mutex<Vec<(String, Arc<Tree>)>>,
    /// A merge of the overlay into the base is running.
    compacting: AtomicBool,
    /// A rebuild of the root entries is scheduled.
    roots_due: AtomicBool,
    /// Root entries' segments replaced, with the first generation that
    /// does not name them (see `persist.rs`).
    retired: Mutex<Vec<(Arc<Tree>, u64)>>,
    /// The roots on disk.
    persisted: Mutex<persist::Persisted>,
    /// A write of the current root is scheduled.
    persist_due: AtomicBool,
    /// Placeholder directories handed out by lookups (see
    /// [`Adapter::lazy_dir`]): inode to mirror-relative path.
    placeholders: moka::sync::Cache<u64, Arc<str>>,
    docs: docs::DocCache,
    record: Mutex<SyncRecord>,
    on_swap: RwLock<Option<SwapHook>>,
    /// Notifications handed to the hook and perhaps not sent yet.
    invalidating: Mutex<Vec<InvalidationsSent>>,
    /// Woken after every swap (the immediate-download prefetcher waits here).
    pub swapped: tokio::sync::Notify,
    /// Metadata blobs written and not yet referenced by a served
    /// generation, each with the number of operations (a sync, a lazy
    /// materialization, an adoption) holding it: garbage collection keeps
    /// them. Counted, as two operations may write the same blob and the
    /// first to finish must not unpin the other's.
    pinned: Mutex<HashMap<Digest, usize>>,
    /// What the sync in progress pinned ([`Mirror::spool`]), unpinned when
    /// it ends.
    sync_pins: Mutex<Vec<Digest>>,
    /// Held while a metadata blob is written and made live (kept by the
    /// document cache or pinned), and while garbage is collected: a blob
    /// written between the collector's view of what is live and its sweep
    /// would otherwise be swept (a lookup storm of Maven sidecars did it).
    pub(crate) gc_lock: Mutex<()>,
    /// Snapshots by name (`mirror/snapshot.rs`).
    snapshots: RwLock<std::collections::BTreeMap<String, Arc<MirrorSnapshot>>>,
    /// The snapshot `<mirror>/` serves instead of the followed generation.
    published: RwLock<Option<Arc<MirrorSnapshot>>>,
    /// What was served before the last publish switch.
    served_before: RwLock<Option<Arc<Generation>>>,
    /// `retain = "additive"`: the artifact cache and the retained versions.
    retained: retain::Retained,
    /// This node's role with the shared store (set by [`Mirror::set_role`]).
    role: std::sync::OnceLock<Role>,
    /// What was published to (or adopted from) the shared store.
    follow: follow::FollowState,
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
    /// Units whose refresh failed in the last sync, each "unit: reason";
    /// they kept their previous contents (invariant 10).
    #[serde(default)]
    pub failed: Vec<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct StatusFile {
    sync: SyncRecord,
    counters: Snapshot,
    /// `retain = "additive"`: per unit, the versions retained and their
    /// artifacts (`algo:hex`).
    #[serde(default)]
    retained: HashMap<String, (usize, Vec<String>)>,
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
        let other = |what: String| MirrorError::Other {
            mirror: config.name.clone(),
            what,
        };
        std::fs::create_dir_all(&dir).map_err(|source| MirrorError::Io {
            mirror: config.name.clone(),
            path: dir.clone(),
            source,
        })?;
        crate::durable::clean_temps(&dir);
        let meta = Store::open(&dir.join("blobs"), None)
            .map(Store::batched)
            .map_err(|e| other(e.to_string()))?;
        identity::claim(&config, &dir).map_err(|source| MirrorError::Io {
            mirror: config.name.clone(),
            path: dir.clone(),
            source,
        })?;
        let catalog = Catalog::open(&dir).map_err(|source| MirrorError::Io {
            mirror: config.name.clone(),
            path: dir.join("catalog"),
            source,
        })?;
        let pins = crate::pins::Pins::load(&dir).map_err(|e| other(e.to_string()))?;
        let spec = config.spec.clone();
        let adapter = config.adapter.clone();
        let loaded = catalog.load(slot, &config.name);
        if matches!(loaded, Loaded::OldFormat) {
            tracing::info!(mirror = %config.name, "the catalog on disk is from an older regfs (format 1) and is not read: starting empty, the first sync rebuilds it");
            let _ = std::fs::remove_file(dir.join("current"));
            let _ = std::fs::remove_dir_all(dir.join("generations"));
        }
        let current = match loaded {
            Loaded::Generation(g) => g,
            Loaded::Nothing | Loaded::OldFormat => {
                let now = crate::timestamp::now();
                let base = state::empty_base(slot, now as u32);
                let info = Info {
                    created: now,
                    ..Info::default()
                };
                let g = Generation::of_base(slot, base, info, Units::default());
                let roots = root_segment(&*adapter, &meta, slot, &g, now as u32, None)
                    .map_err(other)?
                    .0;
                let (g, srcs, _) = catalog::extend(&g, &[], vec![roots]);
                let info = Info {
                    roots: srcs.first().copied(),
                    ..g.info().clone()
                };
                g.with(info, Units::default())
            }
        };
        let seq = current.info().seq;
        let status: StatusFile = std::fs::read(dir.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let counters = Arc::new(Counters::default());
        counters.restore(&status.counters);
        tracing::info!(mirror = %config.name, generation = current.number(), units = current.units().len(), nodes = current.node_count(), "loaded generation");
        let mirror = Mirror {
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
            catalog,
            current: RwLock::new(Arc::new(current)),
            previous: RwLock::new(None),
            counters,
            pins: Arc::new(pins),
            swap_lock: tokio::sync::Mutex::new(()),
            sync_lock: tokio::sync::Mutex::new(()),
            materializing: Mutex::default(),
            pending: Mutex::default(),
            compacting: AtomicBool::new(false),
            roots_due: AtomicBool::new(false),
            retired: Mutex::default(),
            persisted: Mutex::new(persist::Persisted {
                newest: seq,
                before: 0,
            }),
            persist_due: AtomicBool::new(false),
            record: Mutex::new(status.sync),
            on_swap: RwLock::new(None),
            invalidating: Mutex::new(Vec::new()),
            swapped: tokio::sync::Notify::new(),
            pinned: Mutex::default(),
            sync_pins: Mutex::default(),
            gc_lock: Mutex::default(),
            snapshots: RwLock::default(),
            published: RwLock::default(),
            served_before: RwLock::default(),
            // Switched back to `retain = "mirror"`: nothing is retained.
            retained: retain::Retained::load(match config.policy.retain {
                crate::policy::Retain::Additive => status.retained,
                crate::policy::Retain::Mirror => HashMap::new(),
            }),
            role: std::sync::OnceLock::new(),
            follow: follow::FollowState::default(),
            config,
        };
        mirror.load_snapshots();
        Ok(mirror)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Sets this node's role with the shared store (once, at open).
    pub fn set_role(&self, role: Role) {
        let _ = self.role.set(role);
    }

    pub fn role(&self) -> Role {
        self.role.get().copied().unwrap_or_default()
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

    /// The new upstream generation a `cooldown` holds back (signed
    /// layouts), if one is: what `cooldown.json` records now.
    pub fn held(&self) -> Option<Held> {
        if self.config.policy.cooldown.is_none() || !self.config.layout.capabilities.signed {
            return None;
        }
        cooldown::pending(&self.dir).map(|p| Held {
            first_seen: p.first_seen,
            adopt_at: p.adopt_at,
        })
    }

    /// Waits until no sync or materialization of this mirror is running.
    pub async fn wait_idle(&self) {
        let _sync = self.sync_lock.lock().await;
        let _swap = self.swap_lock.lock().await;
    }

    pub fn set_swap_hook(&self, hook: SwapHook) {
        *self.on_swap.write().unwrap() = Some(hook);
    }

    /// Tells the kernel (through the swap hook, if mounted) what to forget.
    /// Whether a kernel mount is told of swaps (not under `regfs sync`).
    fn has_kernel(&self) -> bool {
        self.on_swap.read().unwrap().is_some()
    }

    fn invalidate(&self, inv: Invalidations) {
        if let Some(hook) = self.on_swap.read().unwrap().as_ref() {
            let sent = hook(inv);
            let mut pending = self.invalidating.lock().unwrap();
            pending.retain(|h| !h.is_finished());
            pending.push(sent);
        }
    }

    /// Waits until the kernel has been told about every swap so far, so a
    /// command that changed the tree (`publish`, `snapshot`, `sync`) answers
    /// only once a client's next lookup sees the change. Gives up after
    /// 10 s (the kernel answers notifications in microseconds; a command
    /// never hangs on one).
    pub async fn invalidations_sent(&self) {
        let pending = std::mem::take(&mut *self.invalidating.lock().unwrap());
        let all = futures_util::future::join_all(pending);
        if tokio::time::timeout(std::time::Duration::from_secs(10), all)
            .await
            .is_err()
        {
            tracing::warn!(mirror = %self.name(), "the kernel took over 10 s to take this mirror's invalidations; answering anyway");
        }
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

    /// Drops catalog files and metadata blobs that neither the current nor
    /// the previous generation (nor the document cache) needs. Call after a
    /// swap that wrote its root.
    fn collect_garbage(&self, cur: &Generation, prev: &Generation) {
        let kept = self.kept_generations();
        let mut keep: Vec<&Generation> = vec![cur, prev];
        keep.extend(kept.iter().map(|g| &**g));
        self.catalog.collect_garbage(&keep);
        {
            // Only the roots of `cur` and `prev` are left on disk.
            let mut p = self.persisted.lock().unwrap();
            if p.before != prev.info().seq {
                p.before = 0;
            }
        }
        self.retired.lock().unwrap().clear();
        let _gc = self.gc_lock.lock().unwrap();
        let mut live: std::collections::HashSet<Digest> = self.docs.blobs();
        live.extend(self.pinned.lock().unwrap().keys().cloned());
        for g in keep {
            live.extend(g.files().filter_map(|id| g.stored_digest(id)));
        }
        let (n, bytes) = self.meta.retain(|d| live.contains(d));
        if n > 0 {
            tracing::debug!(mirror = %self.name(), blobs = n, bytes, "removed unused metadata blobs");
        }
    }

    /// Writes a unit's generated files to the metadata store as soon as the
    /// unit is done (rather than holding them all until the build), pinned
    /// until the generation that names them is served: the caller unpins
    /// the digests returned ([`Mirror::unpin`]). On an error nothing stays
    /// pinned.
    pub(crate) fn spool(&self, entries: &mut [Entry]) -> Result<Vec<Digest>, String> {
        let mut spooled = Vec::new();
        for e in entries.iter_mut() {
            if let Body::Inline(bytes) = &e.body {
                let digest = Digest::sha256_of(bytes);
                let _gc = self.gc_lock.lock().unwrap();
                if let Err(err) = self.meta.put_bytes(&digest, bytes) {
                    drop(_gc);
                    self.unpin(&spooled);
                    return Err(err.to_string());
                }
                self.pin(&digest);
                spooled.push(digest.clone());
                e.body = Body::Stored {
                    digest,
                    size: bytes.len() as u64,
                };
            }
        }
        Ok(spooled)
    }

    /// Holds `digest` from garbage collection until as many
    /// [`Mirror::unpin`]s name it. Called with `gc_lock` held, so that a
    /// blob is written and pinned between two collections.
    pub(crate) fn pin(&self, digest: &Digest) {
        *self
            .pinned
            .lock()
            .unwrap()
            .entry(digest.clone())
            .or_insert(0) += 1;
    }

    /// Releases one pin of each of `digests` ([`Mirror::pin`]).
    pub(crate) fn unpin(&self, digests: &[Digest]) {
        let mut p = self.pinned.lock().unwrap();
        for d in digests {
            if let Some(n) = p.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    p.remove(d);
                }
            }
        }
    }

    /// Pins what the sync in progress spooled, until it ends.
    pub(crate) fn pin_for_sync(&self, digests: Vec<Digest>) {
        self.sync_pins.lock().unwrap().extend(digests);
    }

    /// Releases the pins of the sync that ended.
    pub(crate) fn unpin_sync(&self) {
        let pins = std::mem::take(&mut *self.sync_pins.lock().unwrap());
        self.unpin(&pins);
    }

    fn record_sync(&self, rec: SyncRecord) {
        *self.record.lock().unwrap() = rec;
        self.save_status();
    }

    /// Persists the sync record and counters, and the current generation
    /// if a materialization left it unwritten (the daemon calls this every
    /// 30 s and at shutdown).
    pub fn save_status(&self) {
        self.persist_now();
        let status = StatusFile {
            sync: self.sync_record(),
            counters: self.counters.snapshot(),
            retained: self.retained.save(),
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

/// The digests of a tree's stored files.
fn stored_digests(t: &Tree) -> Vec<Digest> {
    (0..t.node_count())
        .filter(|&id| {
            t.file(id)
                .is_some_and(|f| f.source == catalog::Source::Stored)
        })
        .map(|id| t.digest_of(id))
        .collect()
}

/// The segment of the root entries for `g`'s units, their blobs stored
/// and, when `pin` is given, pinned in that mirror until a generation
/// names them: the digests pinned come back with the segment, for the
/// caller to unpin. On an error nothing stays pinned.
fn root_segment(
    adapter: &dyn Adapter,
    meta: &Store,
    slot: u8,
    g: &Generation,
    now: u32,
    pin: Option<&Mirror>,
) -> Result<(Arc<Tree>, Vec<Digest>), String> {
    let units: Vec<String> = g.units().map(str::to_string).collect();
    let built = catalog::build_tree(
        slot,
        now,
        ROOTS_LABEL,
        adapter.root_entries(&units),
        Some(g),
        false,
    )
    .map_err(|e| e.to_string())?;
    let mut pinned = Vec::new();
    for (d, bytes) in &built.blobs {
        // Written and pinned at once, between garbage collections.
        let _gc = pin.map(|m| m.gc_lock.lock().unwrap());
        if let Some(m) = pin {
            m.pin(d);
            pinned.push(d.clone());
        }
        if let Err(e) = meta.put_bytes(d, bytes) {
            drop(_gc);
            if let Some(m) = pin {
                m.unpin(&pinned);
            }
            return Err(e.to_string());
        }
    }
    Ok((Arc::new(built.tree), pinned))
}

#[cfg(test)]
mod tests;

/// Forgets the slot of `name` (a deleted snapshot), so that it can be given again.
pub fn free_slot(state_dir: &Path, name: &str) -> std::io::Result<()> {
    let path = state_dir.join("slots.json");
    let mut slots: HashMap<String, u8> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if slots.remove(name).is_some() {
        crate::durable::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&slots).unwrap_or_default(),
        )?;
    }
    Ok(())
}

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
