//! Merging the overlay into the base, in the background.
//!
//! Every materialized unit joins the overlay, whose per-swap cost grows
//! with its size; past a bound the overlay's units are merged into a new
//! base (one pass over the catalog, off the lookup path) and the overlay
//! starts again from the units that arrived meanwhile. Readers see the same
//! tree before and after, so the swap invalidates nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::catalog::{self, Generation, Info, Place, Tree, Unit, Units};

use super::Mirror;
use super::persist::Durability;
use super::state::TreeKind;

/// Overlay nodes (of units) past which the overlay is merged into the base:
/// an eighth of the base, within [4,096, 131,072]. Each swap copies the
/// overlay's indexes and each merge costs the whole base, so the bound
/// trades one against the other: measured on B8 (PyPI, 20 files a unit),
/// a thirty-second of the base spent 2.5 ms of merging per lookup at 3,000
/// units, an eighth about 0.6 ms plus 0.3 ms of copying at 10,000.
pub(super) fn bound(base_nodes: u32) -> usize {
    (base_nodes as usize / 8).clamp(4096, 131_072)
}

impl Mirror {
    /// Starts a merge if the overlay's units outgrew the bound and none runs.
    pub(super) fn maybe_compact(self: &Arc<Self>) {
        let cur = self.current();
        let roots = cur
            .info()
            .roots
            .and_then(|src| cur.segment(src))
            .map_or(0, |t| t.node_count() as usize);
        if cur.overlay_nodes().saturating_sub(roots) <= bound(cur.base().node_count()) {
            return;
        }
        if self.compacting.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        // Its own thread, niced: lookups come first.
        let spawned = std::thread::Builder::new()
            .name("regfs-merge".into())
            .spawn(move || {
                // SAFETY: nice(2) only changes this thread's priority.
                unsafe { libc::nice(10) };
                if let Err(e) = me.compact() {
                    tracing::warn!(mirror = %me.name(), "merging materialized units into the base failed (they stay served as they are): {e}");
                }
                me.compacting.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            tracing::warn!(mirror = %self.name(), "cannot start merging materialized units: {e}");
            self.compacting.store(false, Ordering::SeqCst);
        }
    }

    /// Merges the current overlay's units into a new base and swaps it in.
    pub(super) fn compact(&self) -> Result<(), String> {
        let started = std::time::Instant::now();
        let cur = self.current();
        let roots = cur.info().roots;
        let segs: Vec<Arc<Tree>> = cur
            .segments()
            .filter(|(src, _)| Some(*src) != roots)
            .map(|(_, s)| s.clone())
            .collect();
        if segs.is_empty() {
            return Ok(());
        }
        let mut sources: Vec<&Tree> = vec![cur.base()];
        sources.extend(segs.iter().map(|s| &**s));
        let merged = catalog::merge(self.slot, crate::timestamp::now() as u32, &sources)
            .map_err(|e| e.to_string())?;
        drop(sources);
        self.catalog
            .put_tree(TreeKind::Base, &merged.tree)
            .map_err(|e| format!("cannot write the base: {e}"))?;
        let base = Arc::new(merged.tree);
        let built = started.elapsed();
        let _guard = self.swap_lock.blocking_lock();
        let now = self.current();
        if !Arc::ptr_eq(now.base(), cur.base()) {
            return Ok(()); // a sync replaced the base meanwhile
        }
        let merged_units: HashSet<&str> = cur
            .units_table()
            .iter()
            .filter(|u| matches!(u.place, Place::Overlay(_)))
            .map(|u| u.name)
            .collect();
        // Units materialized while merging stay in the overlay, then the root entries.
        let rest: Vec<Unit> = now
            .units_table()
            .iter()
            .filter(|u| matches!(u.place, Place::Overlay(_)) && !merged_units.contains(u.name))
            .collect();
        let mut overlay: Vec<Arc<Tree>> = Vec::with_capacity(rest.len() + 1);
        for u in &rest {
            let Place::Overlay(src) = u.place else {
                unreachable!("filtered")
            };
            overlay.push(
                now.segment(src)
                    .ok_or("a unit's segment is missing")?
                    .clone(),
            );
        }
        let root_tree = now.info().roots.and_then(|src| now.segment(src)).cloned();
        overlay.extend(root_tree.clone());
        let (next, srcs, _) = Generation::assemble(self.slot, base, now.info().clone(), overlay);
        let mut at = srcs.iter();
        let mut placed: Vec<Unit> = Vec::with_capacity(now.units().len());
        for u in now.units_table().iter() {
            let place = match u.place {
                Place::Overlay(_) if !merged_units.contains(u.name) => {
                    Place::Overlay(*at.next().expect("one source per unit"))
                }
                _ => Place::Base,
            };
            placed.push(Unit { place, ..u });
        }
        let info = Info {
            seq: now.info().seq + 1,
            roots: root_tree.and(at.next().copied()),
            ..now.info().clone()
        };
        let next = next.with(info, Units::new(placed));
        let next = self
            .swap_in(next, &[], built, Durability::Now)
            .map_err(|e| e.to_string())?;
        self.collect_garbage(&next, &now);
        tracing::info!(mirror = %self.name(), units = merged_units.len(), nodes = next.base().node_count(), ms = started.elapsed().as_millis() as u64, "merged materialized units into the base");
        Ok(())
    }
}
