//! Test doubles shared by the layouts' unit tests: upstream documents from a
//! map, and mirror configurations.

use std::collections::HashMap;

use crate::config::MirrorConfig;
use crate::digest::Digest;
use crate::layout::{BoxFuture, Doc, DocError, DocRequest, DocSource, Keep, Previous};

pub use super::configure;

/// Upstream documents by request path, under `base`; everything else is 404.
pub struct Docs {
    pub base: String,
    pub map: HashMap<String, Vec<u8>>,
    /// Every path asked for, in order.
    pub asked: std::sync::Mutex<Vec<String>>,
    /// The files of the generation "being served", by mirror path.
    pub previous: HashMap<String, Previous>,
    /// What the adapter reported retained, by unit: (versions, artifacts).
    pub retained: std::sync::Mutex<HashMap<String, (usize, Vec<Digest>)>>,
    /// Every document answers as unchanged since the copy kept (a 304).
    pub unchanged: bool,
}

impl Docs {
    pub fn new(base: &str) -> Docs {
        Docs {
            base: base.to_string(),
            map: HashMap::new(),
            asked: Default::default(),
            previous: HashMap::new(),
            retained: Default::default(),
            unchanged: false,
        }
    }

    /// Every document answers as unchanged since the last sync.
    pub fn unchanged(mut self) -> Docs {
        self.unchanged = true;
        self
    }

    /// Puts `file` at mirror path `path` in the generation being served.
    pub fn served(mut self, path: &str, file: Previous) -> Docs {
        self.previous.insert(path.to_string(), file);
        self
    }

    pub fn with(mut self, path: &str, body: impl AsRef<[u8]>) -> Docs {
        self.map.insert(path.to_string(), body.as_ref().to_vec());
        self
    }
}

impl DocSource for Docs {
    fn get(&self, req: DocRequest) -> BoxFuture<'_, Result<Doc, DocError>> {
        let url = format!("{}{}", self.base, req.path);
        self.asked.lock().unwrap().push(req.path.clone());
        let r = match self.map.get(&req.path) {
            Some(body) => Ok(Doc {
                url,
                content_type: None,
                content_digest: None,
                body: body.clone(),
                unchanged: self.unchanged,
                stored: None,
                hold: Default::default(),
            }),
            None => Err(DocError::NotFound { url }),
        };
        Box::pin(async move { r })
    }

    fn previous(&self, path: &str) -> Option<Previous> {
        self.previous.get(path).cloned()
    }

    fn previous_files(&self, path: &str) -> Vec<String> {
        names_in(self.previous.keys(), path)
    }

    fn retained(&self, unit: &str, versions: usize, artifacts: Vec<Digest>) {
        let mut r = self.retained.lock().unwrap();
        r.insert(unit.to_string(), (versions, artifacts));
    }

    fn keep(&self, _sha256: &Digest, _size: u64) -> Result<Box<dyn Keep>, String> {
        Err("not in this test".into())
    }
}

/// The names of the files in directory `dir` of a tree holding the files
/// at `paths` ([`DocSource::previous_files`] of a test double), sorted.
pub fn names_in<'a>(paths: impl IntoIterator<Item = &'a String>, dir: &str) -> Vec<String> {
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    let mut names: Vec<String> = paths
        .into_iter()
        .filter_map(|p| p.strip_prefix(&prefix))
        .filter(|rest| !rest.contains('/'))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A `[[mirror]]` table of `layout` over `upstream`, parsed as the config
/// file is; `keys` are further TOML lines (the layout's own keys).
pub fn mirror(layout: &str, upstream: &str, keys: &str) -> MirrorConfig {
    let text = format!(
        "[[mirror]]\nname = \"{layout}\"\nlayout = \"{layout}\"\nupstream = \"{upstream}\"\n{keys}\n"
    );
    crate::config::Config::parse(std::path::Path::new("/test/regfs.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .mirrors
        .remove(0)
}

/// `key = ["a", "b"]` for a filter, or nothing.
pub fn filter(key: &str, filter: Option<&[&str]>) -> String {
    match filter {
        None => String::new(),
        Some(f) => format!("{key} = {:?}\n", f),
    }
}

/// Runs a future to completion on a fresh current-thread runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// The generation a mirror serves after syncs whose entries are `entries`,
/// as [`Docs::served`] takes it: each document as served, each artifact
/// with its URL, size and digest, cached when its file name is in `cached`.
pub fn generation<'e>(
    entries: impl IntoIterator<Item = &'e crate::catalog::Entry>,
    cached: &[&str],
) -> Vec<(String, Previous)> {
    use crate::catalog::Body;
    let mut files = Vec::new();
    for e in entries {
        let file = match &e.body {
            Body::Inline(b) => Previous::Doc(b.clone()),
            Body::Remote { url, size, digest } => Previous::Artifact {
                url: url.clone(),
                size: *size,
                digest: digest.clone(),
                cached: cached.contains(&e.path.file_name()),
            },
            _ => continue,
        };
        files.push((e.path.as_str().to_string(), file));
    }
    files
}
