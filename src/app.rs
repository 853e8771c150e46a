//! A configuration opened for use: the store, the fetcher and every mirror.
//! Shared by the mount daemon and the one-shot commands.

use std::sync::{Arc, RwLock};

use crate::config::{Config, MirrorConfig};
use crate::fetch::{Fetcher, http::Http};
use crate::mirror::Mirror;
use crate::store::Store;

pub struct App {
    pub config: Config,
    pub store: Arc<Store>,
    /// `cache_dir` is this instance's alone while it runs.
    _cache_lock: crate::lock::DirLock,
    pub fetcher: Arc<Fetcher>,
    /// Replaced as a whole when the daemon reloads its configuration.
    mirrors: RwLock<Vec<Arc<Mirror>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cache_dir {path}: {what}")]
    Store { path: String, what: String },
    #[error("state_dir {path}: {what}")]
    State { path: String, what: String },
    #[error(transparent)]
    Mirror(#[from] crate::mirror::MirrorError),
    #[error("{0}")]
    Http(String),
    #[error("the shared store: {0}")]
    Shared(String),
    #[error("no mirror named \"{0}\" in the configuration")]
    UnknownMirror(String),
}

impl App {
    pub fn open(config: Config) -> Result<App, AppError> {
        let cache_lock =
            crate::lock::DirLock::acquire(&config.cache_dir, "cache_dir").map_err(|what| {
                AppError::Store {
                    path: config.cache_dir.display().to_string(),
                    what,
                }
            })?;
        let store = Store::open(&config.cache_dir, config.cache_max_size)
            .map(|s| s.with_file_digests(crate::layouts::file_digests()))
            .map(Store::checkpointed)
            .map_err(|e| AppError::Store {
                path: config.cache_dir.display().to_string(),
                what: e.to_string(),
            })?;
        for w in &config.warnings {
            tracing::warn!("{}: {w}", config.path.display());
        }
        let transport = Http::new(config.fetch.connect_timeout, config.credentials.clone())
            .map_err(|e| AppError::Http(e.to_string()))?;
        let fetcher = Fetcher::new(Arc::new(transport), config.fetch.clone());
        if let Some(cfg) = &config.shared {
            let shared = crate::store::shared::Shared::open(cfg, config.fetch.fetch_timeout)
                .map_err(AppError::Shared)?;
            tracing::info!(bucket = %shared.describe(), "shared store: reading and filling it");
            fetcher.set_shared(Arc::new(shared));
        }
        let app = App {
            _cache_lock: cache_lock,
            store: Arc::new(store),
            fetcher,
            mirrors: RwLock::default(),
            config,
        };
        let mirrors = app
            .config
            .mirrors
            .iter()
            .map(|m| app.open_mirror(m))
            .collect::<Result<_, _>>()?;
        *app.mirrors.write().unwrap() = mirrors;
        Ok(app)
    }

    /// Opens a mirror's state under this app's `state_dir`, giving it its
    /// stable inode slot.
    pub fn open_mirror(&self, m: &MirrorConfig) -> Result<Arc<Mirror>, AppError> {
        let state = &self.config.state_dir;
        let slots = crate::mirror::assign_slots(state, &[m.name.as_str()]).map_err(|e| {
            AppError::State {
                path: state.display().to_string(),
                what: e.to_string(),
            }
        })?;
        let mirror = Mirror::open(m.clone(), slots[&m.name], state)?;
        mirror.set_artifacts(self.store.clone());
        mirror.set_role(self.config.role);
        Ok(Arc::new(mirror))
    }

    /// The mirrors being served, by name.
    pub fn mirrors(&self) -> Vec<Arc<Mirror>> {
        self.mirrors.read().unwrap().clone()
    }

    pub fn set_mirrors(&self, mirrors: Vec<Arc<Mirror>>) {
        *self.mirrors.write().unwrap() = mirrors;
    }

    /// The mirrors named (all when `names` is empty).
    pub fn select(&self, names: &[String]) -> Result<Vec<Arc<Mirror>>, AppError> {
        let all = self.mirrors();
        if names.is_empty() {
            return Ok(all);
        }
        names
            .iter()
            .map(|n| {
                all.iter()
                    .find(|m| m.name() == n)
                    .cloned()
                    .ok_or_else(|| AppError::UnknownMirror(n.clone()))
            })
            .collect()
    }
}
