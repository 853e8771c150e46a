//! A full sync: select units, fetch and parse them concurrently into
//! segments, merge those into the next base and swap it in.
//!
//! Each unit's entries become its segment as soon as the unit is parsed (no
//! sync holds every file's entry at once), and a unit whose upstream
//! documents are unchanged keeps its segment without being parsed. A unit
//! whose refresh fails keeps its previous segment while the others update,
//! and the sync reports it (invariant 10); where the layout's units are
//! signed together (`Capabilities::signed`) any failure fails the sync and
//! the served generation stays (invariant 2).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::catalog::{self, Entry, Generation, Info, Place, Tree, Unit, Units};
use crate::fetch::Fetcher;
use crate::layout::{Selection, SyncError};

use super::cooldown::{self, Adopt, Decision};
use super::persist::Durability;
use super::state::TreeKind;
use super::{Mirror, MirrorError, SyncRecord, docs};

/// What a sync did.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SyncReport {
    pub mirror: String,
    pub generation: u64,
    /// False when upstream had nothing new and no generation was built.
    pub changed: bool,
    pub units: usize,
    pub files: u64,
    /// Units upstream does not have (skipped).
    pub missing: Vec<String>,
    /// Units whose refresh failed: they kept their previous contents.
    #[serde(default)]
    pub failed: Vec<UnitFailure>,
    /// Entries dropped as malformed.
    pub rejected: usize,
    pub duration_ms: u64,
    /// A new upstream generation the `cooldown` holds back (signed layouts).
    #[serde(default)]
    pub held: Option<Held>,
}

/// A new signed upstream generation not adopted yet.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Held {
    /// Unix seconds it was first seen.
    pub first_seen: u64,
    /// Unix seconds from which a sync adopts it.
    pub adopt_at: u64,
}

/// A unit whose refresh failed, and why.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct UnitFailure {
    pub unit: String,
    pub error: String,
}

/// One unit's refresh.
enum Fetched {
    /// A new segment (possibly identical to the previous one), and the
    /// unit's entries when the layout carries entries over.
    Fresh(Arc<Tree>, usize, Vec<Entry>),
    /// Upstream unchanged: the previous segment stays.
    Unchanged,
    Missing,
    Failed(SyncError),
}

impl Mirror {
    /// Runs one sync and records its outcome for `status`.
    pub async fn sync(self: &Arc<Self>, fetcher: &Arc<Fetcher>) -> Result<SyncReport, MirrorError> {
        if self.role() == super::Role::Follower {
            return Err(MirrorError::Other {
                mirror: self.name().to_string(),
                what: "this node is a follower (role = \"follower\"): it serves the generations the syncer publishes and never syncs upstream; sync the syncer instead".into(),
            });
        }
        let _one_at_a_time = self.sync_lock.lock().await;
        let started = Instant::now();
        let span = tracing::info_span!("sync", mirror = %self.name());
        let result = tracing::Instrument::instrument(self.sync_inner(fetcher, started), span).await;
        // A syncer publishes what it serves for its followers after every
        // sync (what the bucket lost since, it sends again).
        let mut unpublished = None;
        if let (Ok(_), super::Role::Syncer, Some(shared)) = (&result, self.role(), fetcher.shared())
        {
            if let Err(e) = self.publish_for_followers(shared).await {
                tracing::warn!(mirror = %self.name(), "followers keep their generation: {e}");
                unpublished = Some(e.to_string());
            }
            if let Ok(report) = &result {
                self.forget_shared_units(shared, &report.missing).await;
            }
        }
        self.unpin_sync();
        self.catalog.settle();
        // A sync's transient memory (pages, entries) is large; give it back.
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe {
            libc::malloc_trim(0);
        }
        let now = crate::timestamp::now();
        let prev = self.sync_record();
        let duration_ms = started.elapsed().as_millis() as u64;
        let rec = match &result {
            Ok(r) => {
                tracing::info!(mirror = %self.name(), generation = r.generation, changed = r.changed, units = r.units, files = r.files, failed = r.failed.len(), ms = duration_ms, "sync complete");
                let mut message = if r.changed {
                    format!("generation {}", r.generation)
                } else {
                    "unchanged".into()
                };
                if let Some(h) = r.held {
                    message.push_str(&format!(
                        "; a new upstream generation (first seen {}) is held by the cooldown, adopted at the first sync after {}",
                        crate::timestamp::format_rfc3339(h.first_seen as i64),
                        crate::timestamp::format_rfc3339(h.adopt_at as i64)
                    ));
                }
                if !r.failed.is_empty() {
                    message.push_str(&format!(
                        "; {} unit(s) kept their previous contents",
                        r.failed.len()
                    ));
                }
                if let Some(e) = &unpublished {
                    message.push_str(&format!("; not published for followers: {e}"));
                }
                SyncRecord {
                    last_sync: now,
                    ok: true,
                    message,
                    duration_ms,
                    last_success: now,
                    failed: r
                        .failed
                        .iter()
                        .map(|f| {
                            crate::redact::redact(&format!("{}: {}", f.unit, f.error)).into_owned()
                        })
                        .collect(),
                }
            }
            Err(e) => {
                tracing::error!(
                    "sync failed, still serving generation {}: {e}",
                    self.current().number()
                );
                SyncRecord {
                    last_sync: now,
                    ok: false,
                    // status.json is world-readable in the mount.
                    message: crate::redact::redact(&e.to_string()).into_owned(),
                    duration_ms,
                    last_success: prev.last_success,
                    failed: Vec::new(),
                }
            }
        };
        self.record_sync(rec);
        result
    }

