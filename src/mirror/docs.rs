//! Upstream metadata documents for syncs: conditional requests and the raw
//! bodies kept for them.
//!
//! Each document fetched is kept in the mirror's metadata store with its
//! validators (ETag, Last-Modified). The next sync sends them; a 304 costs
//! one small request and the adapter re-reads the kept body, so an unchanged
//! upstream means no transfer and, when nothing at all changed, no rebuild.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::digest::{Algo, Digest};
use crate::fetch::{DocHold, DocResponse, Fetcher, ranged};
use crate::layout::{BoxFuture, Doc, DocError, DocRequest, DocSource, Keep};

/// How a failed document request reaches the layout.
fn doc_error(e: crate::fetch::FetchError) -> DocError {
    match e {
        crate::fetch::FetchError::NotFound { url } => DocError::NotFound { url },
        crate::fetch::FetchError::Status { url, status } => DocError::Status { url, status },
        e => DocError::Failed(e.to_string()),
    }
}

use super::Mirror;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cached {
    url: String,
    content_type: Option<String>,
    #[serde(default)]
    content_digest: Option<String>,
    etag: Option<String>,
    last_modified: Option<String>,
    sha256: String,
    /// A document upstream appends to, which came with a digest of the
    /// whole that matched: the next fetch asks for its tail only.
    #[serde(default)]
    ranges: bool,
}

/// Validators and kept bodies of the documents last fetched, by request.
pub struct DocCache {
    path: PathBuf,
    map: Mutex<HashMap<String, Cached>>,
    /// How many entries of `map` keep each body: whether one is kept is a
    /// lookup, not a pass over every document (a lazy mirror's garbage
    /// collection asks after each materialization).
    held: Mutex<HashMap<Digest, u32>>,
    /// When the file was last written: lookups that materialize units save
    /// it at most every [`SAVE_EVERY`] (losing the newest validators in a
    /// crash costs one full fetch of those documents, nothing more).
    saved: Mutex<std::time::Instant>,
}

const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl DocCache {
    pub fn load(path: &Path) -> DocCache {
        let map: HashMap<String, Cached> = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut held = HashMap::new();
        for d in map.values().filter_map(Cached::digest) {
            *held.entry(d).or_insert(0) += 1;
        }
        DocCache {
            path: path.to_owned(),
            map: Mutex::new(map),
            held: Mutex::new(held),
            saved: Mutex::new(std::time::Instant::now()),
        }
    }

    /// Saves unless it was saved less than [`SAVE_EVERY`] ago.
    pub fn save_soon(&self) {
        if self.saved.lock().unwrap().elapsed() >= SAVE_EVERY {
            self.save();
        }
    }

    pub fn save(&self) {
        *self.saved.lock().unwrap() = std::time::Instant::now();
        let bytes = serde_json::to_vec(&*self.map.lock().unwrap()).unwrap_or_default();
        if let Err(e) = crate::durable::write_atomic(&self.path, &bytes) {
            tracing::warn!("cannot save {}: {e}", self.path.display());
        }
    }

    /// Digests of the kept bodies (the metadata store keeps these).
    pub fn blobs(&self) -> HashSet<Digest> {
        self.held.lock().unwrap().keys().cloned().collect()
    }

    /// Whether the body with digest `d` is kept for some document.
    pub fn holds(&self, d: &Digest) -> bool {
        self.held.lock().unwrap().contains_key(d)
    }

    fn put(&self, key: String, entry: Cached) {
        let mut map = self.map.lock().unwrap();
        let mut held = self.held.lock().unwrap();
        if let Some(d) = entry.digest() {
            *held.entry(d).or_insert(0) += 1;
        }
        if let Some(old) = map.insert(key, entry) {
            release(&mut held, &old);
        }
    }

    fn forget(&self, key: &str) {
        let mut map = self.map.lock().unwrap();
        if let Some(old) = map.remove(key) {
            release(&mut self.held.lock().unwrap(), &old);
        }
    }
}

impl Cached {
    fn digest(&self) -> Option<Digest> {
        Digest::from_hex(Algo::Sha256, &self.sha256).ok()
    }
}

fn release(held: &mut HashMap<Digest, u32>, old: &Cached) {
    if let Some(d) = old.digest() {
        if let Some(n) = held.get_mut(&d) {
            *n -= 1;
            if *n == 0 {
                held.remove(&d);
            }
        }
    }
}

