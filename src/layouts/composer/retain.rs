//! `retain = "additive"` for Composer: a version a p2 document served last
//! generation listed (`<name>.json` or `<name>~dev.json`) that neither of
//! upstream's documents lists any more stays in that same document while
//! its dist is cached with the `dist.shasum` it was served with. Its
//! version object is the one served (expanded from the served minified
//! document; its dist already at the mirror, `source` already gone), and
//! its dist stays in the tree as the served generation has it (upstream's
//! URL, the sha1): its bytes come from the cache, upstream no longer has
//! them. Retained versions then pass the policy like upstream's (a blocked
//! version is never retained; they count towards `keep_latest`; a
//! cooldown dates them by their `time`).
//!
//! A version served with no `shasum` (listed under `trust_on_first_use`)
//! is not retained: nothing but a pin vouches for its bytes.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::DISTS;
use super::p2::{Parsed, version_of};
use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::layout::{DocSource, Previous};
use crate::path::RelPath;

/// A version served last generation that upstream removed, whose dist is
/// cached.
#[derive(Clone, Debug)]
pub struct Retained {
    pub version: String,
    /// Its `time` (Unix seconds), what a cooldown dates it by.
    pub time: Option<u64>,
    /// Its version object as it was served, expanded.
    pub meta: Map<String, Value>,
    /// Its dist as the served generation has it.
    pub entry: Entry,
}

impl Retained {
    /// The digest its dist was served with.
    pub fn digest(&self) -> Option<&Digest> {
        match &self.entry.body {
            Body::Remote { digest, .. } => Some(digest),
            _ => None,
        }
    }
}

/// The versions of `served` (the p2 document of `package` the served
/// generation has at `path`) that `listed` (the versions of upstream's
/// documents now) lacks and whose dist is cached with the `shasum` served.
/// A document that cannot be read retains nothing (with a warning naming
/// it).
pub fn removed(
    package: &str,
    path: &str,
    served: &[u8],
    listed: &HashSet<String>,
    src: &dyn DocSource,
    public_url: &str,
) -> Vec<Retained> {
    read(package, served, listed, src, public_url)
        .map_err(|e| {
            tracing::warn!(
                document = path,
                "retain: the p2 document served last cannot be read, nothing retained from it: {e}"
            )
        })
        .unwrap_or_default()
}

/// What [`removed`] keeps, or why the document is not one.
fn read(
    package: &str,
    served: &[u8],
    listed: &HashSet<String>,
    src: &dyn DocSource,
    public_url: &str,
) -> Result<Vec<Retained>, String> {
    let parsed = Parsed::new(package, served)?;
    let mut kept = Vec::new();
    for v in parsed.expanded(package) {
        let v = v?;
        let version = version_of(&v).to_string();
        if version.is_empty() || listed.contains(&version) {
            continue;
        }
        let Some((path, shasum)) = served_dist(package, &v, public_url) else {
            tracing::debug!(package, %version, "retain: the served version names no dist regfs can check: gone");
            continue;
        };
        match src.previous(path.as_str()) {
            Some(Previous::Artifact {
                url,
                size,
                digest,
                cached: true,
            }) if digest == shasum => {
                let time = v.get("time").and_then(|t| t.as_str());
                let time = time.and_then(crate::timestamp::parse_rfc3339);
                kept.push(Retained {
                    version,
                    time: time.map(|t| t.max(0) as u64),
                    meta: v,
                    entry: Entry {
                        path,
                        mtime: None,
                        body: Body::Remote { url, size, digest },
                    },
                });
            }
            _ => tracing::debug!(package, %version, "removed upstream and not cached: gone"),
        }
    }
    Ok(kept)
}

/// A served version's dist: its tree path (its URL at the mirror, under
/// `dists/<package>/`) and the sha1 its `shasum` gives.
fn served_dist(
    package: &str,
    v: &Map<String, Value>,
    public_url: &str,
) -> Option<(RelPath, Digest)> {
    let dist = v.get("dist")?.as_object()?;
    let shasum = Digest::from_hex(Algo::Sha1, dist.get("shasum")?.as_str()?).ok()?;
    let url = dist.get("url")?.as_str()?;
    let rel = url.strip_prefix(public_url)?.strip_prefix('/')?;
    if !rel.starts_with(&format!("{DISTS}/{package}/")) {
        return None;
    }
    Some((RelPath::new(rel.to_string()).ok()?, shasum))
}
