//! Fetching from upstream: timeouts, retries with backoff, fallback
//! upstreams, per-host concurrency limits, conditional requests, and one
//! download per artifact however many readers wait for it.
//!
//! Artifacts stream into a [`Pending`](crate::store::Pending) object that
//! hashes while writing; only a verified object is published (invariants 1,
//! 3 and 4). A download runs as its own task: a reader that gives up does not
//! cancel it for the others. Every request is bounded: headers within
//! `fetch_timeout`, no body chunk apart by more than `idle_timeout`, past
//! `fetch_timeout` an average of at least [`MIN_RATE`], at most
//! `max_artifact_size` bytes (or a document's limit), finite attempts, so a
//! reader always gets bytes or an error in bounded time (invariant 6).
//!
//! Each upstream host has `max_connections_per_host` permits. Artifact
//! downloads may hold all but a reserve of them ([`reserve`]), so metadata
//! requests (syncs, lazy lookups) are never queued behind slow downloads.
//!
//! Requests ask for `Accept-Encoding: identity`. An upstream that compresses
//! anyway is handled: a document is decoded before it is parsed (unless it
//! is itself a `.gz`, which some servers label so), and an artifact is kept
//! if either the bytes as sent or their decoding match its digest.

mod bearer;
mod decode;
mod document;
mod download;
#[cfg(test)]
pub mod fake;
pub mod http;
pub mod ranged;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

pub use crate::layout::DocHold;
pub use document::{DOC_BUDGET, SMALL_DOC};
pub use futures_util::future::BoxFuture;

use crate::config::FetchSettings;
use crate::digest::Digest;
use crate::stats::Counters;
use crate::store::Store;
use crate::store::shared::Shared;

/// A response as the fetcher needs it.
pub struct Response {
    pub status: u16,
    /// The URL that answered, after redirects.
    pub url: String,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_length: Option<u64>,
    /// `Content-Encoding`, if upstream sent one.
    pub content_encoding: Option<String>,
    /// `WWW-Authenticate`, the challenge of a 401.
    pub www_authenticate: Option<String>,
    /// `Docker-Content-Digest`: the digest content-addressed registries
    /// state for the body.
    pub content_digest: Option<String>,
    /// `Content-Range` of a 206.
    pub content_range: Option<String>,
    /// `Repr-Digest` (or the older `Digest`): the whole representation's digests.
    pub repr_digest: Option<String>,
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
    #[error("{}: HTTP {status}", redact(url))]
    Status { url: String, status: u16 },
    #[error("{}: {error}", redact(url))]
    Transport { url: String, error: TransportError },
    #[error("{}: no data for {secs}s (stalled)", redact(url))]
    Stalled { url: String, secs: u64 },
    #[error(
        "{}: too slow: {bytes} bytes in {secs}s, under the {} KiB/s floor",
        redact(url),
        MIN_RATE / 1024
    )]
    TooSlow { url: String, bytes: u64, secs: u64 },
    #[error(
        "{}: digest mismatch: metadata promised {expected}, upstream sent {actual}",
        redact(url)
    )]
    Digest {
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "{}: size mismatch: metadata promised {expected} bytes, upstream sent {actual}",
        redact(url)
    )]
    Size {
        url: String,
        expected: u64,
        actual: u64,
    },
    /// The store holds a verified object of the entry's digest, and its
    /// size is not the one the entry's metadata promises: the metadata lies.
    #[error(
        "{}: size mismatch: metadata promises {promised} bytes, the verified object of its digest has {object}",
        redact(url)
    )]
    Contradicted {
        url: String,
        promised: u64,
        object: u64,
    },
    #[error("{}: document larger than {limit} bytes", redact(url))]
    TooLarge { url: String, limit: u64 },
    #[error("{}: {what}", redact(url))]
    ArtifactTooLarge { url: String, what: String },
    #[error(
        "{}: cannot decode its Content-Encoding {encoding}: {error}",
        redact(url)
    )]
    Decode {
        url: String,
        encoding: String,
        error: String,
    },
    #[error("{}: not found upstream", redact(url))]
    NotFound { url: String },
    /// A weak digest (MD5, or none) on a mirror without `trust_on_first_use`.
    #[error(
        "{}: metadata gives no digest regfs trusts ({algo}), and this mirror does not set trust_on_first_use",
        redact(url)
    )]
    Untrusted { url: String, algo: &'static str },
    #[error("waited {secs}s for {}", redact(url))]
    WaitTimeout { url: String, secs: u64 },
    #[error("cache: {}", redact(.0))]
    Store(String),
    #[error("cache disk full while storing {}: {what}", redact(url))]
    NoSpace {
        url: String,
        what: String,
        /// Room was made (or is there now): another attempt may fit.
        retry: bool,
    },
}

