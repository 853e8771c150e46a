//! An object being written: hashed while it streams into a temp file,
//! verified, made durable and renamed into place by [`Pending::commit`],
//! removed if dropped uncommitted.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;

use crate::digest::{Digest, Hasher};

use super::{Store, StoreError, io_err};

/// An object being written; removed unless committed.
pub struct Pending {
    file: File,
    path: PathBuf,
    hasher: Hasher,
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
    ) -> Pending {
        Pending {
            hasher: Hasher::new(expect.algo()),
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
        self.hasher.update(chunk);
        self.file.write_all(chunk).map_err(io_err(&self.path))
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies, makes durable and publishes the object; returns its size.
    pub fn commit(mut self, store: &Store) -> Result<u64, StoreError> {
        if let Some(expected) = self.expected_size {
            if expected != self.written {
                return Err(StoreError::Size {
                    expected,
                    actual: self.written,
                });
            }
        }
        let hasher = std::mem::replace(&mut self.hasher, Hasher::new(self.expect.algo()));
        let actual = if self.expect.algo().streams() {
            hasher.finish()
        } else {
            match store.digest_file(&self.path, &self.expect) {
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
            }
        };
        if actual != self.expect {
            return Err(StoreError::Digest {
                expected: self.expect.clone(),
                actual,
            });
        }
        if store.sync_each {
            self.file.sync_data().map_err(io_err(&self.path))?;
        }
        let dest = store.object_path(&self.expect);
        let parent = dest.parent().expect("object paths have a parent");
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        fs::rename(&self.path, &dest).map_err(io_err(&dest))?;
        self.done = true;
        store.insert(&self.expect, self.written);
        store.evict_if_needed(Some(&self.expect));
        Ok(self.written)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}
