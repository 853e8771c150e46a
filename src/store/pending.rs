//! An object being written: hashed while it streams into a temp file,
//! verified, made durable and renamed into place by [`Pending::commit`],
//! removed if dropped uncommitted. A large download hashes on a thread of
//! its own ([`Pending::write_bytes`]), so that receiving and hashing
//! overlap instead of adding up (nothing is served before `commit` either
//! way).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;

use crate::digest::{Digest, Hasher};

use super::{Store, StoreError, io_err};

/// Chunks waiting for the hashing thread: enough to keep it busy, small
/// enough that a slow hash holds the download back rather than memory.
const QUEUED_CHUNKS: usize = 64;

/// Bodies at least this large hash on their own thread.
pub const HASH_THREAD_FROM: u64 = 1 << 20;

/// A hash computed on a thread of its own from the chunks sent to it.
struct Offloaded {
    tx: std::sync::mpsc::SyncSender<bytes::Bytes>,
    done: std::thread::JoinHandle<(Digest, Option<Digest>)>,
}

/// An object being written; removed unless committed.
pub struct Pending {
    file: File,
    path: PathBuf,
    hasher: Hasher,
    /// Pinning on first use ([`Store::begin_pinning`]): the SHA-256 the
    /// object is kept under, computed alongside the weak digest.
    pin: Option<Hasher>,
    offloaded: Option<Offloaded>,
    written: u64,
    expect: Digest,
    expected_size: Option<u64>,
    done: bool,
}

impl Pending {
    pub(super) fn new(
        file: File,
        path: PathBuf,
        expect: Digest,
        expected_size: Option<u64>,
        pinning: bool,
    ) -> Pending {
        Pending {
            hasher: Hasher::new(expect.algo()),
            pin: pinning.then(|| Hasher::new(crate::digest::Algo::Sha256)),
            offloaded: None,
            file,
            path,
            written: 0,
            expect,
            expected_size,
            done: false,
        }
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.written += chunk.len() as u64;
        if let Some(max) = self.expected_size {
            if self.written > max {
                return Err(StoreError::Size {
                    expected: max,
                    actual: self.written,
                });
            }
        }
        match &self.offloaded {
            Some(off) => {
                let _ = off.tx.send(bytes::Bytes::copy_from_slice(chunk));
            }
            None => {
                self.hasher.update(chunk);
                if let Some(p) = self.pin.as_mut() {
                    p.update(chunk);
                }
            }
        }
        self.file.write_all(chunk).map_err(io_err(&self.path))
    }

    /// As [`Pending::write`], for an owned chunk of a download: once the
    /// body is known to be large (or of unknown size), chunks are hashed on
    /// a thread of their own while the next ones arrive.
    pub fn write_bytes(&mut self, chunk: bytes::Bytes) -> Result<(), StoreError> {
        let large = self.expected_size.is_none_or(|s| s >= HASH_THREAD_FROM);
        if self.offloaded.is_none() && large && self.expect.algo().streams() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(QUEUED_CHUNKS);
            let mut hasher = std::mem::replace(&mut self.hasher, Hasher::new(self.expect.algo()));
            let mut pin = self.pin.take();
            let done = std::thread::Builder::new()
                .name("regfs-hash".into())
                .spawn(move || {
                    for c in rx {
                        hasher.update(&c);
                        if let Some(p) = pin.as_mut() {
                            p.update(&c);
                        }
                    }
                    (hasher.finish(), pin.map(Hasher::finish))
                })
                .map_err(io_err(&self.path))?;
            self.offloaded = Some(Offloaded { tx, done });
        }
        let Some(off) = &self.offloaded else {
            return self.write(&chunk);
        };
        self.written += chunk.len() as u64;
        if let Some(max) = self.expected_size.filter(|&m| self.written > m) {
            return Err(StoreError::Size {
                expected: max,
                actual: self.written,
            });
        }
        self.file.write_all(&chunk).map_err(io_err(&self.path))?;
        // The thread only ends when the sender goes: a send cannot fail.
        let _ = off.tx.send(chunk);
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies, makes durable and publishes the object; returns its size.
    pub fn commit(self, store: &Store) -> Result<u64, StoreError> {
        self.commit_keyed(store).map(|(size, _)| size)
    }

    /// [`Pending::commit`], also returning the digest the object is kept
    /// under: the one it was opened with, or when pinning its SHA-256
    /// (after checking the weak digest, unless there is none).
    pub fn commit_keyed(mut self, store: &Store) -> Result<(u64, Digest), StoreError> {
        if let Some(expected) = self.expected_size {
            if expected != self.written {
                return Err(StoreError::Size {
                    expected,
                    actual: self.written,
                });
            }
        }
        let hasher = std::mem::replace(&mut self.hasher, Hasher::new(self.expect.algo()));
        let pin = self.pin.take();
        let (actual, pinned) = if let Some(Offloaded { tx, done }) = self.offloaded.take() {
            drop(tx);
            done.join().map_err(|_| StoreError::Io {
                path: self.path.clone(),
                source: io::Error::other("the hashing thread panicked"),
            })?
        } else if self.expect.algo().streams() {
            (hasher.finish(), pin.map(Hasher::finish))
        } else {
            let actual = match store.digest_file(&self.path, &self.expect) {
                Ok(d) => d,
                // Not even a readable module zip: a verification failure.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    tracing::warn!("{}: {e}", self.path.display());
                    Hasher::new(self.expect.algo()).finish()
                }
                Err(e) => return Err(io_err(&self.path)(e)),
            };
            (actual, None)
        };
        // A weak digest is never proof: no object is kept under one. When
        // pinning, the object is kept under its SHA-256 (the weak digest,
        // if not "none", checked all the same).
        let key = match pinned {
            Some(sha256) => sha256,
            None if self.expect.algo().is_weak() => {
                return Err(StoreError::Digest {
                    expected: self.expect.clone(),
                    actual,
                });
            }
            None => self.expect.clone(),
        };
        if self.expect.algo() != crate::digest::Algo::None && actual != self.expect {
            return Err(StoreError::Digest {
                expected: self.expect.clone(),
                actual,
            });
        }
        if store.sync_each {
            self.file.sync_data().map_err(io_err(&self.path))?;
        }
        let dest = store.object_path(&key);
        let parent = dest.parent().expect("object paths have a parent");
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        fs::rename(&self.path, &dest).map_err(io_err(&dest))?;
        self.done = true;
        store.insert(&key, self.written);
        store.evict_if_needed(Some(&key));
        Ok((self.written, key))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}
