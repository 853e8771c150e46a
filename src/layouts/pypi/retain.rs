//! `retain = "additive"` for PyPI: files the project page served last
//! generation that upstream's page no longer lists stay listed while their
//! bytes are in the cache, with the digests, upload time and attributes
//! the page gave them.

use std::collections::HashSet;

use super::{File, JSON_TYPE, Project, file_version, parse_project};
use crate::digest::Digest;
use crate::layout::{DocSource, Previous};

/// The base the served JSON page's relative links resolve against.
const MIRROR: &str = "http://mirror.invalid/";

/// What a merge kept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Kept {
    /// Versions (by the files' names) only retained files still give.
    pub versions: usize,
    /// Their artifacts' digests (metadata files included).
    pub artifacts: Vec<Digest>,
}

/// The artifact the served generation has at `path`, if it is cached and
/// of `digest`: its upstream URL and size.
fn cached(src: &dyn DocSource, path: &str, digest: &Digest) -> Option<(String, Option<u64>)> {
    match src.previous(path)? {
        Previous::Artifact {
            url,
            size,
            digest: d,
            cached: true,
        } if d == *digest => Some((url, size)),
        _ => None,
    }
}

/// Adds to `page` the files of `old` (the page served last generation,
/// parsed against [`MIRROR`]/`dir`/) upstream no longer lists whose
/// artifacts are cached; a retained file's core metadata stays advertised
/// only if it is cached too.
pub fn merge<'a>(
    project: &str,
    page: &mut Project<'a>,
    old: &Project<'a>,
    src: &dyn DocSource,
) -> Kept {
    let listed: HashSet<&str> = page.files.iter().map(|f| &*f.filename).collect();
    let mut retained: Vec<File<'a>> = Vec::new();
    let mut kept = Kept::default();
    for f in &old.files {
        let (Some(sha256), Some(path)) = (&f.sha256, f.url.strip_prefix(MIRROR)) else {
            continue;
        };
        if listed.contains(&*f.filename) {
            continue;
        }
        let Some((url, size)) = cached(src, path, sha256) else {
            tracing::debug!(project, file = %f.filename, "removed upstream and not cached: gone");
            continue;
        };
        let core_metadata = match &f.core_metadata {
            Some(Some(md)) => {
                cached(src, &format!("{path}.metadata"), md).map(|_| Some(md.clone()))
            }
            _ => None,
        };
        if core_metadata.is_some() {
            kept.artifacts
                .push(f.core_metadata.clone().flatten().expect("checked"));
        }
        kept.artifacts.push(sha256.clone());
        retained.push(File {
            url,
            size: size.or(f.size),
            core_metadata,
            ..f.clone()
        });
    }
    let upstream: HashSet<&str> = page
        .files
        .iter()
        .filter_map(|f| file_version(project, &f.filename))
        .collect();
    let mut versions: Vec<String> = retained
        .iter()
        .filter_map(|f| file_version(project, &f.filename))
        .filter(|v| !upstream.contains(v))
        .map(str::to_string)
        .collect();
    versions.sort();
    versions.dedup();
    kept.versions = versions.len();
    if !retained.is_empty() {
        tracing::info!(
            project,
            files = retained.len(),
            versions = kept.versions,
            "retain: keeping files removed upstream whose bytes are cached"
        );
    }
    if let Some(vs) = page.versions.as_mut() {
        for v in versions {
            if !vs.contains(&v) {
                vs.push(v);
            }
        }
    }
    page.files.extend(retained);
    kept
}

/// Parses the page served last generation for the project page at `dir`.
pub fn parse_served<'b>(dir: &str, bytes: &'b [u8]) -> Option<Project<'b>> {
    parse_project(&format!("{MIRROR}{dir}/"), Some(JSON_TYPE), bytes)
        .map_err(|e| tracing::warn!(page = %format!("{dir}/index.v1_json"), "retain: the page served last cannot be read, nothing retained: {e}"))
        .ok()
}
