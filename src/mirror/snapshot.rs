//! Snapshots of a mirror and the publish switch.
//!
//! A snapshot is a generation kept by name: its root (the same format as
//! the catalog's own roots) names trees that garbage collection keeps for
//! as long as the snapshot exists, and the metadata blobs its files are
//! stored under. It is served read-only at `<mount>/<mirror>@<name>/`,
//! under a slot of its own (its inodes differ from the mirror's, so no
//! directory has two parents). Taken `--with-artifacts`, the artifacts it
//! lists that are cached are held from eviction too.
//!
//! Publishing makes a snapshot what `<mirror>/` serves: the served
//! generation is pinned while syncs go on underneath (they update the
//! followed generation, which `--follow` serves again). Both switches are
//! one swap of what is served, with the kernel told what changed as after
//! a sync, and a handle opened before keeps reading what it opened.
//!
//! ```text
//! <mirror>/snapshots/<name>.root   the snapshot's generation (RootFile)
//! <mirror>/snapshots/<name>.json   when it was taken, with artifacts or not
//! <mirror>/published               the published snapshot's name (absent: follow)
//! ```
//!
//! The `.json` is written after the `.root` and removed before it: it is
//! what makes a snapshot exist, so a crash in between leaves none half made.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::{Generation, Invalidations, ROOT_INO, RootFile};
use crate::digest::Digest;
use crate::store::Store;

use super::Mirror;
use super::state::root_of;

/// Why a snapshot command failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "snapshot name \"{0}\" is not valid: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`"
    )]
    BadName(String),
    #[error(
        "mirror {mirror} already has a snapshot named \"{name}\" (delete it first, or choose another name)"
    )]
    Exists { mirror: String, name: String },
    #[error(
        "mirror {mirror} has no snapshot named \"{name}\" (`regfs snapshot list {mirror}` shows them)"
    )]
    Unknown { mirror: String, name: String },
    #[error(
        "snapshot \"{name}\" of mirror {mirror} is published: run `regfs publish {mirror} --follow` (or publish another) before deleting it"
    )]
    Published { mirror: String, name: String },
    #[error("mirror {mirror}: {path}: {source}")]
    Io {
        mirror: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mirror {mirror}: snapshot \"{name}\": {what}")]
    Corrupt {
        mirror: String,
        name: String,
        what: String,
    },
}

/// A snapshot as `snapshot list` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub mirror: String,
    pub name: String,
    /// Unix seconds it was taken.
    pub created: u64,
    /// The generation number it pins.
    pub generation: u64,
    pub with_artifacts: bool,
    /// `<mirror>/` serves it.
    #[serde(default)]
    pub published: bool,
}

/// What `<name>.json` holds.
#[derive(Serialize, Deserialize)]
struct Meta {
    created: u64,
    with_artifacts: bool,
}

/// One snapshot in memory.
pub struct Snapshot {
    pub name: String,
    pub created: u64,
    pub with_artifacts: bool,
    /// The generation, under the mirror's slot (what publishing serves).
    pub generation: Arc<Generation>,
    /// The same, shown under the snapshot's slot (`<mirror>@<name>/`).
    pub view: Arc<Generation>,
}

/// Checks a snapshot name: a single, portable directory-name part.
pub fn check_name(name: &str) -> Result<(), SnapshotError> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then_some(())
        .ok_or_else(|| SnapshotError::BadName(name.to_string()))
}

/// The name of a snapshot's directory at the mount root, and of its slot.
pub fn dir_name(mirror: &str, name: &str) -> String {
    format!("{mirror}@{name}")
}

impl Mirror {
    fn snapshots_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    fn snapshot_io(&self, path: PathBuf) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
        move |source| SnapshotError::Io {
            mirror: self.name().to_string(),
            path,
            source,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir
            .parent()
            .and_then(|p| p.parent())
            .map_or_else(|| self.dir.clone(), |p| p.to_path_buf())
    }

    fn slot_for(&self, name: &str) -> Result<u8, SnapshotError> {
        let key = dir_name(self.name(), name);
        let state = self.state_dir();
        super::assign_slots(&state, &[key.as_str()])
            .map(|s| s[&key])
            .map_err(self.snapshot_io(state.join("slots.json")))
    }

