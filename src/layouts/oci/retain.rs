//! `retain = "additive"` for OCI: a tag the served `tags/list` had that
//! upstream's no longer has (deleted from the registry) stays, with the
//! manifest it named, the manifests under it that the configured
//! `platforms` admit and every config and layer blob they list, as they
//! were served, while all of it is here: each manifest in the served
//! generation (the sync kept their bytes) and each blob in the cache with
//! the digest and size it was listed with. Without one of them a pull could
//! not complete, and the tag goes.
//!
//! Only a tag missing from upstream's `tags/list` is a removed one. A tag
//! upstream still lists is upstream's: one that names another manifest now
//! moves, one whose manifest is gone or fails a check goes, as without
//! `retain`. A tag no `images` pattern admits any more is not retained, nor
//! is anything of a repository upstream no longer has (404 on its
//! `tags/list`). Signatures and referrers are not retained as such: with
//! `signatures = true` those of a retained manifest are mirrored while
//! upstream still has them (a signature tag an `images` pattern admits is
//! an ordinary tag, retained under the rule above).

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use super::Oci;
use super::manifest::parse;
use super::names::{Kind, digest_of, is_tag, parse_digest};
use super::sync::{Fetched, MAX_DEPTH, MAX_TREE};
use crate::digest::Digest;
use crate::keys::Glob;
use crate::layout::{Doc, DocSource, Previous};

/// The trees of the tags that the served `tags/list` of repository `name`
/// lists, `upstream` (its tags now) does not, and `patterns` admit, whose
/// manifests and blobs are all still here; by tag, as `sync` resolves them
/// (the tag's manifest first).
pub fn removed(
    oci: &Oci,
    name: &str,
    patterns: &[Glob],
    src: &dyn DocSource,
    upstream: &BTreeSet<String>,
) -> BTreeMap<String, Vec<Fetched>> {
    let repo = format!("v2/{name}");
    let mut out = BTreeMap::new();
    let Some(list) = src.previous_doc(&format!("{repo}/tags/list")) else {
        return out;
    };
    #[derive(serde::Deserialize)]
    struct Wire {
        tags: Vec<String>,
    }
    // The mirror's own document: unreadable only if written by another
    // version of regfs, and then there is nothing to retain.
    let Ok(served) = serde_json::from_slice::<Wire>(&list) else {
        tracing::debug!(
            repo = name,
            "the served tags/list is not readable: retaining nothing"
        );
        return out;
    };
    for tag in served.tags {
        if upstream.contains(&tag) || !is_tag(&tag) || !patterns.iter().any(|g| g.matches(&tag)) {
            continue;
        }
        match tree(oci, &repo, &tag, src) {
            Ok(tree) => {
                out.insert(tag, tree);
            }
            Err(why) => {
                tracing::debug!(repo = name, tag, "removed upstream and not retained: {why}")
            }
        }
    }
    out
}

/// The served tree of `tag`, or what is missing from it.
fn tree(oci: &Oci, repo: &str, tag: &str, src: &dyn DocSource) -> Result<Vec<Fetched>, String> {
    let dir = format!("{repo}/manifests/{tag}");
    let names = src.previous_files(&dir);
    let [file] = names.as_slice() else {
        return Err(format!("{dir} holds {} files, not one", names.len()));
    };
    let not_ours = || format!("{dir}/{file} is not named <digest>.<kind>");
    let (digest, ext) = file.rsplit_once('.').ok_or_else(not_ours)?;
    let digest = parse_digest(digest).map_err(|_| not_ours())?;
    let kind = Kind::of_ext(ext).ok_or_else(not_ours)?;
    let root = manifest(&format!("{dir}/{file}"), &digest, kind, None, src)?;
    let mut out = Vec::new();
    let mut seen = HashSet::from([root.digest.clone()]);
    let mut queue = VecDeque::from([(root, 0)]);
    while let Some((f, depth)) = queue.pop_front() {
        if f.manifest.kind.is_index() && depth >= MAX_DEPTH && !f.manifest.children.is_empty() {
            return Err(format!("indexes nested deeper than {MAX_DEPTH}"));
        }
        for child in &f.manifest.children {
            if !oci.admits(child.platform.as_ref()) || !seen.insert(child.digest.clone()) {
                continue;
            }
            if seen.len() > MAX_TREE {
                return Err(format!("more than {MAX_TREE} manifests under it"));
            }
            let path = format!(
                "{repo}/manifests/{0}/{0}.{1}",
                child.digest,
                child.kind.ext()
            );
            let c = manifest(&path, &child.digest, child.kind, Some(child.size), src)?;
            queue.push_back((c, depth + 1));
        }
        for b in &f.manifest.blobs {
            let path = format!("{repo}/blobs/{}", b.digest);
            match src.previous(&path) {
                Some(Previous::Artifact {
                    digest,
                    size,
                    cached: true,
                    ..
                }) if digest == b.digest && size.is_none_or(|s| s == b.size) => {}
                _ => return Err(format!("{path} is not cached")),
            }
        }
        out.push(f);
    }
    Ok(out)
}

/// The manifest the served generation has at `path`, checked against the
/// digest (and size) it is known by, and parsed as a manifest of `kind`.
fn manifest(
    path: &str,
    digest: &Digest,
    kind: Kind,
    size: Option<u64>,
    src: &dyn DocSource,
) -> Result<Fetched, String> {
    let body = src
        .previous_doc(path)
        .ok_or_else(|| format!("{path} is not in the served generation"))?;
    if size.is_some_and(|s| s != body.len() as u64) || digest_of(digest.algo(), &body) != *digest {
        return Err(format!("{path} is not {digest}"));
    }
    let manifest = parse(&body, None, Some(kind)).map_err(|e| format!("{path}: {e}"))?;
    Ok(Fetched {
        digest: digest.clone(),
        doc: Doc {
            url: path.to_string(),
            content_type: Some(kind.media_type().to_string()),
            content_digest: Some(digest.to_string()),
            body,
            unchanged: true,
            stored: None,
            hold: Default::default(),
        },
        manifest,
    })
}
