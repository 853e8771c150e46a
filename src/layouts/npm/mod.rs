//! npm: packuments and tarballs, as the npm registry API serves them.
//!
//! ```text
//! <name>/index.json                 the packument, `dist.tarball` pointing at `public_url`
//! <name>/abbreviated.json           the install document (application/vnd.npm.install-v1+json)
//! <name>/-/<name>-<version>.tgz     verified by `dist.integrity` (sha512; sha1 `shasum` if none)
//! @scope/<name>/…                   scoped packages, the same below the scope
//! ```
//!
//! A package is the unit. Versions whose tarball has no usable digest are
//! left out of both documents (and dist-tags naming them), so a client never
//! resolves to something the mirror would not verify. The mirror's policy
//! (cooldown by the `time` map, `keep_latest`, `prereleases`, `block`)
//! hides versions from both documents and from `time` alike; a dist-tag
//! naming a hidden version goes, except `latest`, which moves to the newest
//! served version below it (a release rather than a pre-release where one
//! is left). With `dist_tags` only the dist-tags it names are served, and
//! only the versions they name (after the policy: a `latest` that moved
//! names the version it moved to). With `retain = "additive"` a version upstream removed stays in
//! both documents while its tarball is cached (`retain.rs`). Tarball sizes
//! are not in the packument: a tarball is fetched and verified on its first
//! `stat`.
//! The shipped nginx config maps npm's URLs (`/<name>`, `/@scope%2f<name>`,
//! the Accept header) onto this tree.

mod packument;
mod retain;

pub use packument::Rewritten;
pub use retain::Served;

use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::keys::{Glob, Section};
use crate::layout::{
    Adapter, BoxFuture, Capabilities, DocError, DocRequest, DocSource, LayoutDef, MirrorContext,
    Selection, Sizes, SyncError, UnitOutput, literal_seeds,
};
use crate::path::{RelPath, check_name};
use crate::policy::{Policy, Retain, Scheme};

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "npm",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: Some("packages"),
        lazy: true,
        sizes: Sizes::Fetched,
        placeholders: false,
        signed: false,
        cooldown: true,
        versions: Some(Scheme::Semver),
        retain: crate::layout::RetainSupport::Yes,
    },
    configure: |ctx, keys| Ok(Box::new(Npm::from_keys(ctx, keys)?)),
    file_digests: &[],
};

pub const FULL: &str = "index.json";
pub const ABBREVIATED: &str = "abbreviated.json";

/// Fields of a version the install document keeps (npm's registry does the same).
const ABBREVIATED_FIELDS: &[&str] = &[
    "name",
    "version",
    "deprecated",
    "dependencies",
    "optionalDependencies",
    "devDependencies",
    "bundleDependencies",
    "bundledDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "acceptDependencies",
    "bin",
    "directories",
    "dist",
    "engines",
    "cpu",
    "os",
    "libc",
    "funding",
    "_hasShrinkwrap",
    "hasInstallScript",
];

pub struct Npm {
    filter: Option<Vec<Glob>>,
    public_url: String,
    policy: Policy,
    /// `dist_tags`: the dist-tags served (globs); with it, only the versions
    /// they name are (see [`Npm::rewrite_retaining`]).
    dist_tags: Option<Vec<Glob>>,
}

/// One part of a package name (the scope without `@`, or the bare name).
fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 214
        && !s.starts_with(['.', '_'])
        && s.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'-' | b'.' | b'_' | b'~' | b'!' | b'*' | b'\'' | b'(' | b')'
                )
        })
        && check_name(s).is_ok()
}

/// `name` or `@scope/name`.
pub fn is_package_name(name: &str) -> bool {
    match name.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, n)| is_name_part(scope) && is_name_part(n)),
        None => is_name_part(name),
    }
}

