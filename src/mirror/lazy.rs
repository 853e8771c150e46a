//! Materializing units on lookup (lazy mirrors).
//!
//! A lookup of a name the catalog does not have asks the layout which unit
//! it would be, fetches that unit and swaps in a generation with its
//! segment added to the overlay: the cost is the unit's, not the catalog's.
//! Lookups that wait at the same time share one swap, and the root entries
//! (PyPI's `simple/index.html`, which lists every unit and so costs more
//! with each) are rebuilt a moment later, once for all the units that
//! arrived meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use crate::catalog::{self, Info, Place, Tree, Unit};
use crate::fetch::Fetcher;

use super::Role;
use super::persist::Durability;
use super::state::TreeKind;
use super::{InFlight, Mirror, MirrorError, ROOTS_EVERY, docs, root_segment};

impl Mirror {
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

    async fn materialize_now(
        self: &Arc<Self>,
        fetcher: &Arc<Fetcher>,
        unit: &str,
    ) -> Result<bool, String> {
        let now = crate::timestamp::now();
        // Syncers and followers share what they materialize: another
        // node's recent one is taken from the bucket, not upstream.
        let shared = fetcher
            .shared()
            .filter(|_| self.role() != Role::Standalone)
            .cloned();
        if let Some(shared) = &shared {
            let mut pins = Vec::new();
            let found = self.unit_from_bucket(shared, unit, now, &mut pins).await;
            let installed = match found {
                Some(tree) => Some(self.install_unit(unit, Arc::new(tree), now).await),
                None => None,
            };
            self.unpin(&pins);
            if let Some(r) = installed {
                r?;
                tracing::info!(mirror = %self.name(), unit, "materialized from the shared store (another node's, not upstream)");
                self.maybe_compact();
                return Ok(true);
            }
        }
        let src = docs::Source::new(self, fetcher);
        let mut out = match self.adapter.unit(unit, &src, now, true).await {
            Ok(Some(out)) => out,
            Ok(None) => {
                self.negative.insert(unit.to_string(), ());
                return Ok(false);
            }
            Err(e) => return Err(e.to_string()),
        };
        self.admit(&mut out.entries);
        let spooled = self.spool(&mut out.entries)?;
        // Unpinned however it ends: served, or given up.
        let installed = async {
            let cur = self.current();
            let built = catalog::build_tree(
                self.slot,
                now as u32,
                unit,
                std::mem::take(&mut out.entries),
                Some(&*cur),
                false,
            )
            .map_err(|e| e.to_string())?;
            for c in &built.conflicts {
                tracing::warn!(mirror = %self.name(), unit, "conflict: {c}");
            }
            let tree = Arc::new(built.tree);
            self.install_unit(unit, tree.clone(), now).await?;
            Ok::<_, String>(tree)
        }
        .await;
        self.unpin(&spooled);
        let tree = installed?;
        if let Some(shared) = shared {
            let (me, unit) = (self.clone(), unit.to_string());
            tokio::spawn(async move { me.share_unit(&shared, &unit, &tree, now).await });
        }
        self.maybe_compact();
        Ok(true)
    }

    /// Writes `tree`, the segment of `unit`, and swaps it in.
    async fn install_unit(
        self: &Arc<Self>,
        unit: &str,
        tree: Arc<Tree>,
        now: u64,
    ) -> Result<(), String> {
        self.catalog
            .put_tree(TreeKind::Segment, &tree)
            .map_err(|e| format!("cannot write the segment of {unit}: {e}"))?;
        self.pending.lock().unwrap().push((unit.to_string(), tree));
        let _guard = self.swap_lock.lock().await;
        self.install_pending(now).map_err(|e| e.to_string())
    }

