//! Fetching from upstream: timeouts, retries with backoff, fallback
//! upstreams, per-host concurrency limits, conditional requests, and one
//! download per artifact however many readers wait for it.
//!
//! Artifacts stream into a [`Pending`](crate::store::Pending) object that
//! hashes while writing; only a verified object is published (invariants 1,
//! 3 and 4). A download runs as its own task: a reader that gives up does not
//! cancel it for the others. Every request is bounded: headers within
//! `fetch_timeout`, no body chunk apart by more than `idle_timeout`, finite
//! attempts, so a reader always gets bytes or an error (invariant 6).

#[cfg(test)]
pub mod fake;
pub mod http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, watch};

pub use futures_util::future::BoxFuture;

use crate::config::FetchSettings;
use crate::digest::Digest;
use crate::stats::Counters;
use crate::store::{Store, StoreError};

/// A response as the fetcher needs it.
pub struct Response {
    pub status: u16,
    /// The URL that answered, after redirects.
    pub url: String,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_length: Option<u64>,
    pub body: Box<dyn Body>,
}

pub trait Body: Send {
    /// The next chunk, `None` at the end.
    fn chunk(&mut self) -> BoxFuture<'_, Result<Option<Bytes>, TransportError>>;
}

/// The HTTP boundary: [`http::Http`] in production, doubles in tests.
pub trait Transport: Send + Sync {
    fn get<'a>(
        &'a self,
        url: &'a str,
        headers: &'a [(&'static str, String)],
    ) -> BoxFuture<'a, Result<Response, TransportError>>;
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("too many redirects: {0}")]
    Redirect(String),
    #[error("{0}")]
    Other(String),
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {error}")]
    Transport { url: String, error: TransportError },
    #[error("{url}: no data for {secs}s (stalled)")]
    Stalled { url: String, secs: u64 },
    #[error("{url}: digest mismatch: metadata promised {expected}, upstream sent {actual}")]
    Digest {
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{url}: size mismatch: metadata promised {expected} bytes, upstream sent {actual}")]
    Size {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("{url}: document larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: not found upstream")]
    NotFound { url: String },
    #[error("waited {secs}s for {url}")]
    WaitTimeout { url: String, secs: u64 },
    #[error("cache: {0}")]
    Store(String),
    #[error("cache: no space left for {url}; evicted older artifacts to make room")]
    NoSpace { url: String },
}

impl FetchError {
    /// Worth another attempt at the same URL.
    fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            FetchError::Transport { error, .. } => !matches!(error, TransportError::Redirect(_)),
            FetchError::Stalled { .. } | FetchError::NoSpace { .. } => true,
            _ => false,
        }
    }

    /// A short label for counters and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Status { .. } => "status",
            FetchError::Transport {
                error: TransportError::Timeout,
                ..
            }
            | FetchError::WaitTimeout { .. } => "timeout",
            FetchError::Transport {
                error: TransportError::Connect(_),
                ..
            } => "connect",
            FetchError::Transport { .. } => "transport",
            FetchError::Stalled { .. } => "stalled",
            FetchError::Digest { .. } | FetchError::Size { .. } => "verify",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::NotFound { .. } => "not_found",
            FetchError::Store(_) | FetchError::NoSpace { .. } => "store",
        }
    }
}

/// An artifact to make present in the store.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// Candidate URLs in order (the metadata's URL, then fallback upstreams).
    pub urls: Vec<String>,
    pub digest: Digest,
    pub size: Option<u64>,
}

/// A metadata document response.
#[derive(Debug)]
pub enum DocResponse {
    Fresh(FetchedDoc),
    /// 304: the validators sent still hold.
    NotModified,
    NotFound {
        url: String,
    },
}

#[derive(Debug)]
pub struct FetchedDoc {
    pub url: String,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub body: Vec<u8>,
}

type Outcome = Option<Result<u64, FetchError>>;

/// Slowest average transfer rate (bytes/s) tolerated once `fetch_timeout` has passed.
pub const MIN_RATE: u64 = 16 * 1024;

pub struct Fetcher {
    transport: Arc<dyn Transport>,
    settings: FetchSettings,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    inflight: Mutex<HashMap<Digest, watch::Receiver<Outcome>>>,
}

impl Fetcher {
    pub fn new(transport: Arc<dyn Transport>, settings: FetchSettings) -> Arc<Fetcher> {
        Arc::new(Fetcher {
            transport,
            settings,
            hosts: Mutex::default(),
            inflight: Mutex::default(),
        })
    }

    pub fn settings(&self) -> &FetchSettings {
        &self.settings
    }