    async fn sync_inner(
        &self,
        fetcher: &Arc<Fetcher>,
        started: Instant,
    ) -> Result<SyncReport, MirrorError> {
        let src = docs::Source::new(self, fetcher);
        let fail = |e| MirrorError::Sync(e, self.name().to_string());
        let other = |what: String| MirrorError::Other {
            mirror: self.name().to_string(),
            what,
        };
        let signed = self.config.layout.capabilities.signed;
        let selection = self.adapter.select(&src).await.map_err(fail)?;
        let lazy = matches!(selection, Selection::Lazy(_));
        let mut units = match selection {
            Selection::Units(u) => u,
            Selection::Lazy(seeds) => {
                let cur = self.current();
                let mut units: Vec<String> = cur.units().map(str::to_string).collect();
                units.extend(seeds.into_iter().filter(|s| !cur.has_unit(s)));
                units.extend(self.shared_units(fetcher).await);
                units
            }
        };
        units.sort();
        units.dedup();
        // Signed metadata is never rewritten: a cooldown holds a new
        // generation back as a whole (`cooldown.rs`).
        let cooldown = self.config.policy.cooldown.filter(|_| signed);
        let hold = cooldown.map(|_| cooldown::load(&self.dir));
        // While one is held, the documents it came in are already the kept
        // ones (reported unchanged): every unit is parsed to compare.
        let full = hold.as_ref().is_some_and(|h| h.pending.is_some());
        let mut fetched = self.fetch_units(&src, &units, full, signed).await;
        if signed {
            if let Some(i) = fetched
                .iter()
                .position(|(_, f)| matches!(f, Fetched::Failed(_)))
            {
                let Fetched::Failed(e) = fetched.swap_remove(i).1 else {
                    unreachable!("matched")
                };
                return Err(fail(e));
            }
            // Carried-over entries are worked out from every unit's: if
            // anything changed, the unchanged units give theirs too.
            let any_fresh = fetched.iter().any(|(_, f)| matches!(f, Fetched::Fresh(..)));
            let stubs: Vec<String> = fetched
                .iter()
                .filter(|(_, f)| matches!(f, Fetched::Unchanged))
                .map(|(u, _)| u.clone())
                .collect();
            if any_fresh && !stubs.is_empty() {
                fetched.retain(|(_, f)| !matches!(f, Fetched::Unchanged));
                let mut again = self.fetch_units(&src, &stubs, true, signed).await;
                if let Some(i) = again
                    .iter()
                    .position(|(_, f)| matches!(f, Fetched::Failed(_)))
                {
                    let Fetched::Failed(e) = again.swap_remove(i).1 else {
                        unreachable!("matched")
                    };
                    return Err(fail(e));
                }
                fetched.extend(again);
            }
        }
        let (mut held, mut adopted) = (None, None);
        if let (Some(c), Some(state)) = (cooldown, &hold) {
            match self.hold_back(c, state, &mut fetched) {
                Ok(h) => held = Some(h),
                Err(next) => adopted = Some(next),
            }
        }
        let save_adopted = || {
            if let Some(next) = adopted.as_ref().filter(|n| Some(*n) != hold.as_ref()) {
                if let Err(e) = cooldown::save(&self.dir, next) {
                    tracing::warn!(mirror = %self.name(), "cannot record the adopted generation for the cooldown: {e}");
                }
            }
        };
        // Nothing refreshed at all is upstream's trouble, not a unit's.
        if !fetched.is_empty() && fetched.iter().all(|(_, f)| matches!(f, Fetched::Failed(_))) {
            let Some((_, Fetched::Failed(e))) = fetched.into_iter().next() else {
                unreachable!("all failed")
            };
            return Err(fail(e));
        }
        let _guard = self.swap_lock.lock().await;
        let cur = self.current();
        let now = crate::timestamp::now();
        let mut next_units: Vec<(String, Arc<Tree>)> = Vec::new();
        let (mut missing, mut failed) = (Vec::new(), Vec::new());
        let mut rejected = 0;
        let mut changed = false;
        let mut touched: Vec<Arc<Tree>> = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        for (unit, f) in fetched {
            match f {
                Fetched::Fresh(seg, r, e) => {
                    rejected += r;
                    entries.extend(e);
                    let old = cur.units_table().get(&unit).map(|u| u.seg);
                    if old != Some(seg.hash()) {
                        changed = true;
                        touched.push(seg.clone());
                        if old.is_some() {
                            touched.push(self.segment_of(&cur, &unit).map_err(&other)?);
                        }
                    }
                    next_units.push((unit, seg));
                }
                Fetched::Unchanged => match self.segment_of(&cur, &unit) {
                    Ok(seg) => next_units.push((unit, seg)),
                    Err(e) => failed.push(UnitFailure {
                        unit,
                        error: format!("its kept segment cannot be read: {e}"),
                    }),
                },
                Fetched::Missing => {
                    tracing::warn!(mirror = %self.name(), unit, "not found upstream; skipped");
                    if cur.has_unit(&unit) {
                        changed = true;
                        touched.push(self.segment_of(&cur, &unit).map_err(&other)?);
                    }
                    missing.push(unit);
                }
                Fetched::Failed(e) => {
                    let error = e.to_string();
                    if cur.has_unit(&unit) {
                        tracing::warn!(mirror = %self.name(), unit, "refresh failed, keeping its previous contents: {error}");
                        next_units
                            .push((unit.clone(), self.segment_of(&cur, &unit).map_err(&other)?));
                    } else {
                        tracing::warn!(mirror = %self.name(), unit, "refresh failed, not served: {error}");
                    }
                    failed.push(UnitFailure { unit, error });
                }
            }
        }
        if lazy {
            // Units materialized while this sync was fetching keep their segments.
            let known: HashSet<&str> = units.iter().map(String::as_str).collect();
            for u in cur.units_table().iter().filter(|u| !known.contains(u.name)) {
                next_units.push((
                    u.name.to_string(),
                    self.segment_of(&cur, u.name).map_err(&other)?,
                ));
            }
        }
        next_units.sort_by(|a, b| a.0.cmp(&b.0));
        // Units no longer selected (a filter changed) leave the tree.
        for u in cur.units_table().iter() {
            if next_units
                .binary_search_by(|(n, _)| n.as_str().cmp(u.name))
                .is_err()
                && !failed.iter().any(|f| f.unit == u.name)
            {
                changed = true;
                touched.push(self.segment_of(&cur, u.name).map_err(&other)?);
            }
        }
        let report = |g: &Generation, changed| SyncReport {
            mirror: self.name().to_string(),
            generation: g.number(),
            changed,
            units: g.units().len(),
            files: g.files().count() as u64,
            missing: missing.clone(),
            failed: failed.clone(),
            rejected,
            duration_ms: started.elapsed().as_millis() as u64,
            held,
        };
        if !changed && !self.adapter.changes_with_time() && cur.number() > 0 {
            self.docs.save();
            save_adopted();
            return Ok(report(&cur, false));
        }
        let carry = match signed {
            true => {
                let carried = self.adapter.carry_over(&cur, &entries, now);
                drop(entries);
                let b = catalog::build_tree(
                    self.slot,
                    now as u32,
                    ":carried over",
                    carried,
                    Some(&*cur),
                    false,
                )
                .map_err(|e| other(e.to_string()))?;
                self.catalog
                    .put_tree(TreeKind::Segment, &b.tree)
                    .map_err(|e| other(e.to_string()))?;
                Some(Arc::new(b.tree))
            }
            false => None,
        };
        let build_started = Instant::now();
        let mut sources: Vec<&Tree> = next_units.iter().map(|(_, s)| &**s).collect();
        sources.extend(carry.as_deref());
        let merged =
            catalog::merge(self.slot, now as u32, &sources).map_err(|e| other(e.to_string()))?;
        drop(sources);
        for c in &merged.conflicts {
            tracing::warn!(mirror = %self.name(), "conflict: {c}");
        }
        self.catalog
            .put_tree(TreeKind::Base, &merged.tree)
            .map_err(|e| other(format!("cannot write the base: {e}")))?;
        let table = Units::new(next_units.iter().map(|(u, s)| Unit {
            name: u,
            seg: s.hash(),
            place: Place::Base,
        }));
        let info = Info {
            number: cur.number() + 1,
            seq: cur.info().seq + 1,
            created: now,
            roots: None,
            carry: carry.as_ref().map(|c| c.hash()),
            materialized: cur.info().materialized,
        };
        let draft = Generation::of_base(self.slot, merged.tree, info.clone(), table.clone());
        let roots = super::root_segment(
            &*self.adapter,
            &self.meta,
            self.slot,
            &draft,
            now as u32,
            None,
        )
        .map_err(&other)?
        .0;
        self.catalog
            .put_tree(TreeKind::Segment, &roots)
            .map_err(|e| other(e.to_string()))?;
        let (next, srcs, _) = catalog::extend(&draft, &[], vec![roots.clone()]);
        let next = next.with(
            Info {
                roots: srcs.first().copied(),
                ..info
            },
            table,
        );
        touched.push(roots);
        touched.extend(cur.info().roots.and_then(|s| cur.segment(s)).cloned());
        if let Some(c) = carry {
            touched.push(c);
        }
        if let Some(h) = cur.info().carry {
            if let Ok(t) = self.catalog.load_tree(TreeKind::Segment, &h) {
                touched.push(Arc::new(t));
            }
        }
        self.docs.save();
        let refs: Vec<&Tree> = touched.iter().map(|t| &**t).collect();
        let g = self.swap_in(next, &refs, build_started.elapsed(), Durability::Now)?;
        // Recorded once it is served: a crash before leaves it pending.
        save_adopted();
        drop(refs);
        drop(touched);
        drop(next_units);
        self.collect_garbage(&g, &cur);
        Ok(report(&g, true))
    }

