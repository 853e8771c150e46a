//! A configuration opened for use: the store, the fetcher and every mirror.
//! Shared by the mount daemon and the one-shot commands.

use std::sync::Arc;

use crate::config::Config;
use crate::fetch::{Fetcher, http::Http};
use crate::mirror::Mirror;
use crate::store::Store;

pub struct App {
    pub config: Config,
    pub store: Arc<Store>,
    pub fetcher: Arc<Fetcher>,
    pub mirrors: Vec<Arc<Mirror>>,
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
    #[error("no mirror named \"{0}\" in the configuration")]
    UnknownMirror(String),
}

impl App {
    pub fn open(config: Config) -> Result<App, AppError> {
        let store =
            Store::open(&config.cache_dir, config.cache_max_size).map_err(|e| AppError::Store {
                path: config.cache_dir.display().to_string(),
                what: e.to_string(),
            })?;
        let names: Vec<&str> = config.mirrors.iter().map(|m| m.name.as_str()).collect();
        let slots = crate::mirror::assign_slots(&config.state_dir, &names).map_err(|e| {
            AppError::State {
                path: config.state_dir.display().to_string(),
                what: e.to_string(),
            }
        })?;
        let mut mirrors = Vec::new();
        for m in &config.mirrors {
            mirrors.push(Arc::new(Mirror::open(
                m.clone(),
                slots[&m.name],
                &config.state_dir,
            )?));
        }
        let transport =
            Http::new(config.fetch.connect_timeout).map_err(|e| AppError::Http(e.to_string()))?;
        let fetcher = Fetcher::new(Arc::new(transport), config.fetch.clone());
        Ok(App {
            store: Arc::new(store),
            fetcher,
            mirrors,
            config,
        })
    }

    /// The mirrors named (all when `names` is empty).
    pub fn select(&self, names: &[String]) -> Result<Vec<Arc<Mirror>>, AppError> {
        if names.is_empty() {
            return Ok(self.mirrors.clone());
        }
        names
            .iter()
            .map(|n| {
                self.mirrors
                    .iter()
                    .find(|m| m.name() == n)
                    .cloned()
                    .ok_or_else(|| AppError::UnknownMirror(n.clone()))
            })
            .collect()
    }
}