/// The [`DocSource`] a sync hands to the layout adapter.
pub struct Source<'a> {
    mirror: &'a Mirror,
    fetcher: &'a Arc<Fetcher>,
}

impl<'a> Source<'a> {
    pub fn new(mirror: &'a Mirror, fetcher: &'a Arc<Fetcher>) -> Source<'a> {
        Source { mirror, fetcher }
    }

    fn urls(&self, path: &str) -> Vec<String> {
        if reqwest::Url::parse(path).is_ok() {
            return vec![path.to_string()];
        }
        self.mirror
            .config
            .upstreams
            .iter()
            .filter_map(|b| b.join(path).ok())
            .map(|u| u.to_string())
            .collect()
    }

    /// Fetches `req`; a document upstream only `appended` to is asked for
    /// its tail past the kept copy where that can be verified
    /// (`fetch::ranged`), and a whole one must match any digest upstream
    /// gives of it.
    async fn fetch(&self, req: DocRequest, appended: bool) -> Result<Doc, DocError> {
        let key = format!("{} {}", req.path, req.accept.unwrap_or(""));
        let urls = self.urls(&req.path);
        let cache = &self.mirror.docs;
        let meta = &self.mirror.meta;
        let cached = cache.map.lock().unwrap().get(&key).cloned();
        let kept = cached.and_then(|c| {
            let d = c.digest()?;
            meta.size_of(&d).map(|_| (c, d))
        });
        let validators = kept
            .as_ref()
            .map(|(c, _)| (c.etag.clone(), c.last_modified.clone()));
        let limit = self.mirror.spec.max_document;
        // Only the kept copy's length now: its bytes are read once a tail
        // has come, under the budget's share for the whole.
        let tail_of = kept
            .as_ref()
            .filter(|(c, _)| appended && c.ranges)
            .and_then(|(_, d)| Some((d.clone(), meta.size_of(d)?)))
            .filter(|&(_, n)| n > 0);
        let from = tail_of
            .as_ref()
            .map(|&(_, n)| ranged::start_for(n as usize));
        match self
            .fetcher
            .get_doc_from(&urls, req.accept, validators, limit, from)
            .await
            .map_err(doc_error)?
        {
            DocResponse::NotModified => {
                let gone = || DocError::NotFound {
                    url: urls.first().cloned().unwrap_or_default(),
                };
                let (c, d) = kept.ok_or_else(gone)?;
                // The kept body is parsed like a fetched one: it takes its
                // share of the document budget before it is read.
                let hold = self.fetcher.hold_doc(meta.size_of(&d).unwrap_or(0)).await;
                let body = std::fs::read(meta.object_path(&d)).unwrap_or_default();
                if Digest::sha256_of(&body) != d {
                    // The kept copy is damaged (a crash before it reached the
                    // disk): forget it and fetch the document afresh.
                    tracing::warn!(url = %c.url, "kept copy of an upstream document is damaged; fetching it again");
                    meta.remove(&d);
                    cache.forget(&key);
                    drop(hold);
                    return Box::pin(self.fetch(req, appended)).await;
                }
                Ok(Doc {
                    url: c.url,
                    content_type: c.content_type,
                    content_digest: c.content_digest,
                    body,
                    unchanged: true,
                    stored: Some(d),
                    hold,
                })
            }
            DocResponse::NotFound { url } => {
                cache.forget(&key);
                Err(DocError::NotFound { url })
            }
            DocResponse::Fresh(mut doc) => {
                if let Some(range) = doc.content_range.as_deref() {
                    // The whole is held from here on: it takes the share of its size.
                    let total =
                        ranged::parse_content_range(range).map_or(0, |r| r.total.min(limit));
                    doc.hold = DocHold::default();
                    doc.hold = self.fetcher.hold_doc(total).await;
                    let whole = tail_of.as_ref().and_then(|(d, _)| {
                        let kept = std::fs::read(meta.object_path(d)).ok()?;
                        ranged::assemble(&kept, &doc.body, Some(range), doc.repr_digest.as_deref())
                            .filter(|w| w.len() as u64 <= limit)
                    });
                    let Some(whole) = whole else {
                        // Rewritten rather than appended to, or not verifiable.
                        tracing::info!(url = %doc.url, "the tail upstream sent does not verifiably continue the kept copy; fetching the whole document");
                        if let Some(c) = cache.map.lock().unwrap().get_mut(&key) {
                            c.ranges = false;
                        }
                        drop(doc); // and its share, before the whole takes one
                        return Box::pin(self.fetch(req, appended)).await;
                    };
                    tracing::debug!(url = %doc.url, tail = doc.body.len(), bytes = whole.len(), "appended");
                    doc.body = whole;
                }
                let ranges = match ranged::matches(doc.repr_digest.as_deref(), &doc.body) {
                    Some(false) if appended => {
                        return Err(DocError::Failed(format!(
                            "{}: the document does not match the digest upstream gives of it ({})",
                            crate::redact::redact(&doc.url),
                            doc.repr_digest.unwrap_or_default()
                        )));
                    }
                    m => appended && m == Some(true),
                };
                let d = Digest::sha256_of(&doc.body);
                // Without validators upstream, an unchanged body is still recognized.
                let unchanged = kept.as_ref().is_some_and(|(_, k)| *k == d);
                // Written and made live at once, between garbage collections.
                let _gc = self.mirror.gc_lock.lock().unwrap();
                let stored = meta.put_bytes(&d, &doc.body).is_ok().then(|| d.clone());
                if stored.is_some() {
                    let entry = Cached {
                        url: doc.url.clone(),
                        content_type: doc.content_type.clone(),
                        content_digest: doc.content_digest.clone(),
                        etag: doc.etag.clone(),
                        last_modified: doc.last_modified.clone(),
                        sha256: d.hex(),
                        ranges,
                    };
                    cache.put(key, entry);
                }
                drop(_gc);
                Ok(Doc {
                    url: doc.url,
                    content_type: doc.content_type,
                    content_digest: doc.content_digest,
                    body: doc.body,
                    unchanged,
                    stored,
                    hold: doc.hold,
                })
            }
        }
    }
}