    /// Swaps in every pending materialized unit at once. Call with
    /// `swap_lock` held. The root entries follow a moment later
    /// ([`Mirror::refresh_roots`]).
    fn install_pending(self: &Arc<Self>, now: u64) -> Result<(), MirrorError> {
        let cur = self.current();
        let mut batch: Vec<(String, Arc<Tree>)> =
            std::mem::take(&mut *self.pending.lock().unwrap());
        batch.retain(|(u, _)| !cur.has_unit(u));
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        batch.dedup_by(|a, b| a.0 == b.0);
        if batch.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let segs: Vec<Arc<Tree>> = batch.iter().map(|(_, s)| s.clone()).collect();
        let (next, srcs, conflicts) = catalog::extend(&cur, &[], segs);
        for c in &conflicts {
            tracing::warn!(mirror = %self.name(), "conflict: {c}");
        }
        let placed: Vec<Unit> = batch
            .iter()
            .zip(&srcs)
            .map(|((u, s), &src)| Unit {
                name: u,
                seg: s.hash(),
                place: Place::Overlay(src),
            })
            .collect();
        let units = cur.units_table().with(placed);
        let info = Info {
            seq: cur.info().seq + 1,
            materialized: cur.info().materialized + batch.len() as u64,
            created: now,
            ..cur.info().clone()
        };
        let next = next.with(info, units);
        let touched: Vec<&Tree> = batch.iter().map(|(_, s)| &**s).collect();
        self.swap_in(next, &touched, started.elapsed(), Durability::Soon)?;
        self.schedule_persist();
        self.schedule_roots();
        Ok(())
    }

    /// Rebuilds the root entries (PyPI's `simple/index.html` lists every
    /// unit, so building it costs more with each one) at most every
    /// [`ROOTS_EVERY`]: materializations that arrive meanwhile share one.
    fn schedule_roots(self: &Arc<Self>) {
        if self.roots_due.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ROOTS_EVERY).await;
            me.roots_due.store(false, Ordering::SeqCst);
            // Built outside the lock: lookups keep materializing meanwhile.
            let cur = me.current();
            let b = me.clone();
            let built = tokio::task::spawn_blocking(move || {
                let now = crate::timestamp::now() as u32;
                root_segment(&*b.adapter, &b.meta, b.slot, &cur, now, Some(&*b))
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            let result = match built {
                Ok((roots, pinned)) => {
                    let _guard = me.swap_lock.lock().await;
                    let r = me.install_roots(roots);
                    me.unpin(&pinned);
                    r
                }
                Err(e) => Err(MirrorError::Other {
                    mirror: me.name().to_string(),
                    what: e,
                }),
            };
            if let Err(e) = result {
                tracing::warn!(mirror = %me.name(), "cannot rebuild the root entries (the previous ones stay served): {e}");
            }
        });
    }

    /// Swaps in the root entries `roots`. Call with `swap_lock` held.
    fn install_roots(self: &Arc<Self>, roots: Arc<Tree>) -> Result<(), MirrorError> {
        let started = std::time::Instant::now();
        let cur = self.current();
        let old_roots = cur.info().roots;
        let old = old_roots.and_then(|src| cur.segment(src)).cloned();
        if old.as_ref().is_some_and(|o| o.hash() == roots.hash()) {
            return Ok(());
        }
        self.catalog
            .put_tree(TreeKind::Segment, &roots)
            .map_err(|e| MirrorError::Other {
                mirror: self.name().to_string(),
                what: format!("cannot write the root entries: {e}"),
            })?;
        let (next, srcs, _) = catalog::extend(&cur, old_roots.as_slice(), vec![roots.clone()]);
        let info = Info {
            seq: cur.info().seq + 1,
            created: crate::timestamp::now(),
            roots: srcs.first().copied(),
            ..cur.info().clone()
        };
        let next = next.with(info, (**cur.units_table()).clone());
        let mut touched: Vec<&Tree> = vec![&roots];
        touched.extend(old.as_deref());
        let next = self.swap_in(next, &touched, started.elapsed(), Durability::Soon)?;
        self.schedule_persist();
        // Named by no generation from this one on; removed once no root
        // on disk and no generation in memory names it.
        self.retired
            .lock()
            .unwrap()
            .extend(old.map(|t| (t, next.info().seq)));
        Ok(())
    }
}
