//! One artifact download: its candidate URLs in order, each with retries,
//! streamed into a [`Pending`] object that hashes while it writes.
//!
//! Every download is bounded in size: by the size the metadata promised,
//! else by `max_artifact_size`, and never above `cache_max_size` (an
//! artifact that cannot fit in the cache fails at once, naming its URL).
//! When the cache's disk is full before `cache_max_size` is, room is made
//! once per download and only for the shortfall: at most the artifact's
//! known size, [`UNKNOWN_SIZE_ROOM`] when its size is unknown, and never
//! the whole cache (see [`Store::make_room`]).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::decode::Encoding;
use super::{Artifact, FetchError, Fetcher, Pace, Progress, TransportError, redact};
use crate::stats::Counters;
use crate::store::shared::Read;
use crate::store::{Pending, Room, Store, StoreError};
use tokio::sync::watch;

/// The most a download of unknown size may evict when the disk is full.
pub const UNKNOWN_SIZE_ROOM: u64 = 16 << 20;

/// How one attempt failed.
enum Failure {
    Fetch(FetchError),
    /// The disk is full; `known` is the artifact's size if anything told it.
    NoSpace {
        known: Option<u64>,
        error: String,
    },
}

impl From<FetchError> for Failure {
    fn from(e: FetchError) -> Failure {
        Failure::Fetch(e)
    }
}

impl Fetcher {
    /// The largest artifact this store may take.
    fn size_limit(&self, store: &Store) -> u64 {
        let max = self.settings.max_artifact_size;
        store.max_size().map_or(max, |cache| cache.min(max))
    }

