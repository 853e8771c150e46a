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

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Artifact, FetchError, Fetcher, Pace, TransportError};
use crate::stats::Counters;
use crate::store::{Room, Store, StoreError};

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
        store: &Store,
        art: &Artifact,
        counters: &Counters,
    ) -> Result<u64, FetchError> {
        let first = art.urls.first().cloned().unwrap_or_default();
        let limit = self.size_limit(store);
        if let Some(size) = art.size.filter(|&s| s > limit) {
            let e = too_large(&first, size, limit);
            tracing::warn!("download refused: {e}");
            counters.upstream_error(e.kind());
            return Err(e);
        }
        let mut last = FetchError::NotFound { url: first };
        // Room is made for one artifact once, whatever its attempts.
        let made_room = &AtomicBool::new(false);
        for url in &art.urls {
            // Every failed attempt is counted, also those a retry recovers from.
            let attempt = |url| async move {
                let r = match self.download_once(store, art, url, counters, limit).await {
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
    ) -> Result<u64, Failure> {
        let _permit = self.host_permit(url, true).await;
        let mut resp = self.send(url, &[]).await?;
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
        let known = art.size.or(resp.content_length);
        let verify = |e: StoreError| -> Failure {
            match e {
                e if e.is_no_space() => Failure::NoSpace {
                    known,
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
        if let (Some(expected), Some(actual)) = (art.size, resp.content_length) {
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
        if let Some(n) = resp.content_length.filter(|&n| n > limit) {
            let e = too_large(url, n, limit);
            tracing::warn!("download refused: {e}");
            return Err(e.into());
        }
        let mut pending = store.begin(art.digest.clone(), art.size).map_err(verify)?;
        let pace = Pace::new(&self.settings);
        while let Some(chunk) = self
            .next_chunk(url, &mut resp, &pace, pending.written())
            .await?
        {
            if art.size.is_none() && pending.written() + chunk.len() as u64 > limit {
                let e = too_large(url, pending.written() + chunk.len() as u64, limit);
                tracing::warn!("download abandoned: {e}");
                return Err(e.into());
            }
            pending.write(&chunk).map_err(verify)?;
        }
        if let Some(actual) = resp.content_length.filter(|&n| n != pending.written()) {
            return Err(FetchError::Transport {
                url: url.into(),
                error: TransportError::Other(format!(
                    "body ended after {} of {actual} bytes",
                    pending.written()
                )),
            }
            .into());
        }
        pending.commit(store).map_err(verify)
    }
}

fn too_large(url: &str, size: u64, limit: u64) -> FetchError {
    FetchError::ArtifactTooLarge {
        url: url.into(),
        what: format!(
            "{size} bytes is more than this cache takes for one artifact ({limit} bytes: the smaller of max_artifact_size and cache_max_size)"
        ),
    }
}
