//! Files opened before they are cached: reads wait for the one verified
//! download, then read the local file like any other.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::{Fs, FsError};
use crate::mirror::Mirror;

/// An artifact opened before it was cached: the first to ask fetches it and
/// everyone gets the same verified local file. A failure is not kept: the
/// next read tries again (an exporter may keep the descriptor open for
/// minutes, as nginx's `open_file_cache` does, and must not be served the
/// old error once upstream has recovered).
pub struct PendingFile {
    pub(super) cell: tokio::sync::OnceCell<Arc<File>>,
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
            .get_or_try_init(|| async {
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
            .cloned()
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
