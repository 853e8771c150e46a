//! Test doubles shared by the layouts' unit tests: upstream documents from a
//! map, and mirror configurations.

use std::collections::HashMap;

use super::{BoxFuture, Doc, DocError, DocRequest, DocSource, Keep, LayoutKind};
use crate::config::{Download, Glob, MirrorConfig, parse_base_url};
use crate::digest::Digest;

/// Upstream documents by request path, under `base`; everything else is 404.
pub struct Docs {
    pub base: String,
    pub map: HashMap<String, Vec<u8>>,
}

impl Docs {
    pub fn new(base: &str) -> Docs {
        Docs {
            base: base.to_string(),
            map: HashMap::new(),
        }
    }

    pub fn with(mut self, path: &str, body: impl AsRef<[u8]>) -> Docs {
        self.map.insert(path.to_string(), body.as_ref().to_vec());
        self
    }
}

impl DocSource for Docs {
    fn get(&self, req: DocRequest) -> BoxFuture<'_, Result<Doc, DocError>> {
        let url = format!("{}{}", self.base, req.path);
        let r = match self.map.get(&req.path) {
            Some(body) => Ok(Doc {
                url,
                content_type: None,
                body: body.clone(),
                unchanged: false,
                stored: None,
            }),
            None => Err(DocError::NotFound { url }),
        };
        Box::pin(async move { r })
    }

    fn keep(&self, _sha256: &Digest, _size: u64) -> Result<Box<dyn Keep>, String> {
        Err("not in this test".into())
    }
}

/// A mirror of `layout` over `upstream` with optional filter patterns.
pub fn mirror(layout: LayoutKind, upstream: &str, filter: Option<&[&str]>) -> MirrorConfig {
    MirrorConfig {
        name: layout.name().into(),
        layout,
        upstreams: vec![parse_base_url(upstream).unwrap()],
        filter: filter.map(|f| f.iter().map(|p| Glob::new(p).unwrap()).collect()),
        cooldown: None,
        sync_interval: std::time::Duration::from_secs(3600),
        download: Download::OnDemand,
        debian: None,
        public_url: None,
        go: None,
    }
}

/// Runs a future to completion on a fresh current-thread runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}
