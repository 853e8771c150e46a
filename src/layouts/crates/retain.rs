//! `retain = "additive"` for crates: a line the index file served last
//! generation had and upstream's no longer has (a version deleted from the
//! registry, which crates.io-style registries do rarely: a yanked version
//! keeps its line, `"yanked": true`, and is served as upstream has it)
//! stays, byte-identical, while its `.crate` is cached with the line's
//! `cksum`. Retained lines then pass the policy like upstream's (a blocked
//! version is never retained; retained versions count towards
//! `keep_latest`).

use super::{DL, Version, parse_index};
use crate::catalog::{Body, Entry};
use crate::layout::{DocSource, Previous};
use crate::path::RelPath;

/// A line served last generation that upstream's index file no longer has,
/// whose `.crate` is cached.
pub struct Removed {
    /// Its version; `line` is where it is in the served index file.
    pub version: Version,
    /// Its `.crate` as the served generation has it (the upstream URL, the
    /// size once known, the `cksum`).
    pub entry: Entry,
}

/// The lines of `served` (the index file of `unit` served last generation)
/// whose version `upstream` (the new file's lines) no longer lists and
/// whose `.crate` is cached with the line's `cksum`.
pub fn removed(
    unit: &str,
    served: &[u8],
    upstream: &[Version],
    src: &dyn DocSource,
) -> Vec<Removed> {
    let (old, _) = parse_index(unit, served);
    let mut kept = Vec::new();
    for v in old {
        if upstream.iter().any(|u| u.vers == v.vers) {
            continue;
        }
        let Ok(path) = RelPath::new(format!("{DL}/{0}/{0}-{1}.crate", v.name, v.vers)) else {
            continue;
        };
        match src.previous(path.as_str()) {
            Some(Previous::Artifact {
                url,
                size,
                digest,
                cached: true,
            }) if digest == v.cksum => kept.push(Removed {
                entry: Entry {
                    path,
                    mtime: None,
                    body: Body::Remote { url, size, digest },
                },
                version: v,
            }),
            _ => {
                tracing::debug!(krate = unit, vers = %v.vers, "removed upstream and not cached: gone")
            }
        }
    }
    kept
}
