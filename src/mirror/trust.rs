//! Trust on first use where the core applies it (see [`crate::pins`]).
//!
//! At sync: a mirror without `trust_on_first_use` lists no entry with a
//! weak digest ([`Algo::is_weak`]: MD5, or none), whatever its layout
//! emits; they are dropped and counted as rejected, with one WARN.
//!
//! When served: a remote file is fetched as [`Mirror::artifact`] says. A
//! strong digest stands. A weak one, once pinned, is served as its pin
//! (the pinned SHA-256 and size: other bytes from upstream are a
//! verification failure); before that, its first download is checked
//! against the weak digest (if any), pinned, and only then served.

use super::Mirror;
use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::fetch::{Artifact, FetchError, PinTo};

impl Mirror {
    /// How to fetch the remote file at `path` (mirror-relative, built only
    /// for a weak digest: lookups and reads of every other file never
    /// spell their path out) that metadata lists at `url` with `digest`
    /// and `size`.
    pub fn artifact(
        &self,
        path: impl FnOnce() -> String,
        url: &str,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Artifact, FetchError> {
        let urls = self.artifact_urls(url);
        if !digest.algo().is_weak() {
            return Ok(Artifact {
                urls,
                digest: digest.clone(),
                size,
                pin: None,
                pinned: false,
            });
        }
        if !self.config.trust_on_first_use {
            return Err(FetchError::Untrusted {
                url: url.into(),
                algo: digest.algo().name(),
            });
        }
        let path = path();
        let path = path.as_str();
        let Some(pin) = self.pins.get(path) else {
            return Ok(Artifact {
                urls,
                digest: digest.clone(),
                size,
                pin: Some(PinTo {
                    pins: self.pins.clone(),
                    path: path.into(),
                }),
                pinned: false,
            });
        };
        // Metadata that now contradicts what was pinned: the bytes it
        // means are not the pinned ones, and no others are served.
        let contradiction =
            if pin.weak.algo() == Algo::Md5 && digest.algo() == Algo::Md5 && pin.weak != *digest {
                Some(FetchError::Digest {
                    url: url.into(),
                    expected: digest.clone(),
                    actual: pin.weak.clone(),
                })
            } else {
                size.filter(|&s| s != pin.size)
                    .map(|promised| FetchError::Contradicted {
                        url: url.into(),
                        promised,
                        object: pin.size,
                    })
            };
        if let Some(e) = contradiction {
            self.counters.verify_failure();
            crate::warn_limited!(mirror = %self.name(), path, "verification failed: metadata contradicts what was pinned on first use ({} bytes, {}): {e}", pin.size, pin.sha256);
            return Err(e);
        }
        Ok(Artifact {
            urls,
            digest: pin.sha256,
            size: Some(pin.size),
            pin: None,
            pinned: true,
        })
    }

    /// The SHA-256 the store keeps the remote file at `path` under, if it
    /// is known: its digest, or its pin's.
    pub fn object_digest(&self, path: &str, digest: &Digest) -> Option<Digest> {
        match digest.algo().is_weak() {
            false => Some(digest.clone()),
            true => self.pins.get(path).map(|p| p.sha256),
        }
    }

    /// Without `trust_on_first_use`, drops the entries a layout emitted
    /// with a weak digest; returns how many.
    pub(super) fn admit(&self, entries: &mut Vec<Entry>) -> usize {
        if self.config.trust_on_first_use {
            return 0;
        }
        let before = entries.len();
        entries
            .retain(|e| !matches!(&e.body, Body::Remote { digest, .. } if digest.algo().is_weak()));
        let dropped = before - entries.len();
        if dropped > 0 {
            crate::warn_limited!(mirror = %self.name(), dropped, "not listing artifacts whose metadata gives no digest regfs trusts (MD5 or none): set trust_on_first_use = true on this mirror to list them, pinned to the SHA-256 of their first download");
        }
        dropped
    }
}