    /// Applies the cooldown to a signed sync's units: `Ok` when upstream's
    /// generation is held (its fresh units become unchanged, the state is
    /// saved), `Err` with the state to save once the generation it adopts
    /// is served.
    fn hold_back(
        &self,
        cooldown: u64,
        state: &cooldown::HoldState,
        fetched: &mut [(String, Fetched)],
    ) -> Result<Held, cooldown::HoldState> {
        let cur = self.current();
        let seen = fetched
            .iter()
            .filter(|(_, f)| !matches!(f, Fetched::Missing))
            .filter_map(|(u, _)| Some((u.as_str(), self.adapter.release_seen(u)?)));
        let (print, valid_until) = cooldown::fingerprint(seen);
        let now = crate::timestamp::now();
        let next_sync = self.config.sync_interval.as_secs();
        let serving = cur.number() > 0;
        let (decision, next) = cooldown::decide(
            state,
            serving,
            &print,
            valid_until,
            cooldown,
            next_sync,
            now,
        );
        let Decision::Hold {
            first_seen,
            adopt_at,
        } = decision
        else {
            match decision {
                Decision::Adopt(Adopt::CooledDown) => {
                    tracing::info!(mirror = %self.name(), "cooldown over: adopting the upstream generation held since {}", crate::timestamp::format_rfc3339(state.pending.as_ref().map_or(now, |p| p.first_seen) as i64));
                }
                Decision::Adopt(Adopt::Expiring) => {
                    tracing::warn!(mirror = %self.name(), "adopting the new upstream generation before its cooldown ends: the served one is Valid-Until {}, before the next sync", crate::timestamp::format_rfc3339(state.served_valid_until.unwrap_or(0)));
                }
                _ => {}
            }
            return Err(next);
        };
        if state.pending.as_ref().map(|p| &p.fingerprint) != Some(&print) {
            tracing::info!(mirror = %self.name(), "cooldown: upstream has a new generation; still serving generation {} until {}", cur.number(), crate::timestamp::format_rfc3339(adopt_at as i64));
        }
        if let Err(e) = cooldown::save(&self.dir, &next) {
            // Unsaved, a restart would restart the clock: a longer hold, never a shorter one.
            tracing::warn!(mirror = %self.name(), "cannot record the held generation for the cooldown: {e}");
        }
        for (u, f) in fetched.iter_mut() {
            if matches!(f, Fetched::Fresh(..)) && cur.has_unit(u) {
                *f = Fetched::Unchanged;
            }
        }
        Ok(Held {
            first_seen,
            adopt_at,
        })
    }

