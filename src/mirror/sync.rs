//! A full sync: select units, fetch and parse them concurrently, build the
//! next generation and swap it in, or keep serving the current one if
//! anything fails (invariant 2).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::catalog::Entry;
use crate::fetch::Fetcher;
use crate::layout::{Selection, UnitOutput};

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
    /// Entries dropped as malformed.
    pub rejected: usize,
    pub duration_ms: u64,
}

impl Mirror {
    /// Runs one sync and records its outcome for `status`.
    pub async fn sync(self: &Arc<Self>, fetcher: &Arc<Fetcher>) -> Result<SyncReport, MirrorError> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let started = Instant::now();
        let span = tracing::info_span!("sync", mirror = %self.name());
        let result = tracing::Instrument::instrument(self.sync_inner(fetcher, started), span).await;
        self.unpin_all();
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
                tracing::info!(mirror = %self.name(), generation = r.generation, changed = r.changed, units = r.units, files = r.files, ms = duration_ms, "sync complete");
                SyncRecord {
                    last_sync: now,
                    ok: true,
                    message: if r.changed {
                        format!("generation {}", r.generation)
                    } else {
                        "unchanged".into()
                    },
                    duration_ms,
                    last_success: now,
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
        let selection = self.adapter.select(&src).await.map_err(fail)?;
        let lazy = matches!(selection, Selection::Lazy(_));
        let mut units = match selection {
            Selection::Units(u) => u,
            Selection::Lazy(seeds) => {
                let cur = self.current();
                let mut units: Vec<String> = cur.units().map(str::to_string).collect();
                units.extend(seeds.into_iter().filter(|s| !cur.has_unit(s)));
                units
            }
        };
        let mut outputs = self.fetch_units(&src, &units, false).await.map_err(fail)?;
        let _guard = self.swap_lock.lock().await;
        let cur = self.current();
        if lazy {
            // Units materialized while this sync was fetching.
            let known: HashSet<&String> = units.iter().collect();
            let extra: Vec<String> = cur
                .units()
                .filter(|u| !known.contains(&u.to_string()))
                .map(str::to_string)
                .collect();
            if !extra.is_empty() {
                outputs.extend(self.fetch_units(&src, &extra, true).await.map_err(fail)?);
                units.extend(extra);
            }
        }
        let same_units = units.len() == cur.units().len() && units.iter().all(|u| cur.has_unit(u));
        if src.fresh() == 0 && same_units && !self.adapter.changes_with_time() && cur.number() > 0 {
            self.docs.save();
            return Ok(SyncReport {
                mirror: self.name().to_string(),
                generation: cur.number(),
                changed: false,
                units: units.len(),
                files: cur.files().count() as u64,
                missing: Vec::new(),
                rejected: 0,
                duration_ms: started.elapsed().as_millis() as u64,
            });
        }
        // Something changed: units that answered "unchanged" must now give their entries.
        let stubs: Vec<String> = outputs
            .iter()
            .filter(|(_, o)| o.as_ref().is_some_and(|o| o.unchanged))
            .map(|(u, _)| u.clone())
            .collect();
        if !stubs.is_empty() {
            outputs.retain(|(_, o)| !o.as_ref().is_some_and(|o| o.unchanged));
            outputs.extend(self.fetch_units(&src, &stubs, true).await.map_err(fail)?);
        }
        let mut entries: Vec<Entry> = Vec::new();
        let mut kept = Vec::new();
        let mut missing = Vec::new();
        let mut rejected = 0;
        for (unit, out) in outputs {
            match out {
                Some(out) => {
                    rejected += out.rejected;
                    entries.extend(out.entries);
                    kept.push(unit);
                }
                None => {
                    tracing::warn!(mirror = %self.name(), unit, "not found upstream; skipped");
                    missing.push(unit);
                }
            }
        }
        kept.sort();
        entries.extend(self.adapter.root_entries(&kept));
        let carried = self
            .adapter
            .carry_over(&cur, &entries, crate::timestamp::now());
        entries.extend(carried);
        self.docs.save();
        let n_units = kept.len();
        let g = self.install(entries, kept)?;
        Ok(SyncReport {
            mirror: self.name().to_string(),
            generation: g.number(),
            changed: true,
            units: n_units,
            files: g.files().count() as u64,
            missing,
            rejected,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    async fn fetch_units(
        &self,
        src: &docs::Source<'_>,
        units: &[String],
        full: bool,
    ) -> Result<Vec<(String, Option<UnitOutput>)>, crate::layout::SyncError> {
        let now = crate::timestamp::now();
        let running = crate::progress::board().start(Some(self.name()), "sync", units.len() as u64);
        let task = &running.task;
        let results: Vec<_> = futures_util::stream::iter(units.iter().cloned())
            .map(|u| async move {
                let mut r = self.adapter.unit(&u, src, now, full).await;
                if let Ok(Some(out)) = &mut r {
                    if let Err(e) = self.spool(&mut out.entries) {
                        r = Err(crate::layout::SyncError::BadMetadata {
                            url: u.clone(),
                            what: format!("cannot keep its files: {e}"),
                        });
                    }
                }
                task.step(0, r.is_ok());
                (u, r)
            })
            .buffer_unordered(self.spec.sync_concurrency.max(1))
            .collect()
            .await;
        results
            .into_iter()
            .map(|(u, r)| r.map(|o| (u, o)))
            .collect()
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
