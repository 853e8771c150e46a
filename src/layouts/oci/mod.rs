//! OCI images and artifacts: a pull-only registry (the OCI distribution
//! spec's `/v2/` API) as a static tree.
//!
//! ```text
//! v2/<name>/manifests/<tag>/<digest>.<ext>      the manifest the tag names
//! v2/<name>/manifests/<digest>/<digest>.<ext>   every manifest by its digest
//! v2/<name>/blobs/<digest>                      configs and layers, fetched on first read
//! v2/<name>/tags/list                           {"name", "tags"}: the tags mirrored
//! v2/<name>/referrers/<digest>                  the OCI 1.1 referrers index (with `signatures`)
//! ```
//!
//! A reference (tag or digest) is a directory holding exactly one file,
//! named by the manifest's digest and an extension for its media type
//! (`oci-index`, `oci-manifest`, `docker-list`, `docker-manifest`; see
//! [`names::Kind`]). That is how an exporter learns both headers clients
//! need: `Content-Type` must be the manifest's media type (skopeo refuses
//! anything else, and OCI manifests need not say it in their bytes), and
//! `Docker-Content-Digest` its digest, also when asked by tag. The shipped
//! nginx config turns a request for `/v2/<name>/manifests/<ref>` into the
//! directory `<ref>/`, serves its only file (`random_index`), and takes
//! both headers from that file's name. Manifests are served
//! byte-identical; `tags/list` and the referrers indexes are the mirror's
//! own (the tags and referrers it holds).
//!
//! A repository is the unit. Each sync reads its `tags/list`, asks for
//! every tag that an `images` pattern admits with the Accept types of all
//! four manifest kinds, checks the bytes against `Docker-Content-Digest`
//! (and a manifest reached by digest against that digest and its size),
//! follows an index to the children of the configured `platforms`, and
//! lists every config and layer blob with the size and digest its
//! descriptor gives: blobs are fetched on first read and verified
//! (invariant 1). A manifest that fails a check is refused with the tag
//! that named it ([`manifest`]); a tag that moved upstream moves in the
//! next generation, with everything else in it.
//!
//! Under `retain = "additive"` a tag upstream's `tags/list` no longer has
//! stays, as it was served, while its manifests and every blob they list
//! are all here ([`retain`]).
//!
//! With `signatures = true`, what travels beside an image comes too: for
//! every mirrored manifest, Cosign's `sha256-<hex>.sig`, `.att` and
//! `.sbom` tags and the referrers tag schema's `sha256-<hex>` where
//! upstream lists them, and its OCI 1.1 referrers (upstream's referrers
//! API, or the tag schema's index where upstream has no such API), each
//! manifest a referrer only if its `subject` is that manifest.

mod manifest;
pub mod names;
mod retain;
mod sync;

use crate::keys::{Glob, Section};
use crate::layout::{
    Adapter, BoxFuture, Capabilities, DocSource, LayoutDef, MirrorContext, Selection, Sizes,
    SyncError, UnitOutput,
};
use names::{Platform, is_repository};

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "oci",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: Some("images"),
        lazy: false,
        sizes: Sizes::Listed,
        placeholders: false,
        signed: false,
        cooldown: false,
        versions: None,
        retain: crate::layout::RetainSupport::Yes,
    },
    configure: |ctx, keys| Ok(Box::new(Oci::from_keys(ctx, keys)?)),
    file_digests: &[],
};

/// Names of a repository's own directories: a repository nested in
/// another under one of these would share its paths.
const REPOSITORY_DIRS: [&str; 4] = ["manifests", "blobs", "tags", "referrers"];

pub struct Oci {
    /// Repositories in the order configured, each with its tag patterns.
    repositories: Vec<(String, Vec<Glob>)>,
    platforms: Option<Vec<Platform>>,
    signatures: bool,
    /// The upstream registry's base URL (ends with `/`).
    base: String,
    retain: crate::policy::Retain,
}