/// The digest a version's `dist` promises: the sha512 of `integrity` (or
/// its strongest sha256/sha1 entry), else the hex sha1 `shasum`.
pub fn dist_digest(dist: &serde_json::Value) -> Option<Digest> {
    let from_sri = dist
        .get("integrity")
        .and_then(|i| i.as_str())
        .and_then(|sri| {
            sri.split_whitespace()
                .filter_map(|item| {
                    let (algo, b64) = item.split_once('-')?;
                    let algo = Algo::from_name(algo)?;
                    let b64 = b64.split('?').next()?;
                    Digest::from_bytes(algo, &crate::digest::decode_base64(b64)?)
                })
                .max_by_key(|d| d.algo())
        });
    from_sri.or_else(|| {
        dist.get("shasum")
            .and_then(|s| s.as_str())
            .and_then(|hex| Digest::from_hex(Algo::Sha1, hex).ok())
    })
}

impl Npm {
    /// Reads `packages` (names or globs; none: lazy), `public_url`
    /// (packuments hold absolute tarball URLs) and `dist_tags`.
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Npm, String> {
        let dist_tags = keys.globs("dist_tags")?;
        if dist_tags.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(keys.error(
                "dist_tags",
                "an empty list would serve no version: name the tags to serve (e.g. [\"latest\"]) or drop the key",
            ));
        }
        Ok(Npm {
            filter: keys.globs("packages")?,
            public_url: crate::layout::public_url(ctx, keys)?,
            policy: ctx.policy.clone(),
            dist_tags,
        })
    }

    fn allowed(&self, name: &str) -> bool {
        is_package_name(name)
            && !self.policy.unit(name).blocked()
            && self
                .filter
                .as_ref()
                .is_none_or(|globs| globs.iter().any(|g| g.matches(name)))
    }
}

impl Adapter for Npm {
    fn select<'a>(
        &'a self,
        _src: &'a dyn DocSource,
    ) -> BoxFuture<'a, Result<Selection, SyncError>> {
        let seeds = literal_seeds(&self.filter, |p| is_package_name(p).then(|| p.to_string()));
        Box::pin(async move { Ok(Selection::Lazy(seeds)) })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        now: u64,
        _full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(async move {
            if !self.allowed(unit) {
                return Ok(None);
            }
            let doc = match src
                .get(DocRequest {
                    path: unit.replace('/', "%2f"),
                    accept: Some("application/json"),
                })
                .await
            {
                Ok(doc) => doc,
                Err(DocError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let bad = |what: String| SyncError::BadMetadata {
                url: doc.url.clone(),
                what,
            };
            let last = match self.policy.retain {
                Retain::Additive => src.previous_doc(&format!("{unit}/{FULL}")),
                Retain::Mirror => None,
            };
            let last = last.as_deref().map(|packument| Served { packument, src });
            let packument::Rewritten {
                full,
                abbreviated,
                mut entries,
                dropped,
                hidden,
                retained,
            } = self
                .rewrite_retaining(unit, &doc.url, &doc.body, last, now)
                .map_err(bad)?;
            if self.policy.retain == Retain::Additive {
                src.retained(unit, retained.len(), retained);
            }
            if hidden > 0 {
                tracing::debug!(url = %doc.url, "the policy hides {hidden} versions");
            }
            for d in &dropped {
                tracing::warn!(url = %doc.url, "leaving out version {d}");
            }
            for (file, bytes) in [(FULL, full), (ABBREVIATED, abbreviated)] {
                entries.push(Entry {
                    path: RelPath::new(format!("{unit}/{file}")).expect("validated name"),
                    mtime: None,
                    body: Body::Inline(bytes),
                });
            }
            Ok(Some(UnitOutput {
                entries,
                rejected: dropped.len(),
                unchanged: false,
            }))
        })
    }

    fn changes_with_time(&self) -> bool {
        self.policy.cooldown.is_some()
    }

    fn lazy_unit(&self, parent: &str, name: &str) -> Option<String> {
        let unit = match parent {
            "" if !name.starts_with('@') => name.to_string(),
            scope if scope.starts_with('@') && !scope.contains('/') => format!("{scope}/{name}"),
            _ => return None,
        };
        self.allowed(&unit).then_some(unit)
    }

    fn lazy_dir(&self, parent: &str, name: &str) -> bool {
        parent.is_empty() && name.strip_prefix('@').is_some_and(is_name_part)
    }
}

#[cfg(test)]
mod tests;