/// A [`Keep`] over a pending metadata-store object.
struct KeepBlob {
    pending: crate::store::Pending,
    store: Arc<crate::store::Store>,
}

impl std::io::Write for KeepBlob {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.write(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Keep for KeepBlob {
    fn commit(self: Box<Self>) -> Result<(), String> {
        let KeepBlob { pending, store } = *self;
        pending
            .commit(&store)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl DocSource for Source<'_> {
    fn get(&self, req: DocRequest) -> BoxFuture<'_, Result<Doc, DocError>> {
        Box::pin(self.fetch(req, false))
    }

    fn get_appended(&self, req: DocRequest) -> BoxFuture<'_, Result<Doc, DocError>> {
        Box::pin(self.fetch(req, true))
    }

    fn previous(&self, path: &str) -> Option<crate::layout::Previous> {
        self.mirror.previous_file(path)
    }

    fn previous_files(&self, dir: &str) -> Vec<String> {
        self.mirror.previous_files(dir)
    }

    fn retained(&self, unit: &str, versions: usize, artifacts: Vec<Digest>) {
        self.mirror.record_retained(unit, versions, artifacts)
    }

    fn keep(&self, sha256: &Digest, size: u64) -> Result<Box<dyn Keep>, String> {
        let store = self.mirror.meta.clone();
        let pending = store
            .begin(sha256.clone(), Some(size))
            .map_err(|e| e.to_string())?;
        Ok(Box::new(KeepBlob { pending, store }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(body: &[u8]) -> Cached {
        Cached {
            url: "http://upstream.test/doc".into(),
            content_type: None,
            content_digest: None,
            etag: None,
            last_modified: None,
            sha256: Digest::sha256_of(body).hex(),
            ranges: false,
        }
    }

    #[test]
    fn a_body_is_held_while_any_document_keeps_it_and_after_a_reload() {
        let dir = std::env::temp_dir().join(format!("regfs-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docs.json");
        let c = DocCache::load(&path);
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        c.put("one".into(), cached(b"a"));
        c.put("two".into(), cached(b"a"));
        c.put("three".into(), cached(b"b"));
        c.put("three".into(), cached(b"a"));
        assert!(c.holds(&a) && !c.holds(&b), "a replaced body is let go");
        c.forget("one");
        assert!(c.holds(&a), "another document still keeps it");
        c.save();
        let back = DocCache::load(&path);
        assert!(back.holds(&a));
        assert_eq!(back.blobs(), HashSet::from([a.clone()]));
        back.forget("two");
        back.forget("three");
        back.forget("missing");
        assert!(!back.holds(&a) && back.blobs().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