impl FetchError {
    /// Worth another attempt at the same URL.
    fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            FetchError::Transport { error, .. } => !matches!(error, TransportError::Redirect(_)),
            FetchError::Stalled { .. } => true,
            FetchError::NoSpace { retry, .. } => *retry,
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
            FetchError::Stalled { .. } | FetchError::TooSlow { .. } => "stalled",
            FetchError::Digest { .. }
            | FetchError::Size { .. }
            | FetchError::Contradicted { .. }
            | FetchError::Decode { .. } => "verify",
            FetchError::TooLarge { .. } | FetchError::ArtifactTooLarge { .. } => "too_large",
            FetchError::NotFound { .. } => "not_found",
            FetchError::Untrusted { .. } => "untrusted",
            FetchError::Store(_) | FetchError::NoSpace { .. } => "store",
        }
    }
}

/// An artifact to make present in the store.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// Candidate URLs in order (the metadata's URL, then fallback upstreams).
    pub urls: Vec<String>,
    /// The digest metadata gives; a weak one ([`Algo::is_weak`]) only with
    /// `pin` set.
    ///
    /// [`Algo::is_weak`]: crate::digest::Algo::is_weak
    pub digest: Digest,
    pub size: Option<u64>,
    /// Trust on first use: the first download is pinned here by its
    /// SHA-256 and kept in the store under it ([`crate::pins`]).
    pub pin: Option<PinTo>,
    /// `digest` and `size` are a pin's, not metadata's (for the log).
    pub pinned: bool,
}

/// Where the first download of an artifact is pinned.
#[derive(Clone, Debug)]
pub struct PinTo {
    pub pins: Arc<crate::pins::Pins>,
    /// The artifact's path in its mirror.
    pub path: String,
}

impl Artifact {
    /// The artifact as its pin says, once it is pinned: its SHA-256 and
    /// size, the only bytes to serve.
    fn pinned_now(self) -> Artifact {
        match self.pin.as_ref().and_then(|to| to.pins.get(&to.path)) {
            Some(p) => Artifact {
                digest: p.sha256,
                size: Some(p.size),
                pin: None,
                pinned: true,
                urls: self.urls,
            },
            None => self,
        }
    }

    /// What a download in flight is known by: its digest, or for a first
    /// download its mirror's pins and its path.
    fn key(&self) -> Digest {
        match &self.pin {
            Some(to) => to.pins.key(&to.path),
            None => self.digest.clone(),
        }
    }