    /// Makes `art` present in `store`, downloading it at most once however
    /// many callers ask concurrently. Returns its size.
    pub async fn ensure(
        self: &Arc<Self>,
        store: &Arc<Store>,
        art: Artifact,
        counters: Arc<Counters>,
    ) -> Result<u64, FetchError> {
        if let Some(size) = store.size_of(&art.digest) {
            return Ok(size);
        }
        let mut rx = {
            let mut inflight = self.inflight.lock().unwrap();
            match inflight.get(&art.digest) {
                Some(rx) => rx.clone(),
                None => {
                    if let Some(size) = store.size_of(&art.digest) {
                        return Ok(size);
                    }
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(art.digest.clone(), rx.clone());
                    let (me, store, art) = (self.clone(), store.clone(), art.clone());
                    tokio::spawn(async move {
                        let result = me.download(&store, &art, &counters).await;
                        me.inflight.lock().unwrap().remove(&art.digest);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        let url = art.urls.first().cloned().unwrap_or_default();
        let waited = rx.wait_for(Option::is_some).await;
        match waited {
            Ok(v) => v
                .clone()
                .unwrap_or(Err(FetchError::WaitTimeout { url, secs: 0 })),
            Err(_) => Err(FetchError::Store(format!(
                "download of {url} ended without a result"
            ))),
        }
    }

    async fn download(
        &self,
        store: &Store,
        art: &Artifact,
        counters: &Counters,
    ) -> Result<u64, FetchError> {
        let mut last = FetchError::NotFound {
            url: art.urls.first().cloned().unwrap_or_default(),
        };
        for url in &art.urls {
            // Every failed attempt is counted, also those a retry recovers from.
            let attempt = |url| async move {
                let r = self.download_once(store, art, url, counters).await;
                if let Err(e) = &r {
                    counters.upstream_error(e.kind());
                }
                r
            };
            match self.with_retries(url, attempt).await {
                Ok(size) => {
                    counters.add_fetch(size);
                    return Ok(size);
                }
                Err(e) => {
                    if matches!(e, FetchError::Digest { .. } | FetchError::Size { .. }) {
                        tracing::warn!("verification failed: {e}");
                    } else {
                        tracing::warn!("download failed: {e}");
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn download_once(
        &self,
        store: &Store,
        art: &Artifact,
        url: &str,
        counters: &Counters,
    ) -> Result<u64, FetchError> {
        let _permit = self.host_permit(url).await;
        let mut resp = self.send(url, &[]).await?;
        match resp.status {
            200 => {}
            404 | 410 => return Err(FetchError::NotFound { url: url.into() }),
            status => {
                return Err(FetchError::Status {
                    url: url.into(),
                    status,
                });
            }
        }
        let store_err = |e: StoreError| match e {
            e if e.is_no_space() => {
                // The disk is full before cache_max_size is: make room for this
                // artifact from the least recently used ones, and try again.
                let need = art.size.unwrap_or(16 << 20).max(1 << 20);
                store.evict_to(store.usage().bytes.saturating_sub(need), Some(&art.digest));
                FetchError::NoSpace { url: url.into() }
            }
            StoreError::Size { expected, actual } => FetchError::Size {
                url: url.into(),
                expected,
                actual,
            },
            StoreError::Digest { expected, actual } => FetchError::Digest {
                url: url.into(),
                expected,
                actual,
            },
            other => FetchError::Store(other.to_string()),
        };
        if let (Some(expected), Some(actual)) = (art.size, resp.content_length) {
            if expected != actual {
                counters.verify_failure();
                return Err(FetchError::Size {
                    url: url.into(),
                    expected,
                    actual,
                });
            }
        }
        let mut pending = store
            .begin(art.digest.clone(), art.size)
            .map_err(store_err)?;
        while let Some(chunk) = self.next_chunk(url, &mut resp).await? {
            if let Err(e) = pending.write(&chunk) {
                if matches!(e, StoreError::Size { .. }) {
                    counters.verify_failure();
                }
                return Err(store_err(e));
            }
        }
        if let Some(actual) = resp.content_length.filter(|&n| n != pending.written()) {
            return Err(FetchError::Transport {
                url: url.into(),
                error: TransportError::Other(format!(
                    "body ended after {} of {actual} bytes",
                    pending.written()
                )),
            });
        }
        pending.commit(store).map_err(|e| {
            if matches!(e, StoreError::Size { .. } | StoreError::Digest { .. }) {
                counters.verify_failure();
            }
            store_err(e)
        })
    }

    /// Fetches a metadata document, with conditional validators when given.
    pub async fn get_doc(
        &self,
        urls: &[String],
        accept: Option<&str>,
        validators: Option<(Option<String>, Option<String>)>,
        limit: u64,
    ) -> Result<DocResponse, FetchError> {
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        if let Some(a) = accept {
            headers.push(("accept", a.to_string()));
        }
        if let Some((etag, lm)) = validators {
            if let Some(e) = etag {
                headers.push(("if-none-match", e));
            }
            if let Some(l) = lm {
                headers.push(("if-modified-since", l));
            }
        }
        let mut last = None;
        for url in urls {
            let got = self
                .with_retries(url, |url| async {
                    let _permit = self.host_permit(url).await;
                    let mut resp = self.send(url, &headers).await?;
                    match resp.status {
                        200 => {}
                        304 => return Ok(DocResponse::NotModified),
                        404 | 410 => {
                            return Ok(DocResponse::NotFound {
                                url: url.to_string(),
                            });
                        }
                        status => {
                            return Err(FetchError::Status {
                                url: url.into(),
                                status,
                            });
                        }
                    }
                    if resp.content_length.is_some_and(|n| n > limit) {
                        return Err(FetchError::TooLarge {
                            url: url.into(),
                            limit,
                        });
                    }
                    let mut body =
                        Vec::with_capacity(resp.content_length.unwrap_or(0).min(limit) as usize);
                    let started = std::time::Instant::now();
                    while let Some(chunk) = self.next_chunk(url, &mut resp).await? {
                        self.check_rate(url, started, body.len() as u64)?;
                        if body.len() as u64 + chunk.len() as u64 > limit {
                            return Err(FetchError::TooLarge {
                                url: url.into(),
                                limit,
                            });
                        }
                        body.extend_from_slice(&chunk);
                    }
                    if let Some(n) = resp.content_length.filter(|&n| n != body.len() as u64) {
                        return Err(FetchError::Transport {
                            url: url.into(),
                            error: TransportError::Other(format!(
                                "body ended after {} of {n} bytes",
                                body.len()
                            )),
                        });
                    }
                    Ok(DocResponse::Fresh(FetchedDoc {
                        url: resp.url,
                        content_type: resp.content_type,
                        etag: resp.etag,
                        last_modified: resp.last_modified,
                        body,
                    }))
                })
                .await;
            match got {
                Ok(DocResponse::NotFound { url }) => last = Some(Ok(DocResponse::NotFound { url })),
                Ok(r) => return Ok(r),
                Err(e) => {
                    tracing::warn!("upstream request failed: {e}");
                    last = Some(Err(e));
                }
            }
        }
        last.unwrap_or_else(|| Err(FetchError::NotFound { url: String::new() }))
    }

    async fn with_retries<'u, T, F, Fut>(
        &self,
        url: &'u str,
        mut attempt: F,
    ) -> Result<T, FetchError>
    where
        F: FnMut(&'u str) -> Fut,
        Fut: std::future::Future<Output = Result<T, FetchError>>,
    {
        let mut n = 0;
        loop {
            n += 1;
            match attempt(url).await {
                Err(e) if e.is_transient() && n < self.settings.attempts => {
                    let backoff = Duration::from_millis(200u64 << (n - 1).min(5));
                    tracing::debug!(attempt = n, ?backoff, "retrying: {e}");
                    tokio::time::sleep(backoff).await;
                }
                other => return other,
            }
        }
    }

    async fn send(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
    ) -> Result<Response, FetchError> {
        let span = tracing::debug_span!("upstream", url);
        let _e = span.enter();
        match tokio::time::timeout(
            self.settings.fetch_timeout,
            self.transport.get(url, headers),
        )
        .await
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(error)) => Err(FetchError::Transport {
                url: url.into(),
                error,
            }),
            Err(_) => Err(FetchError::Transport {
                url: url.into(),
                error: TransportError::Timeout,
            }),
        }
    }

    async fn next_chunk(
        &self,
        url: &str,
        resp: &mut Response,
    ) -> Result<Option<Bytes>, FetchError> {
        match tokio::time::timeout(self.settings.idle_timeout, resp.body.chunk()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(error)) => Err(FetchError::Transport {
                url: url.into(),
                error,
            }),
            Err(_) => Err(FetchError::Stalled {
                url: url.into(),
                secs: self.settings.idle_timeout.as_secs(),
            }),
        }
    }

    /// Past `fetch_timeout`, a body slower than [`MIN_RATE`] on average is
    /// abandoned, so a trickling upstream cannot hold a reader indefinitely.
    fn check_rate(
        &self,
        url: &str,
        started: std::time::Instant,
        bytes: u64,
    ) -> Result<(), FetchError> {
        let elapsed = started.elapsed();
        if elapsed > self.settings.fetch_timeout
            && (bytes as f64) < MIN_RATE as f64 * elapsed.as_secs_f64()
        {
            return Err(FetchError::Stalled {
                url: url.into(),
                secs: elapsed.as_secs(),
            });
        }
        Ok(())
    }

    async fn host_permit(&self, url: &str) -> tokio::sync::OwnedSemaphorePermit {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let sem = self
            .hosts
            .lock()
            .unwrap()
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.max_per_host)))
            .clone();
        sem.acquire_owned()
            .await
            .expect("semaphores are never closed")
    }
}

/// Candidate URLs for `url`: itself, then the same path under each other
/// upstream base when `url` lies under one of them.
pub fn fallback_urls(url: &str, bases: &[reqwest::Url]) -> Vec<String> {
    let mut out = vec![url.to_string()];
    if let Some(rest) = bases.iter().find_map(|b| url.strip_prefix(b.as_str())) {
        for b in bases {
            let alt = format!("{}{rest}", b.as_str());
            if !out.contains(&alt) {
                out.push(alt);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
