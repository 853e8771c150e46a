//! `retain = "additive"` for Go: a version the mirror served last
//! generation that upstream removed (its `.info` or `.mod` now 404, or its
//! line gone from `@v/list`) stays served, in `@v/list` and with its
//! `.info`, `.mod` and `.zip` in the tree, while its zip is cached with the
//! digest it was served with.
//!
//! The zip is the artifact: its cached-ness governs. Its digest is the
//! `h1:` the checksum source vouched for when the version was served (the
//! tree entry keeps it), and the cache holds the zip only once its files
//! hashed to that `h1:` (the store checks it on the complete file), so the
//! cached bytes are the ones the checksum source names. The `.info` and
//! `.mod` are metadata: they are served as they were, from the metadata
//! store (each read back only if it still hashes to the digest the tree
//! gives it); the `.mod` was checked against its `/go.mod h1:` when it was
//! first served. A version lacking any of the three in the served tree
//! (its version unit never materialized, say) is not retained.
//!
//! The version unit is what reports a version retained ([`DocSource::retained`]):
//! it is the unit whose files only the cache can give now, so `status`
//! counts each such version once and an immediate mirror holds its zip.
//! The module unit keeps the version in `@v/list` on the same condition,
//! and the policy applies to retained versions as to upstream's. A version
//! whose line alone upstream dropped (its files still there) stays listed
//! while its zip is cached but is not counted: upstream still gives its
//! files, so they are served as upstream has them and nothing is held.

use crate::catalog::{Body, Entry};
use crate::digest::Digest;
use crate::layout::{DocSource, Previous};
use crate::path::RelPath;

use super::{is_version, parse_info};

/// A version's files as the served generation has them, its zip cached.
#[derive(Clone, Debug)]
pub(super) struct Kept {
    /// The `.info` served, byte for byte.
    pub(super) info: Vec<u8>,
    /// The `.mod` served, byte for byte.
    pub(super) modf: Vec<u8>,
    /// The zip's upstream URL, size (if known) and `h1:` as served.
    url: String,
    size: Option<u64>,
    pub(super) digest: Digest,
}

impl Kept {
    /// When the version was published, by its served `.info` `Time`.
    pub(super) fn time(&self) -> Option<u64> {
        parse_info(&self.info).1
    }

    /// The version's three tree entries at `at` (`<esc>/@v/<version>`),
    /// as the served generation had them.
    pub(super) fn entries(&self, at: &str) -> Vec<Entry> {
        let entry = |ext: &str, body: Body| Entry {
            path: RelPath::new(format!("{at}{ext}")).expect("a path the served tree held"),
            mtime: None,
            body,
        };
        vec![
            entry(".info", Body::Inline(self.info.clone())),
            entry(".mod", Body::Inline(self.modf.clone())),
            entry(
                ".zip",
                Body::Remote {
                    url: self.url.clone(),
                    size: self.size,
                    digest: self.digest.clone(),
                },
            ),
        ]
    }
}

/// The files the served generation has for `esc@version` if its zip is
/// cached with the `h1:` it was served with; an `.info` that cannot be read
/// as this version's retains nothing (with a warning naming it).
pub(super) fn served_version(src: &dyn DocSource, esc: &str, version: &str) -> Option<Kept> {
    let at = format!("{esc}/@v/{version}");
    let zip = format!("{at}.zip");
    let (url, size, digest) = match src.previous(&zip)? {
        Previous::Artifact {
            url,
            size,
            digest,
            cached: true,
        } => (url, size, digest),
        _ => {
            tracing::debug!(%zip, "retain: not cached: gone");
            return None;
        }
    };
    let info = src.previous_doc(&format!("{at}.info"))?;
    let modf = src.previous_doc(&format!("{at}.mod"))?;
    if parse_info(&info).0.as_deref() != Some(version) {
        tracing::warn!(info = %format!("{at}.info"), "retain: the .info served last cannot be read as {version}'s, nothing retained");
        return None;
    }
    Some(Kept {
        info,
        modf,
        url,
        size,
        digest,
    })
}

/// The versions of the `@v/list` served last generation for `esc`; one
/// that cannot be read (not UTF-8, or a line that is no version) retains
/// nothing, with a warning naming it.
pub(super) fn served_list(src: &dyn DocSource, esc: &str) -> Vec<String> {
    let path = format!("{esc}/@v/list");
    let Some(bytes) = src.previous_doc(&path) else {
        return Vec::new();
    };
    let read = std::str::from_utf8(&bytes)
        .map_err(|_| "not UTF-8".to_string())
        .and_then(|text| {
            text.split_whitespace()
                .map(|v| match is_version(v) {
                    true => Ok(v.to_string()),
                    false => Err(format!("{v:?} is not a version")),
                })
                .collect::<Result<Vec<_>, _>>()
        });
    read.unwrap_or_else(|e| {
        tracing::warn!(list = %path, "retain: the list served last cannot be read, nothing retained: {e}");
        Vec::new()
    })
}

/// The versions the served `@v/list` of `esc` had that `upstream` (the
/// versions upstream's list has now) lacks, each with its served files,
/// where its zip is cached.
pub(super) fn removed(src: &dyn DocSource, esc: &str, upstream: &[String]) -> Vec<(String, Kept)> {
    let mut seen = std::collections::HashSet::new();
    served_list(src, esc)
        .into_iter()
        .filter(|v| !upstream.contains(v) && seen.insert(v.clone()))
        .filter_map(|v| {
            let kept = served_version(src, esc, &v)?;
            Some((v, kept))
        })
        .collect()
}
