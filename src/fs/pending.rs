//! Remote files: the size their metadata promises checked against the
//! cached object, their one verified download, and files opened before
//! they are cached (reads wait for the download, then read the local file
//! like any other).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{Fs, FsError};
use crate::catalog;
use crate::fetch::Artifact;
use crate::mirror::Mirror;

impl Fs {
    /// How the remote file at `path` is fetched and verified (see
    /// [`Mirror::artifact`]); EIO when it may not be served.
    pub(super) fn artifact(
        &self,
        mirror: &Mirror,
        path: impl FnOnce() -> String,
        url: &str,
        file: &catalog::FileInfo,
    ) -> Result<Artifact, FsError> {
        mirror
            .artifact(path, url, &file.digest, file.size)
            .map_err(|e| read_error(mirror, url, e))
    }

    /// The size of a remote file's cached object, if cached; EIO when it
    /// is not the size the file's metadata promises (invariants 1 and 8:
    /// the object is verified, the entry lies about it).
    pub(super) fn cached_size(
        &self,
        mirror: &Mirror,
        art: &Artifact,
    ) -> Result<Option<u64>, FsError> {
        let Some(digest) = art.object_digest() else {
            return Ok(None);
        };
        let url = art.urls.first().map_or("", String::as_str);
        crate::fetch::cached_size(&self.store, url, &digest, art.size, &mirror.counters).map_err(
            |e| {
                mirror.counters.read_error();
                FsError::Upstream(e.to_string())
            },
        )
    }

    /// The size of an artifact whose metadata has none (see
    /// [`crate::fetch::Fetcher::ensure_size`]), starting its download.
    pub(super) async fn fetch_size(
        &self,
        mirror: &Arc<Mirror>,
        art: &Artifact,
    ) -> Result<u64, FsError> {
        let r = self
            .fetcher
            .ensure_size(&self.store, art.clone(), mirror.counters.clone())
            .await;
        r.map_err(|e| read_error(mirror, first_url(art), e))
    }

    pub(super) async fn fetch(&self, mirror: &Arc<Mirror>, art: &Artifact) -> Result<u64, FsError> {
        let r = self
            .fetcher
            .ensure(&self.store, art.clone(), mirror.counters.clone())
            .await;
        r.map_err(|e| read_error(mirror, first_url(art), e))
    }
}

fn first_url(art: &Artifact) -> &str {
    art.urls.first().map_or("", String::as_str)
}

fn read_error(mirror: &Mirror, url: &str, e: crate::fetch::FetchError) -> FsError {
    crate::warn_limited!(mirror = %mirror.name(), url, "read fails with EIO: {e}");
    mirror.counters.read_error();
    FsError::Upstream(e.to_string())
}

/// An artifact opened before it was cached: the open starts its download,
/// reads wait for it and everyone gets the same verified local file.
///
/// A failure is told once, not kept: the read that meets it gets EIO and
/// the next read tries again (an exporter may keep the descriptor open for
/// minutes, as nginx's `open_file_cache` does, and must not be served an
/// old error once upstream has recovered). The open's own attempt has no
/// reader waiting on it, so its failure waits for the first read, which
/// would otherwise start a second download at once.
pub struct PendingFile {
    cell: tokio::sync::OnceCell<Arc<File>>,
    /// The failure of the open's attempt, not yet told to a read.
    untold: Mutex<Option<FsError>>,
    /// Attempts begun: the open's attempt runs only if it is the first (a
    /// read that got in before it already asked upstream).
    attempts: std::sync::atomic::AtomicU32,
    mirror: Arc<Mirror>,
    art: Artifact,
}

impl PendingFile {
    /// Opens `url` and starts its download.
    pub(super) fn start(fs: &Arc<Fs>, mirror: Arc<Mirror>, art: Artifact) -> Arc<PendingFile> {
        let pending = Arc::new(PendingFile {
            cell: tokio::sync::OnceCell::new(),
            untold: Mutex::new(None),
            attempts: Default::default(),
            mirror,
            art,
        });
        let (fs, p) = (fs.clone(), pending.clone());
        tokio::spawn(async move { p.attempt(&fs, true).await });
        pending
    }

    /// The verified local file, for a read.
    pub(super) async fn get(&self, fs: &Fs) -> Result<Arc<File>, FsError> {
        self.attempt(fs, false).await
    }

    async fn attempt(&self, fs: &Fs, opening: bool) -> Result<Arc<File>, FsError> {
        self.cell
            .get_or_try_init(|| async {
                // Attempts run one at a time: a read that waited for the
                // open's failed attempt is told its failure.
                let earlier = self.attempts.fetch_add(1, Ordering::Relaxed);
                if opening && earlier > 0 {
                    return Err(FsError::Local("a read tried first".into()));
                }
                if let Some(e) = self.untold.lock().unwrap().take() {
                    return Err(e);
                }
                let r = self.fetch(fs).await;
                if let (true, Err(e)) = (opening, &r) {
                    *self.untold.lock().unwrap() = Some(e.clone());
                }
                r
            })
            .await
            .cloned()
    }

    async fn fetch(&self, fs: &Fs) -> Result<Arc<File>, FsError> {
        let mirror = &self.mirror;
        // A cache much smaller than the traffic through it can evict the
        // object between its download and this open (the soak saw it once
        // in 358k reads): fetch again, a few times.
        let mut why = None;
        for _ in 0..3 {
            fs.fetch(mirror, &self.art).await?;
            // A first download is kept under the SHA-256 it was pinned to.
            let digest = self.art.object_digest();
            let e = match &digest {
                Some(d) => match fs.local(&fs.store, d) {
                    Ok(f) => return Ok(f),
                    Err(e) => e.to_string(),
                },
                None => "no pin recorded for it".to_string(),
            };
            let digest = digest.unwrap_or_else(|| self.art.digest.clone());
            crate::info_limited!(%digest, "downloaded, then not there to open ({e}); fetching it again");
            why = Some(e);
        }
        let digest = &self.art.digest;
        let why = why.unwrap_or_default();
        crate::warn_limited!(%digest, "downloaded three times, and each time not there to open ({why}): is the cache too small for this traffic?");
        Err(FsError::Local(format!(
            "{digest}: downloaded, but not there to open ({why})"
        )))
    }
}

pub(super) fn read_at(f: &File, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
    let mut buf = vec![0u8; size as usize];
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FsError::Local(e.to_string())),
        }
    }
    buf.truncate(done);
    Ok(buf)
}
