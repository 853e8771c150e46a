//! What the adapter knows of upstream's `/versions` between calls: the copy
//! the last sync fetched (the one the mirror serves, or filters) and the
//! newest copy seen (the one each `/info` file is checked against).
//!
//! A sync fetches `/versions` first (in `select`), then each `/info`; a
//! lazy lookup fetches one `/info` later. A gem published in between has
//! an `/info` whose MD5 is newer than the `/versions` at hand, so a
//! mismatch first fetches `/versions` again (only its new tail, where
//! upstream answers Range requests) and checks once more; concurrent
//! mismatches share that one request. Only an `/info` that disagrees with
//! upstream's newest `/versions` fails.

use std::sync::{Arc, Mutex};

use super::index::Versions;
use crate::catalog::Body;
use crate::layout::{DocRequest, DocSource, SyncError};

/// Where upstream's `/versions` lives, relative to its base.
pub const VERSIONS: &str = "versions";

/// One parse of upstream's `/versions`.
pub struct Snapshot {
    /// Increases with every fetch.
    pub seq: u64,
    pub url: String,
    pub versions: Versions,
    /// The bytes as fetched (for a sync's copy; `None` for a refresh).
    pub body: Option<Body>,
}

#[derive(Default)]
pub struct Upstream {
    synced: Mutex<Option<Arc<Snapshot>>>,
    latest: Mutex<Option<Arc<Snapshot>>>,
    /// Held while `/versions` is fetched again for a mismatch.
    refresh: tokio::sync::Mutex<()>,
    seq: std::sync::atomic::AtomicU64,
}

/// The request for `/versions`. A sync's copy and a refresh's are kept as
/// two documents (they differ in `Accept`, the document cache's key besides
/// the path), so a lookup's refresh never replaces the copy a sync in
/// progress is about to serve.
fn request(refresh: bool) -> DocRequest {
    DocRequest {
        path: VERSIONS.to_string(),
        accept: refresh.then_some("text/plain"),
    }
}

impl Upstream {
    async fn fetch(
        &self,
        src: &dyn DocSource,
        refresh: bool,
        select: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Arc<Snapshot>, SyncError> {
        let doc = src.get_appended(request(refresh)).await?;
        let versions =
            Versions::parse(&doc.body, select).map_err(|what| SyncError::BadMetadata {
                url: doc.url.clone(),
                what,
            })?;
        if versions.rejected > 0 {
            tracing::warn!(url = %doc.url, lines = versions.rejected, "skipping lines that are not `<gem> <versions> <md5>`");
        }
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let url = doc.url.clone();
        let snap = Arc::new(Snapshot {
            seq,
            url,
            versions,
            body: (!refresh).then(|| doc.into_body()),
        });
        *self.latest.lock().unwrap() = Some(snap.clone());
        Ok(snap)
    }

    /// Fetches `/versions` for a sync; `select` picks the gems whose lines
    /// the sync needs (a `gems` filter's).
    pub async fn sync(
        &self,
        src: &dyn DocSource,
        select: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Arc<Snapshot>, SyncError> {
        let snap = self.fetch(src, false, select).await?;
        *self.synced.lock().unwrap() = Some(snap.clone());
        Ok(snap)
    }

    /// The copy the last sync fetched.
    pub fn synced(&self) -> Option<Arc<Snapshot>> {
        self.synced.lock().unwrap().clone()
    }

    /// The newest copy seen, fetched if there is none yet (a lookup right
    /// after a restart).
    pub async fn latest(&self, src: &dyn DocSource) -> Result<Arc<Snapshot>, SyncError> {
        if let Some(s) = self.latest.lock().unwrap().clone() {
            return Ok(s);
        }
        self.newer_than(src, 0).await
    }

    /// A copy fetched after the one numbered `seq`: one request however
    /// many callers ask at once.
    pub async fn newer_than(
        &self,
        src: &dyn DocSource,
        seq: u64,
    ) -> Result<Arc<Snapshot>, SyncError> {
        let _one = self.refresh.lock().await;
        if let Some(s) = self.latest.lock().unwrap().clone() {
            if s.seq > seq {
                return Ok(s);
            }
        }
        self.fetch(src, true, &|_| false).await
    }
}
