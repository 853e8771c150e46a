//! Remote files: the size their metadata promises checked against the
//! cached object, their one verified download, and files opened before
//! they are cached (reads wait for the download, then read the local file
//! like any other).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::{Fs, FsError};
use crate::catalog;
use crate::fetch::Artifact;
use crate::mirror::Mirror;

impl Fs {
    /// The size of a remote file's cached object, if cached; EIO when it
    /// is not the size the file's metadata promises (invariants 1 and 8:
    /// the object is verified, the entry lies about it).
    pub(super) fn cached_size(
        &self,
        mirror: &Mirror,
        url: &str,
        file: &catalog::FileInfo,
    ) -> Result<Option<u64>, FsError> {
        crate::fetch::cached_size(&self.store, url, &file.digest, file.size, &mirror.counters)
            .map_err(|e| {
                mirror.counters.read_error();
                FsError::Upstream(e.to_string())
            })
    }

    pub(super) async fn fetch(
        &self,
        mirror: &Arc<Mirror>,
        url: &str,
        digest: &crate::digest::Digest,
        size: Option<u64>,
    ) -> Result<u64, FsError> {
        let art = Artifact {
            urls: mirror.artifact_urls(url),
            digest: digest.clone(),
            size,
        };
        self.fetcher
            .ensure(&self.store, art, mirror.counters.clone())
            .await
            .map_err(|e| {
                crate::warn_limited!(mirror = %mirror.name(), url, "read fails with EIO: {e}");
                mirror.counters.read_error();
                FsError::Upstream(e.to_string())
            })
    }
}

/// An artifact opened before it was cached: the first to ask fetches it,
/// everyone gets the same verified local file or the same error.
pub struct PendingFile {
    pub(super) cell: tokio::sync::OnceCell<Result<Arc<File>, FsError>>,
}

impl PendingFile {
    pub(super) async fn get(
        &self,
        fs: &Fs,
        mirror: &Arc<Mirror>,
        url: &str,
        digest: &crate::digest::Digest,
        size: Option<u64>,
    ) -> Result<Arc<File>, FsError> {
        self.cell
            .get_or_init(|| async {
                // A cache much smaller than the traffic through it can evict
                // the object between its download and this open (the soak
                // saw it once in 358k reads): fetch again, a few times.
                for _ in 0..3 {
                    fs.fetch(mirror, url, digest, size).await?;
                    if let Some(f) = fs.local(&fs.store, digest) {
                        return Ok(f);
                    }
                    tracing::info!(%digest, "evicted before it could be opened; fetching it again");
                }
                crate::warn_limited!(%digest, "downloaded three times, evicted each time before it could be opened: the cache is too small for this traffic");
                Err(FsError::Local(format!("{digest}: evicted before it could be opened")))
            })
            .await
            .clone()
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