    /// The segment of `unit` in `g`: its overlay tree, or read from disk.
    fn segment_of(&self, g: &Generation, unit: &str) -> Result<Arc<Tree>, String> {
        let u = g
            .units_table()
            .get(unit)
            .ok_or_else(|| format!("{unit} is not in generation {}", g.number()))?;
        if let Place::Overlay(src) = u.place {
            if let Some(t) = g.segment(src) {
                return Ok(t.clone());
            }
        }
        self.catalog
            .load_tree(TreeKind::Segment, &u.seg)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }

    /// Refreshes `units` a few at a time, each into its segment. Unless
    /// `full`, a unit upstream reports unchanged keeps its segment unparsed.
    async fn fetch_units(
        &self,
        src: &docs::Source<'_>,
        units: &[String],
        full: bool,
        keep_entries: bool,
    ) -> Vec<(String, Fetched)> {
        let now = crate::timestamp::now();
        let running = crate::progress::board().start(Some(self.name()), "sync", units.len() as u64);
        let task = &running.task;
        futures_util::stream::iter(units.iter().cloned())
            .map(|u| async move {
                let cur = self.current();
                let r = match self.adapter.unit(&u, src, now, full).await {
                    Ok(Some(out))
                        if out.unchanged && cur.has_unit(&u) && !self.retained_evicted(&u) =>
                    {
                        Ok(Fetched::Unchanged)
                    }
                    Ok(Some(out)) if out.unchanged => {
                        // Unchanged upstream, but nothing kept here, or an
                        // artifact it retained has left the cache since (its
                        // kept segment still lists it): parse it.
                        match self.adapter.unit(&u, src, now, true).await {
                            Ok(Some(out)) => self.segment(&u, out, &cur, now, keep_entries),
                            Ok(None) => Ok(Fetched::Missing),
                            Err(e) => Err(e),
                        }
                    }
                    Ok(Some(out)) => self.segment(&u, out, &cur, now, keep_entries),
                    Ok(None) => Ok(Fetched::Missing),
                    Err(e) => Err(e),
                };
                if matches!(r, Ok(Fetched::Missing)) {
                    // Gone upstream (or no longer admitted): it retains nothing.
                    self.record_retained(&u, 0, Vec::new());
                }
                let f = r.unwrap_or_else(Fetched::Failed);
                task.step(0, !matches!(f, Fetched::Failed(_)));
                (u, f)
            })
            .buffer_unordered(self.spec.sync_concurrency.max(1))
            .collect()
            .await
    }

