//! `retain = "additive"` on the mirror's side: what the generation being
//! served holds at a path (read by the layout through
//! [`crate::layout::DocSource::previous`]), the artifact cache that says
//! whether a removed version's bytes are still here, and the count of
//! versions kept listing although upstream removed them.
//!
//! With `download = "immediate"` the retained artifacts are held from
//! eviction (they are listed, and nothing upstream would give them back).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use crate::catalog::Source;
use crate::config::Download;
use crate::digest::Digest;
use crate::layout::Previous;
use crate::store::Store;

use super::Mirror;

/// Per mirror: the artifact cache and what each unit retains.
#[derive(Default)]
pub(super) struct Retained {
    /// The artifact cache (set when the daemon opens the mirror).
    artifacts: OnceLock<Arc<Store>>,
    /// Unit to (versions retained, their artifacts' store objects).
    units: Mutex<HashMap<String, (usize, HashSet<Digest>)>>,
}

impl Retained {
    /// What `status.json` kept (an unreadable digest is dropped: it was
    /// written by this code, and is back at the unit's next refresh).
    pub(super) fn load(saved: HashMap<String, (usize, Vec<String>)>) -> Retained {
        let units = saved
            .into_iter()
            .map(|(u, (n, ds))| {
                let ds = ds
                    .iter()
                    .filter_map(|d| Digest::parse_tagged(d).ok())
                    .collect();
                (u, (n, ds))
            })
            .collect();
        Retained {
            artifacts: OnceLock::new(),
            units: Mutex::new(units),
        }
    }

    /// For `status.json`.
    pub(super) fn save(&self) -> HashMap<String, (usize, Vec<String>)> {
        let units = self.units.lock().unwrap();
        units
            .iter()
            .map(|(u, (n, ds))| (u.clone(), (*n, ds.iter().map(Digest::to_string).collect())))
            .collect()
    }
}

impl Mirror {
    /// Gives the mirror the artifact cache: what its snapshots taken with
    /// artifacts and its retained versions hold from eviction, and how
    /// `retain = "additive"` tells a removed version still cached.
    pub fn set_artifacts(&self, store: Arc<Store>) {
        self.hold_artifacts(&store);
        let _ = self.retained.artifacts.set(store);
        self.hold_retained();
    }

    /// On an immediate mirror, holds every unit's retained artifacts from
    /// eviction (they stay listed while they are cached).
    fn hold_retained(&self) {
        if self.config.download != Download::Immediate {
            return;
        }
        let Some(store) = self.retained.artifacts.get() else {
            return;
        };
        let units = self.retained.units.lock().unwrap();
        let held: HashSet<Digest> = units
            .values()
            .flat_map(|(_, a)| a.iter().cloned())
            .collect();
        drop(units);
        store.hold(&format!("retained by {}", self.name()), held);
    }

    /// How many versions the served documents keep listing although
    /// upstream removed them (`retain = "additive"`).
    pub fn retained_versions(&self) -> u64 {
        let units = self.retained.units.lock().unwrap();
        units.values().map(|(n, _)| *n as u64).sum()
    }

    /// The file at mirror-relative `path` in the generation being served.
    pub(super) fn previous_file(&self, path: &str) -> Option<Previous> {
        let g = self.current();
        let info = g.file(g.resolve(path)?)?;
        match info.source {
            Source::Stored => std::fs::read(self.meta.object_path(&info.digest))
                .ok()
                .filter(|b| Digest::sha256_of(b) == info.digest)
                .map(Previous::Doc),
            Source::Remote { url } => {
                let cached = self
                    .object_digest(path, &info.digest)
                    .zip(self.retained.artifacts.get())
                    .is_some_and(|(d, store)| store.size_of(&d).is_some());
                Some(Previous::Artifact {
                    url,
                    size: info.size,
                    digest: info.digest,
                    cached,
                })
            }
        }
    }

    /// The names of the files in directory `dir` of the generation being served.
    pub(super) fn previous_files(&self, dir: &str) -> Vec<String> {
        let g = self.current();
        let Some(d) = g
            .resolve(dir)
            .filter(|&d| g.kind(d) == crate::catalog::Kind::Dir)
        else {
            return Vec::new();
        };
        g.children(d)
            .filter(|&c| g.kind(c) == crate::catalog::Kind::File)
            .map(|c| g.name(c).as_str().to_string())
            .collect()
    }

    /// Whether an artifact `unit` retained at its last build has left the
    /// cache since: its kept segment lists what is no longer served, so a
    /// unit upstream reports unchanged is rebuilt all the same. The record
    /// is `status.json`'s, so this holds across a restart.
    pub(super) fn retained_evicted(&self, unit: &str) -> bool {
        let artifacts = match self.retained.units.lock().unwrap().get(unit) {
            Some((_, a)) => a.clone(),
            None => return false,
        };
        let store = self.retained.artifacts.get();
        let gone = artifacts
            .iter()
            .find(|d| store.is_none_or(|s| s.size_of(d).is_none()));
        if let Some(d) = gone {
            tracing::info!(mirror = %self.name(), unit, artifact = %d, "retain: a retained artifact was evicted; rebuilding the unit");
        }
        gone.is_some()
    }

    /// Records what `unit` retains now; on an immediate mirror, holds the
    /// retained artifacts of every unit from eviction.
    pub(super) fn record_retained(&self, unit: &str, versions: usize, artifacts: Vec<Digest>) {
        let artifacts: HashSet<Digest> = artifacts
            .into_iter()
            .filter(|d| !d.algo().is_weak())
            .collect();
        let mut units = self.retained.units.lock().unwrap();
        let before = units.get(unit).map(|(_, a)| a.clone()).unwrap_or_default();
        if versions == 0 {
            units.remove(unit);
        } else {
            units.insert(unit.to_string(), (versions, artifacts.clone()));
        }
        drop(units);
        if before != artifacts {
            self.hold_retained();
        }
    }
}
