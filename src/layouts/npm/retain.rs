//! `retain = "additive"` for npm: a version the packument served last
//! generation listed and upstream's no longer does stays in both
//! packuments (and its tarball in the tree) while the tarball is cached
//! with the digest it was served with. It is served as it was: its
//! `versions` object (`dist.integrity` and `shasum` included) and its
//! `time` entry; its bytes come from the cache, as upstream no longer has
//! them. The rewrite then applies the policy to retained and upstream
//! versions alike ([`super::Npm::rewrite_retaining`]).

use serde_json::value::RawValue;

use super::FULL;
use super::dist_digest;
use super::packument::{Kept, Members, string, tarball_file};
use crate::catalog::{Body, Entry};
use crate::layout::{DocSource, Previous};
use crate::path::RelPath;

/// What a merge reads: the packument served last generation, and the
/// source that tells whether its tarballs are still cached.
#[derive(Clone, Copy)]
pub struct Served<'s> {
    pub packument: &'s [u8],
    pub src: &'s dyn DocSource,
}

/// The parts of the served packument a merge reads.
pub(super) struct Old<'o> {
    /// Its `versions`, as served (tarballs at the mirror).
    pub(super) versions: Members<'o>,
    /// Its `time`, if it had one.
    times: Option<Members<'o>>,
}

impl<'o> Old<'o> {
    /// Reads the packument served for `name`; one that cannot be read
    /// retains nothing (with a warning naming it).
    pub(super) fn parse(name: &str, packument: &'o [u8]) -> Option<Old<'o>> {
        Old::read(name, packument)
            .map_err(|e| tracing::warn!(packument = %format!("{name}/{FULL}"), "retain: the packument served last cannot be read, nothing retained: {e}"))
            .ok()
    }

    /// What [`Old::parse`] reads, or why the packument is not one.
    fn read(name: &str, packument: &'o [u8]) -> Result<Old<'o>, String> {
        let text = std::str::from_utf8(packument).map_err(|_| "not UTF-8".to_string())?;
        let top = serde_json::from_str::<Members<'o>>(text)
            .map_err(|e| format!("not a JSON object ({e})"))?
            .dedup();
        if top.get("name").and_then(string).as_deref() != Some(name) {
            return Err(format!("is not the packument of {name:?}"));
        }
        let versions = top
            .get("versions")
            .and_then(Members::of)
            .ok_or("has no `versions` object")?;
        let times = top.get("time").and_then(Members::of);
        Ok(Old { versions, times })
    }

    /// The `time` entry the served packument gave `version`.
    pub(super) fn time(&self, version: &str) -> Option<&'o RawValue> {
        self.times.as_ref()?.get(version)
    }

    /// The versions served last generation that `upstream` (the new
    /// packument's `versions`) no longer lists and whose tarball is cached
    /// with the digest it was served with: each as the rewrite serves it
    /// (its tarball at `public_url`), with its tree entry (the upstream URL,
    /// size and digest the served generation has for it).
    pub(super) fn removed(
        &self,
        name: &str,
        upstream: &Members,
        src: &dyn DocSource,
        public_url: &str,
    ) -> Vec<(Kept<'_>, Entry)> {
        let mut kept = Vec::new();
        for (version, raw) in &self.versions.0 {
            let version: &str = version;
            if upstream.get(version).is_some() {
                continue;
            }
            let Some((meta, path, digest)) = served_tarball(name, raw) else {
                tracing::debug!(package = name, %version, "retain: the served version names no tarball regfs can check: gone");
                continue;
            };
            let (url, size) = match src.previous(path.as_str()) {
                Some(Previous::Artifact {
                    url,
                    size,
                    digest: d,
                    cached: true,
                }) if d == digest => (url, size),
                _ => {
                    tracing::debug!(package = name, %version, "removed upstream and not cached: gone");
                    continue;
                }
            };
            let tarball = format!("{public_url}/{path}");
            kept.push((
                Kept {
                    version,
                    meta,
                    tarball,
                },
                Entry {
                    path,
                    mtime: None,
                    body: Body::Remote { url, size, digest },
                },
            ));
        }
        kept
    }
}

/// A served version's metadata, the tree path of its tarball and the
/// digest its `dist` promises.
fn served_tarball<'o>(
    name: &str,
    raw: &'o RawValue,
) -> Option<(Members<'o>, RelPath, crate::digest::Digest)> {
    let meta = Members::of(raw)?;
    let dist: serde_json::Value = serde_json::from_str(meta.get("dist")?.get()).ok()?;
    let digest = dist_digest(&dist)?;
    let tarball = reqwest::Url::parse(dist.get("tarball")?.as_str()?).ok()?;
    let file = tarball_file(&tarball)?;
    let path = RelPath::new(format!("{name}/-/{file}")).ok()?;
    Some((meta, path, digest))
}