    /// The digest the store keeps this artifact under, once it is there.
    pub fn object_digest(&self) -> Option<Digest> {
        match &self.pin {
            Some(to) => to.pins.get(&to.path).map(|p| p.sha256),
            None => Some(self.digest.clone()),
        }
    }
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
    pub content_digest: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Set when this is the tail a Range request asked for (a 206; see
    /// [`ranged`]).
    pub content_range: Option<String>,
    /// `Repr-Digest` (or `Digest`): digests of the whole representation.
    pub repr_digest: Option<String>,
    pub body: Vec<u8>,
    /// Its share of [`DOC_BUDGET`], held until it is dropped.
    pub hold: DocHold,
}

/// Where a download stands, for everyone waiting on it.
#[derive(Clone, Debug)]
enum Progress {
    Started,
    /// Upstream's response headers gave the artifact's length: either the
    /// verified artifact has exactly this size, or the download fails.
    Sized(u64),
    Done(Result<u64, FetchError>),
}

/// A download in flight: the size its artifact promised, and its outcome.
type InFlight = (Option<u64>, watch::Receiver<Progress>);

/// Slowest average transfer rate (bytes/s) tolerated once `fetch_timeout` has passed.
pub const MIN_RATE: u64 = 16 * 1024;

/// Of `max_per_host` permits, how many artifact downloads leave to metadata
/// requests: a quarter, at least one when there are two or more.
pub fn reserve(max_per_host: usize) -> usize {
    if max_per_host < 2 {
        0
    } else {
        (max_per_host / 4).max(1)
    }
}

pub use crate::redact::redact;

/// One upstream host's permits: every request holds one of `all`; artifact
/// downloads also one of `artifacts`, of which there are [`reserve`] fewer.
struct Host {
    all: Arc<Semaphore>,
    artifacts: Arc<Semaphore>,
}

/// Permits held for one request.
struct Permit {
    _all: OwnedSemaphorePermit,
    _artifact: Option<OwnedSemaphorePermit>,
}

/// The bounds on one body in transfer: no gap over `idle_timeout`, and once
/// `fetch_timeout` has passed an average of at least [`MIN_RATE`].
struct Pace {
    started: Instant,
    fetch_timeout: Duration,
    idle_timeout: Duration,
}

impl Pace {
    fn new(settings: &FetchSettings) -> Pace {
        Pace {
            started: Instant::now(),
            fetch_timeout: settings.fetch_timeout,
            idle_timeout: settings.idle_timeout,
        }
    }

    /// How long the next chunk may take after `bytes`, and whether the rate
    /// floor (rather than the idle bound) sets it. `None`: too slow already.
    fn allowance(&self, bytes: u64) -> Option<(Duration, bool)> {
        let floor = self
            .fetch_timeout
            .max(Duration::from_secs_f64(bytes as f64 / MIN_RATE as f64));
        let left = floor.checked_sub(self.started.elapsed())?;
        if left.is_zero() {
            return None;
        }
        Some(if left < self.idle_timeout {
            (left, true)
        } else {
            (self.idle_timeout, false)
        })
    }
}

pub struct Fetcher {
    transport: Arc<dyn Transport>,
    settings: FetchSettings,
    hosts: Mutex<HashMap<String, Host>>,
    /// Downloads in flight by digest, with the size their artifact promised.
    inflight: Mutex<HashMap<Digest, InFlight>>,
    tokens: bearer::Tokens,
    /// [`DOC_BUDGET`] in KiB: what documents fetched or being parsed hold.
    doc_budget: Arc<Semaphore>,
    doc_budget_kib: usize,
    /// The shared store in a bucket, if configured: read before upstream,
    /// filled after it ([`crate::store::shared`]).
    shared: std::sync::OnceLock<Arc<Shared>>,
}

impl Fetcher {
    pub fn new(transport: Arc<dyn Transport>, settings: FetchSettings) -> Arc<Fetcher> {
        Fetcher::with_doc_budget(transport, settings, DOC_BUDGET)
    }

    /// A fetcher whose documents may hold `budget` bytes at once (see
    /// [`DOC_BUDGET`], the default).
    pub fn with_doc_budget(
        transport: Arc<dyn Transport>,
        settings: FetchSettings,
        budget: u64,
    ) -> Arc<Fetcher> {
        let kib = (budget >> 10).max(1) as usize;
        Arc::new(Fetcher {
            transport,
            settings,
            hosts: Mutex::default(),
            inflight: Mutex::default(),
            tokens: bearer::Tokens::default(),
            doc_budget: Arc::new(Semaphore::new(kib)),
            doc_budget_kib: kib,
            shared: std::sync::OnceLock::new(),
        })
    }

