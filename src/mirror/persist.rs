//! Swapping generations in, and getting their roots onto the disk.
//!
//! A sync (and a merge into the base) makes its generation durable before
//! serving it (invariant 2): the metadata blobs and trees are synced, then
//! its root is written. A materialization is served at once and its root
//! follows within [`PERSIST_EVERY`], shared by every materialization in
//! between (and written at once by [`Mirror::persist_now`], which the
//! daemon calls at shutdown): a lookup never waits for the disk, and a
//! crash loses at most the last moment's units, never consistency, since a
//! root is only written once everything it names is on disk.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::catalog::{self, Generation, Tree};

use super::state::TreeKind;
use super::{Mirror, MirrorError, stored_digests};

/// How long a materialized unit's root may wait before it is written.
const PERSIST_EVERY: Duration = Duration::from_millis(200);

/// The roots on disk: the newest written and the one before (kept as a
/// fallback; older ones are removed).
#[derive(Default)]
pub(super) struct Persisted {
    pub newest: u64,
    pub before: u64,
}

/// Whether a swap waits for its generation to be durable.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// Written before it is served (syncs, merges).
    Now,
    /// Served at once, written within [`PERSIST_EVERY`] (materializations).
    Soon,
}

impl Mirror {
    /// Makes `next` current; `touched` are the segments whose contribution
    /// changed (for the kernel's invalidations). Call with `swap_lock` held.
    /// With [`Durability::Soon`] the caller then calls
    /// [`Mirror::schedule_persist`].
    pub(super) fn swap_in(
        &self,
        next: Generation,
        touched: &[&Tree],
        built: Duration,
        durability: Durability,
    ) -> Result<Arc<Generation>, MirrorError> {
        let started = Instant::now();
        let next = Arc::new(next);
        if durability == Durability::Now {
            self.persist(&next)?;
        }
        let old = self.current();
        *self.previous.write().unwrap() = Some(old.clone());
        *self.current.write().unwrap() = next.clone();
        if durability == Durability::Now {
            tracing::info!(mirror = %self.name(), generation = next.number(), seq = next.info().seq, units = next.units().len(), nodes = next.node_count(), bytes = next.byte_len(), build_ms = built.as_millis() as u64, persist_ms = started.elapsed().as_millis() as u64, "serving new generation");
        } else {
            tracing::debug!(mirror = %self.name(), generation = next.number(), seq = next.info().seq, units = next.units().len(), nodes = next.node_count(), build_ms = built.as_millis() as u64, "serving new generation");
        }
        // A published snapshot is served meanwhile: the kernel's view is unchanged.
        // Nothing to tell without a kernel (`regfs sync`): the diff is skipped.
        if !self.is_published() && self.has_kernel() {
            self.invalidate(catalog::diff(&old, &next, touched));
        }
        self.swapped.notify_waiters();
        Ok(next)
    }

    /// Writes the current generation's root now if it is not on disk yet.
    pub fn persist_now(&self) {
        if let Err(e) = self.persist(&self.current()) {
            tracing::error!(mirror = %self.name(), "cannot write the catalog (the last written generation stays on disk): {e}");
        }
    }

    /// Writes the current root within [`PERSIST_EVERY`].
    pub(super) fn schedule_persist(self: &Arc<Self>) {
        if self.persist_due.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PERSIST_EVERY).await;
            me.persist_due.store(false, Ordering::SeqCst);
            let m = me.clone();
            let _ = tokio::task::spawn_blocking(move || {
                m.persist_now();
                m.docs.save_soon();
            })
            .await;
        });
    }

    /// Writes `g`'s root once the blobs and trees it names are on disk,
    /// unless a newer root is already written.
    fn persist(&self, g: &Generation) -> Result<(), MirrorError> {
        let mut p = self.persisted.lock().unwrap();
        let seq = g.info().seq;
        if seq <= p.newest {
            return Ok(());
        }
        let io = |source| MirrorError::Io {
            mirror: self.name().to_string(),
            path: self.dir.join("catalog"),
            source,
        };
        self.meta.sync_all().map_err(|e| MirrorError::Other {
            mirror: self.name().to_string(),
            what: e.to_string(),
        })?;
        self.catalog.put_root(g).map_err(io)?;
        self.catalog.remove_root(p.before);
        p.before = p.newest;
        p.newest = seq;
        let oldest = if p.before > 0 { p.before } else { p.newest };
        drop(p);
        self.release_retired(oldest);
        Ok(())
    }

    /// Removes replaced root entries' segments (and their blobs) that no
    /// root on disk (all from `oldest` on) and no generation in memory names:
    /// a segment retired at `at` is named by no generation from `at` on.
    fn release_retired(&self, oldest: u64) {
        let (cur, prev) = (self.current(), self.previous());
        let limit = [
            Some(oldest),
            prev.as_ref().map(|g| g.info().seq),
            Some(cur.info().seq),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(0);
        let (free, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *self.retired.lock().unwrap())
            .into_iter()
            .partition(|(_, at)| *at <= limit);
        let _gc = self.gc_lock.lock().unwrap();
        // Kept documents are asked one digest at a time: their number grows
        // with every materialized unit, a collection's candidates do not.
        let mut live: std::collections::HashSet<crate::digest::Digest> =
            self.pinned.lock().unwrap().keys().cloned().collect();
        let mut named: Vec<[u8; 16]> = Vec::new();
        let kept_gens = self.kept_generations();
        let in_memory = [Some(&cur), prev.as_ref()]
            .into_iter()
            .flatten()
            .chain(kept_gens.iter());
        let roots = in_memory.filter_map(|g| g.info().roots.and_then(|s| g.segment(s)));
        for t in roots.chain(kept.iter().map(|(t, _)| t)) {
            live.extend(stored_digests(t));
            named.push(t.hash());
        }
        for (t, _) in free {
            if !named.contains(&t.hash()) {
                self.catalog.remove_tree(TreeKind::Segment, &t.hash());
            }
            for d in stored_digests(&t) {
                if !live.contains(&d) && !self.docs.holds(&d) {
                    self.meta.remove(&d);
                }
            }
        }
        self.retired.lock().unwrap().extend(kept);
    }
}