/// A tag pattern: tag characters and the wildcards `*` and `?`.
fn is_tag_pattern(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 128
        && p.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'*' | b'?'))
}

impl Oci {
    /// Reads `images` (`"<repository>:<tag pattern>"`, required),
    /// `platforms` (`"os/arch[/variant]"`: the children of an index to
    /// mirror; all when absent) and `signatures` (false by default).
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Oci, String> {
        let images = keys.string_or_list("images")?;
        let images = keys.required(
            "images",
            images,
            "the repositories and tags to mirror, e.g. [\"library/alpine:3.*\", \"myorg/app:*\"]",
        )?;
        if images.is_empty() {
            return Err(keys.error("images", "names no image"));
        }
        let mut repositories: Vec<(String, Vec<Glob>)> = Vec::new();
        for image in &images {
            let Some((repo, tags)) = image.rsplit_once(':') else {
                return Err(keys.error(
                    "images",
                    format!("\"{image}\" names no tag: write \"{image}:latest\", or \"{image}:*\" for every tag"),
                ));
            };
            if !is_repository(repo) {
                return Err(keys.error(
                    "images",
                    format!("\"{repo}\" is not a repository name (lowercase letters, digits and . _ - between them, / between components; no registry host)"),
                ));
            }
            if !is_tag_pattern(tags) {
                return Err(keys.error(
                    "images",
                    format!("\"{tags}\" in \"{image}\" is not a tag or tag pattern (letters, digits, _ . - and the wildcards * ?)"),
                ));
            }
            let glob = Glob::new(tags).map_err(|e| keys.error("images", e))?;
            match repositories.iter_mut().find(|(r, _)| r == repo) {
                Some((_, globs)) => globs.push(glob),
                None => repositories.push((repo.to_string(), vec![glob])),
            }
        }
        for (a, _) in &repositories {
            for (b, _) in &repositories {
                let nested = b
                    .strip_prefix(a.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                    .and_then(|r| r.split('/').next());
                if let Some(dir) = nested.filter(|d| REPOSITORY_DIRS.contains(d)) {
                    return Err(keys.error(
                        "images",
                        format!("\"{b}\" would share paths with \"{a}\" (its `{dir}/`): mirror them in two mirrors"),
                    ));
                }
            }
        }
        let platforms = match keys.string_or_list("platforms")? {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|p| {
                        Platform::parse(p).ok_or_else(|| {
                            keys.error(
                                "platforms",
                                format!("\"{p}\" is not a platform such as \"linux/amd64\" or \"linux/arm/v7\""),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Oci {
            repositories,
            platforms,
            signatures: keys.boolean("signatures")?.unwrap_or(false),
            base: ctx.base(),
            retain: ctx.policy.retain,
        })
    }

    /// The tag patterns of a configured repository.
    fn patterns(&self, repo: &str) -> Option<&[Glob]> {
        self.repositories
            .iter()
            .find(|(r, _)| r == repo)
            .map(|(_, g)| g.as_slice())
    }

    /// Is an index entry of this platform mirrored? Entries that name no
    /// platform always are.
    fn admits(&self, platform: Option<&(String, String, Option<String>)>) -> bool {
        match (&self.platforms, platform) {
            (None, _) | (_, None) => true,
            (Some(list), Some((os, arch, variant))) => {
                list.iter().any(|p| p.admits(os, arch, variant.as_deref()))
            }
        }
    }
}

impl Adapter for Oci {
    fn select<'a>(
        &'a self,
        _src: &'a dyn DocSource,
    ) -> BoxFuture<'a, Result<Selection, SyncError>> {
        let units = self.repositories.iter().map(|(r, _)| r.clone()).collect();
        Box::pin(async move { Ok(Selection::Units(units)) })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        _now: u64,
        _full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(async move {
            match self.patterns(unit) {
                Some(patterns) => sync::Repository::new(self, unit, patterns, src).run().await,
                None => Ok(None),
            }
        })
    }

    fn lazy_unit(&self, _parent: &str, _name: &str) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests;