    /// Reads artifacts from `shared` before upstream, and uploads what
    /// upstream sent to it (once per fetcher).
    pub fn set_shared(&self, shared: Arc<Shared>) {
        let _ = self.shared.set(shared);
    }

    /// The shared store, if there is one.
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.get()
    }

    pub fn settings(&self) -> &FetchSettings {
        &self.settings
    }

    /// Makes `art` present in `store`, downloading it at most once however
    /// many callers ask concurrently. Returns its size, which is the size
    /// `art` promises if it promises one: an object of its digest stored
    /// for another entry (or another mirror) with another size means this
    /// entry's metadata lies, a verification failure.
    pub async fn ensure(
        self: &Arc<Self>,
        store: &Arc<Store>,
        art: Artifact,
        counters: Arc<Counters>,
    ) -> Result<u64, FetchError> {
        self.wait(store, art, counters, false).await
    }

    /// The artifact's size, as soon as it is known for sure: at once if it
    /// is cached, when upstream's response headers give its length (the
    /// download goes on; the verified artifact has exactly that size, or
    /// the download fails and no byte of it is served), else when the
    /// download is done. A `stat` of a file whose metadata gives no size
    /// waits this long, not for the whole body.
    pub async fn ensure_size(
        self: &Arc<Self>,
        store: &Arc<Store>,
        art: Artifact,
        counters: Arc<Counters>,
    ) -> Result<u64, FetchError> {
        self.wait(store, art, counters, true).await
    }