    pub(super) async fn download(
        &self,
        store: &Arc<Store>,
        art: &Artifact,
        counters: &Counters,
        progress: &watch::Sender<Progress>,
    ) -> Result<u64, FetchError> {
        let first = art.urls.first().cloned().unwrap_or_default();
        let limit = self.size_limit(store);
        if let Some(size) = art.size.filter(|&s| s > limit) {
            let e = too_large(&first, size, limit);
            crate::warn_limited!("download refused: {e}");
            counters.upstream_error(e.kind());
            return Err(e);
        }
        if let Some(size) = self.read_shared(store, art, limit, progress).await {
            return Ok(size);
        }
        let mut last = FetchError::NotFound { url: first };
        let started = std::time::Instant::now();
        // Room is made for one artifact once, whatever its attempts.
        let made_room = &AtomicBool::new(false);
        for url in &art.urls {
            // Every failed attempt is counted, also those a retry recovers from.
            let attempt = |url| async move {
                let r = match self
                    .download_once(store, art, url, counters, limit, progress)
                    .await
                {
                    Ok(size) => Ok(size),
                    Err(Failure::Fetch(e)) => Err(e),
                    Err(Failure::NoSpace { known, error }) => {
                        Err(self.no_space(store, art, url, known, error, made_room))
                    }
                };
                if let Err(e) = &r {
                    counters.upstream_error(e.kind());
                }
                r
            };
            match self.with_retries(url, attempt).await {
                Ok((size, key)) => {
                    counters.add_fetch(size, started.elapsed().as_millis() as u64);
                    if let Some(to) = &art.pin {
                        pin(to, art, url, size, key.clone(), counters)?;
                    }
                    if let Some(shared) = self.shared.get() {
                        shared.upload_later(store.clone(), key);
                    }
                    return Ok(size);
                }
                Err(e) => {
                    if art.pinned
                        && matches!(e, FetchError::Digest { .. } | FetchError::Size { .. })
                    {
                        crate::warn_limited!(
                            "verification failed: upstream changed a file pinned on first use (the pin stands: only the first bytes are served): {e}"
                        );
                    } else if matches!(e, FetchError::Digest { .. } | FetchError::Size { .. }) {
                        crate::warn_limited!("verification failed: {e}");
                    } else {
                        crate::warn_limited!("download failed: {e}");
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// The artifact from the shared store, verified and stored locally, if
    /// the bucket has it (and its digest is known before any download).
    async fn read_shared(
        &self,
        store: &Store,
        art: &Artifact,
        limit: u64,
        progress: &watch::Sender<Progress>,
    ) -> Option<u64> {
        let shared = self.shared.get()?;
        let d = art.object_digest()?;
        match shared
            .read_into(store, &d, art.size, limit, |n| tell_size(progress, n))
            .await
        {
            Read::Stored(size) => Some(size),
            Read::Miss | Read::Repaired => None,
        }
    }

    /// The disk filled up during an attempt (its partial file is gone):
    /// makes room once, within the bounds in the module head.
    fn no_space(
        &self,
        store: &Store,
        art: &Artifact,
        url: &str,
        known: Option<u64>,
        error: String,
        made_room: &AtomicBool,
    ) -> FetchError {
        let fail = |what: String, retry: bool| FetchError::NoSpace {
            url: url.into(),
            what,
            retry,
        };
        if made_room.swap(true, Ordering::SeqCst) {
            return fail(
                format!("{error}; giving up (room is made at most once per download)"),
                false,
            );
        }
        let need = match known {
            Some(size) => size,
            None => UNKNOWN_SIZE_ROOM.min(store.usage().bytes / 4),
        };
        match store.make_room(need.saturating_add(1 << 20), Some(&art.digest)) {
            Room::Free => fail(format!("{error}; there is room now, trying again"), true),
            Room::Evicted { objects, bytes } => fail(
                format!(
                    "{error}; evicted {objects} least recently used artifacts ({bytes} bytes) to make room"
                ),
                true,
            ),
            Room::Refused { short, usage } => fail(
                format!(
                    "{error}; making room would take {short} bytes of a {usage}-byte cache, so nothing was evicted (the disk is full of something else, or cache_max_size is larger than the disk)"
                ),
                false,
            ),
        }
    }

    async fn download_once(
        &self,
        store: &Store,
        art: &Artifact,
        url: &str,
        counters: &Counters,
        limit: u64,
        progress: &watch::Sender<Progress>,
    ) -> Result<(u64, crate::digest::Digest), Failure> {
        let _permit = self.host_permit(url, true).await;
        let headers = [("accept-encoding", "identity".to_string())];
        let mut resp = self.send(url, &headers).await?;
        match resp.status {
            200 => {}
            404 | 410 => return Err(FetchError::NotFound { url: url.into() }.into()),
            status => {
                return Err(FetchError::Status {
                    url: url.into(),
                    status,
                }
                .into());
            }
        }
        let encoding = Encoding::of(resp.content_encoding.as_deref());
        // With an encoding, Content-Length counts the encoded bytes.
        let sent_len = resp_len(encoding, resp.content_length);
        let verify = |e: StoreError| -> Failure {
            match e {
                e if e.is_no_space() => Failure::NoSpace {
                    known: art.size.or(sent_len),
                    error: e.to_string(),
                },
                StoreError::Size { expected, actual } => {
                    counters.verify_failure();
                    FetchError::Size {
                        url: url.into(),
                        expected,
                        actual,
                    }
                    .into()
                }
                StoreError::Digest { expected, actual } => {
                    counters.verify_failure();
                    FetchError::Digest {
                        url: url.into(),
                        expected,
                        actual,
                    }
                    .into()
                }
                other => FetchError::Store(other.to_string()).into(),
            }
        };
        if let (Some(expected), Some(actual)) = (art.size, sent_len) {
            if expected != actual {
                counters.verify_failure();
                return Err(FetchError::Size {
                    url: url.into(),
                    expected,
                    actual,
                }
                .into());
            }
        }
        if let Some(n) = sent_len.filter(|&n| n > limit) {
            return Err(too_large(url, n, limit).into());
        }
        if let Some(n) = sent_len {
            tell_size(progress, n);
        }
        let expect = art.digest.clone();
        let raw_size = if encoding.is_some() { None } else { art.size };
        let begin = |expect, size| match art.pin {
            Some(_) => store.begin_pinning(expect, size),
            None => store.begin(expect, size),
        };
        let mut raw = begin(expect.clone(), raw_size).map_err(verify)?;
        let mut decoded = match encoding {
            // With no digest at all nothing tells which of the two is
            // meant: the bytes as sent are pinned.
            Some(_) if expect.algo() == crate::digest::Algo::None => None,
            Some(enc) => Some(enc.writer(Sink {
                pending: begin(expect, art.size).map_err(verify)?,
                limit,
            })),
            None => None,
        };
        let pace = Pace::new(&self.settings);
        while let Some(chunk) = self
            .next_chunk(url, &mut resp, &pace, raw.written())
            .await?
        {
            if raw_size.is_none() && raw.written() + chunk.len() as u64 > limit {
                return Err(too_large(url, raw.written() + chunk.len() as u64, limit).into());
            }
            raw.write_bytes(chunk.clone()).map_err(verify)?;
            if let Some(d) = decoded.as_mut() {
                if d.write_all(&chunk).is_err() {
                    // Not (or not validly) encoded: the bytes as sent stand alone.
                    decoded = None;
                }
            }
        }
        if let Some(actual) = resp.content_length.filter(|&n| n != raw.written()) {
            return Err(FetchError::Transport {
                url: url.into(),
                error: TransportError::Other(format!(
                    "body ended after {} of {actual} bytes",
                    raw.written()
                )),
            }
            .into());
        }
        let Some(decoder) = decoded else {
            return raw.commit_keyed(store).map_err(verify);
        };
        let enc = encoding.map_or("", Encoding::name);
        match raw.commit_keyed(store) {
            Ok(size) => {
                tracing::debug!(url = %redact(url), encoding = enc, "labelled with a Content-Encoding, and the bytes as sent are the artifact");
                Ok(size)
            }
            Err(StoreError::Digest { .. } | StoreError::Size { .. }) => {
                let sink = decoder.finish().map_err(|e| {
                    verify(StoreError::Io {
                        path: store.root().join("tmp"),
                        source: e,
                    })
                })?;
                let size = sink.pending.commit_keyed(store).map_err(verify)?;
                tracing::debug!(url = %redact(url), encoding = enc, "decoded an artifact upstream compressed although asked not to");
                Ok(size)
            }
            Err(e) => Err(verify(e)),
        }
    }
}

/// Records the pin of an artifact's first download (kept under `key`, its
/// SHA-256), durably, before anyone is told it is there. Another first
/// download of it that was pinned meanwhile with other bytes is a
/// verification failure.
fn pin(
    to: &super::PinTo,
    art: &Artifact,
    url: &str,
    size: u64,
    key: crate::digest::Digest,
    counters: &Counters,
) -> Result<(), FetchError> {
    let pin = crate::pins::Pin {
        sha256: key,
        size,
        weak: art.digest.clone(),
    };
    match to.pins.record(&to.path, pin) {
        Ok(()) => {
            tracing::info!(url = %redact(url), path = %to.path, size, "trusted on first use: pinned");
            Ok(())
        }
        Err(crate::pins::PinError::Changed { pinned, actual, .. }) => {
            counters.verify_failure();
            let e = FetchError::Digest {
                url: url.into(),
                expected: pinned,
                actual,
            };
            crate::warn_limited!("verification failed (pinned on first use): {e}");
            Err(e)
        }
        Err(e) => {
            let e = FetchError::Store(format!("cannot record the pin of {}: {e}", redact(url)));
            crate::warn_limited!("{e}");
            Err(e)
        }
    }
}

/// Whoever waits for the size alone (a `stat`) may go on now.
fn tell_size(progress: &watch::Sender<Progress>, n: u64) {
    progress.send_if_modified(|p| {
        let first = matches!(p, Progress::Started);
        if first {
            *p = Progress::Sized(n);
        }
        first
    });
}

/// The size a response's Content-Length tells of the artifact itself.
fn resp_len(encoding: Option<Encoding>, content_length: Option<u64>) -> Option<u64> {
    encoding.is_none().then_some(content_length).flatten()
}

fn too_large(url: &str, size: u64, limit: u64) -> FetchError {
    FetchError::ArtifactTooLarge {
        url: url.into(),
        what: format!(
            "{size} bytes is more than this cache takes for one artifact ({limit} bytes: the smaller of max_artifact_size and cache_max_size)"
        ),
    }
}

/// Where a decoder writes: a second pending object, bounded.
struct Sink {
    pending: Pending,
    limit: u64,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.pending.written() + buf.len() as u64 > self.limit {
            return Err(std::io::Error::other("decoded past the size limit"));
        }
        self.pending.write(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