    /// Builds and writes unit `u`'s segment from its entries.
    fn segment(
        &self,
        u: &str,
        mut out: crate::layout::UnitOutput,
        cur: &Generation,
        now: u64,
        keep_entries: bool,
    ) -> Result<Fetched, SyncError> {
        let bad = |what: String| SyncError::BadMetadata {
            url: u.to_string(),
            what,
        };
        out.rejected += self.admit(&mut out.entries);
        let spooled = self
            .spool(&mut out.entries)
            .map_err(|e| bad(format!("cannot keep its files: {e}")))?;
        self.pin_for_sync(spooled);
        let kept = if keep_entries {
            out.entries.clone()
        } else {
            Vec::new()
        };
        let built = catalog::build_tree(self.slot, now as u32, u, out.entries, Some(cur), false)
            .map_err(|e| bad(e.to_string()))?;
        for c in &built.conflicts {
            tracing::warn!(mirror = %self.name(), unit = u, "conflict: {c}");
        }
        self.catalog
            .put_tree(TreeKind::Segment, &built.tree)
            .map_err(|e| bad(format!("cannot write its segment: {e}")))?;
        Ok(Fetched::Fresh(Arc::new(built.tree), out.rejected, kept))
    }
}

/// Adds up to ±10% jitter to a sync interval so mirrors do not sync in lockstep.
pub fn jittered(interval: Duration, seed: u64) -> Duration {
    let tenth = interval.as_millis() as u64 / 10;
    if tenth == 0 {
        return interval;
    }
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    let offset = x % (2 * tenth + 1);
    Duration::from_millis(interval.as_millis() as u64 - tenth + offset)
}