    async fn wait(
        self: &Arc<Self>,
        store: &Arc<Store>,
        art: Artifact,
        counters: Arc<Counters>,
        sized: bool,
    ) -> Result<u64, FetchError> {
        let url = art.urls.first().cloned().unwrap_or_default();
        let mut art = art;
        // A download in flight for the same digest but another promised
        // size is not this entry's (it fails on size, or stores an object
        // this entry's promise contradicts): wait for it, then look again.
        for _ in 0..3 {
            art = art.pinned_now();
            if let Some(size) = cached_size(store, &url, &art.digest, art.size, &counters)? {
                return Ok(size);
            }
            let (mut rx, ours) = {
                let mut inflight = self.inflight.lock().unwrap();
                // Pinned since the look above (the pin is written before
                // its download leaves `inflight`).
                art = art.pinned_now();
                match inflight.get(&art.key()) {
                    Some((promised, rx)) => (rx.clone(), *promised == art.size),
                    None => {
                        if let Some(size) =
                            cached_size(store, &url, &art.digest, art.size, &counters)?
                        {
                            return Ok(size);
                        }
                        let (tx, rx) = watch::channel(Progress::Started);
                        inflight.insert(art.key(), (art.size, rx.clone()));
                        let (me, store, art) = (self.clone(), store.clone(), art.clone());
                        let counters = counters.clone();
                        tokio::spawn(async move {
                            let result = me.download(&store, &art, &counters, &tx).await;
                            // A length told early must be the verified one.
                            let result = match (result, &*tx.borrow()) {
                                (Ok(actual), Progress::Sized(told)) if actual != *told => {
                                    counters.verify_failure();
                                    Err(FetchError::Size {
                                        url: art.urls.first().cloned().unwrap_or_default(),
                                        expected: *told,
                                        actual,
                                    })
                                }
                                (r, _) => r,
                            };
                            me.inflight.lock().unwrap().remove(&art.key());
                            let _ = tx.send(Progress::Done(result));
                        });
                        (rx, true)
                    }
                }
            };
            let waited = rx
                .wait_for(|p| match p {
                    Progress::Started => false,
                    Progress::Sized(_) => sized && ours,
                    Progress::Done(_) => true,
                })
                .await;
            let result = match waited.as_deref() {
                Ok(Progress::Sized(n)) => Ok(*n),
                Ok(Progress::Done(r)) => r.clone(),
                Ok(Progress::Started) | Err(_) => Err(FetchError::Store(format!(
                    "download of {} ended without a result",
                    redact(&url)
                ))),
            };
            if ours {
                return result;
            }
        }
        cached_size(store, &url, &art.digest, art.size, &counters)?.ok_or_else(|| {
            FetchError::Store(format!(
                "{}: downloads promising other sizes kept replacing this one",
                redact(&url)
            ))
        })
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

    /// One request, answering a registry's bearer challenge (`bearer`).
    async fn send(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
    ) -> Result<Response, FetchError> {
        self.send_authorized(url, headers).await
    }

    async fn send_once(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
    ) -> Result<Response, FetchError> {
        // Instrumented, not entered: a guard held across an await would
        // leave the span entered on whatever thread polls next.
        let span = tracing::debug_span!("upstream", url);
        let get = tokio::time::timeout(
            self.settings.fetch_timeout,
            self.transport.get(url, headers),
        );
        match tracing::Instrument::instrument(get, span).await {
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

    /// The next chunk of `resp`'s body, within the [`Pace`] bounds.
    async fn next_chunk(
        &self,
        url: &str,
        resp: &mut Response,
        pace: &Pace,
        bytes: u64,
    ) -> Result<Option<Bytes>, FetchError> {
        let too_slow = || FetchError::TooSlow {
            url: url.into(),
            bytes,
            secs: pace.started.elapsed().as_secs(),
        };
        let (wait, floor) = pace.allowance(bytes).ok_or_else(too_slow)?;
        match tokio::time::timeout(wait, resp.body.chunk()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(error)) => Err(FetchError::Transport {
                url: url.into(),
                error,
            }),
            Err(_) if floor => Err(too_slow()),
            Err(_) => Err(FetchError::Stalled {
                url: url.into(),
                secs: self.settings.idle_timeout.as_secs(),
            }),
        }
    }

    /// A permit for a request to `url`'s host; artifact downloads leave
    /// the [`reserve`] to metadata requests.
    async fn host_permit(&self, url: &str, artifact: bool) -> Permit {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let (all, artifacts) = {
            let mut hosts = self.hosts.lock().unwrap();
            let max = self.settings.max_per_host;
            let h = hosts.entry(host).or_insert_with(|| Host {
                all: Arc::new(Semaphore::new(max)),
                artifacts: Arc::new(Semaphore::new(max - reserve(max))),
            });
            (h.all.clone(), h.artifacts.clone())
        };
        let closed = "semaphores are never closed";
        // The artifact permit first: a download waiting for one holds no
        // permit a document could use.
        let artifact = match artifact {
            true => Some(artifacts.acquire_owned().await.expect(closed)),
            false => None,
        };
        Permit {
            _all: all.acquire_owned().await.expect(closed),
            _artifact: artifact,
        }
    }
}

/// The size of `digest`'s object in `store`, if it is there. When the
/// entry at `url` promised another size, its metadata contradicts the
/// verified object: counted as a verification failure, logged (WARN, the
/// URL and both sizes), and an error, never the object.
pub fn cached_size(
    store: &Store,
    url: &str,
    digest: &Digest,
    promised: Option<u64>,
    counters: &Counters,
) -> Result<Option<u64>, FetchError> {
    let Some(object) = store.size_of(digest) else {
        return Ok(None);
    };
    match promised {
        Some(promised) if promised != object => {
            let e = FetchError::Contradicted {
                url: url.to_string(),
                promised,
                object,
            };
            counters.verify_failure();
            crate::warn_limited!("verification failed: {e}");
            Err(e)
        }
        _ => Ok(Some(object)),
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