    /// Loads the snapshots on disk and the publish switch (at open).
    pub(super) fn load_snapshots(&self) {
        let dir = self.snapshots_dir();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.strip_suffix(".json")?.to_string();
                check_name(&n).is_ok().then_some(n)
            })
            .collect();
        names.sort();
        let mut snaps = BTreeMap::new();
        for name in names {
            match self.load_snapshot(&name) {
                Ok(s) => {
                    snaps.insert(name, Arc::new(s));
                }
                Err(e) => {
                    tracing::error!(mirror = %self.name(), "{e}; it is not served (delete it with `regfs snapshot delete {} {name}`)", self.name())
                }
            }
        }
        *self.snapshots.write().unwrap() = snaps;
        let published = std::fs::read_to_string(self.dir.join("published"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        if let Some(name) = published {
            match self.snapshot(&name) {
                Some(s) => {
                    tracing::info!(mirror = %self.name(), snapshot = %name, generation = s.generation.number(), "serving the published snapshot");
                    *self.published.write().unwrap() = Some(s);
                }
                None => {
                    tracing::error!(mirror = %self.name(), snapshot = %name, "the published snapshot cannot be loaded: following upstream instead")
                }
            }
        }
    }

    fn load_snapshot(&self, name: &str) -> Result<Snapshot, SnapshotError> {
        let dir = self.snapshots_dir();
        let corrupt = |what: String| SnapshotError::Corrupt {
            mirror: self.name().to_string(),
            name: name.to_string(),
            what,
        };
        let meta_path = dir.join(format!("{name}.json"));
        let meta: Meta = std::fs::read(&meta_path)
            .map_err(self.snapshot_io(meta_path.clone()))
            .and_then(|b| {
                serde_json::from_slice(&b)
                    .map_err(|e| corrupt(format!("{}: {e}", meta_path.display())))
            })?;
        let root_path = dir.join(format!("{name}.root"));
        let bytes = std::fs::read(&root_path).map_err(self.snapshot_io(root_path.clone()))?;
        let root = RootFile::decode(&bytes)
            .map_err(|e| corrupt(format!("{}: {e}", root_path.display())))?;
        let g = self
            .catalog
            .assemble(self.slot, &root)
            .map_err(|e| corrupt(e.to_string()))?;
        self.snapshot_of(name, meta, Arc::new(g))
    }

    fn snapshot_of(
        &self,
        name: &str,
        meta: Meta,
        g: Arc<Generation>,
    ) -> Result<Snapshot, SnapshotError> {
        let slot = self.slot_for(name)?;
        Ok(Snapshot {
            name: name.to_string(),
            created: meta.created,
            with_artifacts: meta.with_artifacts,
            view: Arc::new(g.shown_as(slot)),
            generation: g,
        })
    }

    /// The snapshot named `name`.
    pub fn snapshot(&self, name: &str) -> Option<Arc<Snapshot>> {
        self.snapshots.read().unwrap().get(name).cloned()
    }

    /// The snapshot served under `slot`.
    pub fn snapshot_in_slot(&self, slot: u8) -> Option<Arc<Snapshot>> {
        let snaps = self.snapshots.read().unwrap();
        snaps
            .values()
            .find(|s| s.view.shown_slot() == slot)
            .cloned()
    }

    /// Every snapshot, by name.
    pub fn snapshots(&self) -> Vec<Arc<Snapshot>> {
        self.snapshots.read().unwrap().values().cloned().collect()
    }

    /// The snapshots as `snapshot list` shows them.
    pub fn snapshot_infos(&self) -> Vec<SnapshotInfo> {
        let published = self.published_name();
        self.snapshots()
            .iter()
            .map(|s| SnapshotInfo {
                mirror: self.name().to_string(),
                name: s.name.clone(),
                created: s.created,
                generation: s.generation.number(),
                with_artifacts: s.with_artifacts,
                published: published.as_deref() == Some(s.name.as_str()),
            })
            .collect()
    }

    /// The name of the published snapshot (`None`: following upstream).
    pub fn published_name(&self) -> Option<String> {
        self.published
            .read()
            .unwrap()
            .as_ref()
            .map(|s| s.name.clone())
    }

    /// Whether a snapshot is published (a check, not a copy of its name:
    /// lookups ask it).
    pub fn is_published(&self) -> bool {
        self.published.read().unwrap().is_some()
    }

    /// What `<mirror>/` serves: the published snapshot, else the followed
    /// generation.
    pub fn served(&self) -> Arc<Generation> {
        match &*self.published.read().unwrap() {
            Some(s) => s.generation.clone(),
            None => self.current(),
        }
    }

    /// The generation served before the last change of what is served, if
    /// still held (lookups that raced a swap or a publish resolve there).
    pub fn served_previous(&self) -> Option<Arc<Generation>> {
        if self.is_published() {
            return self.served_before.read().unwrap().clone();
        }
        self.previous()
    }

    /// Generations kept besides the current and previous ones: garbage
    /// collection keeps their trees and metadata blobs.
    pub(super) fn kept_generations(&self) -> Vec<Arc<Generation>> {
        let mut v: Vec<Arc<Generation>> = self
            .snapshots()
            .iter()
            .map(|s| s.generation.clone())
            .collect();
        v.extend(self.served_before.read().unwrap().clone());
        v
    }

    /// Holds from eviction the cached artifacts of every snapshot taken
    /// with artifacts (at open, and after each change).
    pub fn hold_artifacts(&self, store: &Store) {
        let mut held: HashSet<Digest> = HashSet::new();
        for s in self.snapshots().iter().filter(|s| s.with_artifacts) {
            held.extend(self.owned_objects(&s.generation));
        }
        store.hold(&format!("snapshots of {}", self.name()), held);
    }

    /// The store objects `g`'s artifacts are (a weak digest's is its pin).
    pub fn owned_objects(&self, g: &Generation) -> HashSet<Digest> {
        g.files()
            .filter_map(|id| {
                let d = g.remote_digest(id)?;
                self.object_digest(&g.path(id), &d)
            })
            .collect()
    }

    /// Tells the kernel what changed at the mount root (a snapshot came or went).
    fn invalidate_root(&self, name: &str) {
        self.invalidate(Invalidations {
            inodes: vec![ROOT_INO],
            entries: vec![(ROOT_INO, dir_name(self.name(), name))],
        });
    }

    /// Pins the current generation as snapshot `name`.
    pub async fn create_snapshot(
        &self,
        name: &str,
        with_artifacts: bool,
        store: &Store,
    ) -> Result<SnapshotInfo, SnapshotError> {
        check_name(name)?;
        let _swap = self.swap_lock.lock().await;
        if self.snapshot(name).is_some() {
            return Err(SnapshotError::Exists {
                mirror: self.name().to_string(),
                name: name.to_string(),
            });
        }
        // Everything the root names on disk first (invariant 2).
        let g = self.current();
        self.persist_now();
        let dir = self.snapshots_dir();
        std::fs::create_dir_all(&dir).map_err(self.snapshot_io(dir.clone()))?;
        let root_path = dir.join(format!("{name}.root"));
        crate::durable::write_atomic(&root_path, &root_of(&g).encode())
            .map_err(self.snapshot_io(root_path))?;
        let meta = Meta {
            created: crate::timestamp::now(),
            with_artifacts,
        };
        let meta_path = dir.join(format!("{name}.json"));
        crate::durable::write_atomic(&meta_path, &serde_json::to_vec(&meta).unwrap_or_default())
            .map_err(self.snapshot_io(meta_path))?;
        let snap = Arc::new(self.snapshot_of(name, meta, g)?);
        self.snapshots
            .write()
            .unwrap()
            .insert(name.to_string(), snap);
        self.hold_artifacts(store);
        self.invalidate_root(name);
        tracing::info!(mirror = %self.name(), snapshot = name, with_artifacts, "snapshot taken");
        Ok(self
            .snapshot_infos()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_default())
    }

    /// Deletes snapshot `name` (refused while it is published).
    pub async fn delete_snapshot(&self, name: &str, store: &Store) -> Result<(), SnapshotError> {
        check_name(name)?;
        let _swap = self.swap_lock.lock().await;
        let unknown = || SnapshotError::Unknown {
            mirror: self.name().to_string(),
            name: name.to_string(),
        };
        self.snapshot(name).ok_or_else(unknown)?;
        if self.published_name().as_deref() == Some(name) {
            return Err(SnapshotError::Published {
                mirror: self.name().to_string(),
                name: name.to_string(),
            });
        }
        let dir = self.snapshots_dir();
        let meta_path = dir.join(format!("{name}.json"));
        std::fs::remove_file(&meta_path).map_err(self.snapshot_io(meta_path))?;
        let _ = std::fs::remove_file(dir.join(format!("{name}.root")));
        let _ = crate::durable::sync_dir(&dir);
        self.snapshots.write().unwrap().remove(name);
        self.hold_artifacts(store);
        let _ = super::free_slot(&self.state_dir(), &dir_name(self.name(), name));
        self.invalidate_root(name);
        tracing::info!(mirror = %self.name(), snapshot = name, "snapshot deleted");
        Ok(())
    }

    /// Serves snapshot `name` at `<mirror>/` (`None`: follow upstream again).
    pub async fn publish(&self, name: Option<&str>) -> Result<(), SnapshotError> {
        let _swap = self.swap_lock.lock().await;
        let snap = match name {
            Some(n) => {
                check_name(n)?;
                Some(self.snapshot(n).ok_or_else(|| SnapshotError::Unknown {
                    mirror: self.name().to_string(),
                    name: n.to_string(),
                })?)
            }
            None => None,
        };
        let path = self.dir.join("published");
        match &snap {
            Some(s) => crate::durable::write_atomic(&path, s.name.as_bytes()),
            None => std::fs::remove_file(&path).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            }),
        }
        .map_err(self.snapshot_io(path))?;
        let old = self.served();
        *self.served_before.write().unwrap() = Some(old.clone());
        let new = match &snap {
            Some(s) => s.generation.clone(),
            None => {
                // The old served generation stays resolvable for racing lookups.
                *self.previous.write().unwrap() = Some(old.clone());
                self.current()
            }
        };
        *self.published.write().unwrap() = snap;
        self.invalidate(crate::catalog::diff_all(&old, &new));
        match name {
            Some(n) => {
                tracing::info!(mirror = %self.name(), snapshot = n, generation = new.number(), "publishing snapshot")
            }
            None => {
                tracing::info!(mirror = %self.name(), generation = new.number(), "following upstream again")
            }
        }
        Ok(())
    }
}
