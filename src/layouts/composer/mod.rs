//! Composer: a Composer v2 repository (what Satis writes and Packagist
//! serves) and the dists its metadata checksums.
//!
//! ```text
//! packages.json                          generated: `metadata-url` points at this mirror's p2/
//! p2/<vendor>/<name>.json                upstream's, rewritten: dists point at `public_url`
//! p2/<vendor>/<name>~dev.json            likewise, where upstream has one
//! dists/<vendor>/<name>/<version>/<reference>.<ext>   verified by `dist.shasum` (sha1)
//! ```
//!
//! A package is the unit: its two p2 documents and their dists. Upstream's
//! `packages.json` is read for its `metadata-url` only (Composer 1 provider
//! repositories are not supported); the mirror's own names no upstream
//! host: no `mirrors`, `providers-url`, `notify-batch` or `search`, and
//! with `packages` its `available-package-patterns` are those globs, so
//! Composer asks it for nothing else.
//!
//! A p2 document is the minified format (`"minified": "composer/2.0"`: each
//! version lists only what changed since the previous one, `"__unset"`
//! removes a field), expanded and minified again one version at a time
//! (`p2.rs`). Versions whose dist the mirror cannot serve verified are
//! left out, so Composer never resolves to them: no dist (source only), a
//! dist URL that is not http(s), a `shasum` that is not sha1 hex, and an
//! empty or missing `shasum` unless the mirror has `trust_on_first_use`
//! ([`Composer::unverified_dist`]). `source` (git/hg) is dropped
//! from every version served: a mirror cannot serve it, and with it
//! Composer would fall back to cloning upstream when a dist fails its
//! check, even under `--prefer-dist`. `notification-url` and `dist.mirrors`
//! go too (they name upstream hosts). Dist sizes are not published: a dist
//! is fetched and verified on its first `stat`.
//!
//! The mirror's policy (cooldown by each version's `time`, `keep_latest`,
//! `prereleases`, `block`) chooses from the versions of both p2 documents
//! together, by Composer's version order and stability, so the two
//! documents and the dists in the tree agree.
//!
//! Under `retain = "additive"` a version upstream withdrew stays in the p2
//! document that served it, as served, while its dist is cached
//! (`retain.rs`); the policy chooses from those and upstream's alike.

mod p2;
mod retain;

use std::collections::HashSet;
use std::sync::Mutex;

use crate::catalog::{Body, Entry};
use crate::digest::Digest;
use crate::keys::{Glob, Section};
use crate::layout::bad_metadata as bad;
use crate::layout::{
    Adapter, BoxFuture, Capabilities, Doc, DocRequest, DocSource, LayoutDef, MirrorContext,
    Selection, Sizes, SyncError, UnitOutput, get_optional, literal_seeds,
};
use crate::path::RelPath;
use crate::policy::{Policy, Retain, Scheme};

pub use p2::{Expander, Minifier, Rewritten};
pub use retain::Retained;

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "composer",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: Some("packages"),
        lazy: true,
        sizes: Sizes::Fetched,
        placeholders: false,
        signed: false,
        cooldown: true,
        versions: Some(Scheme::Composer),
        retain: crate::layout::RetainSupport::Yes,
    },
    configure: |ctx, keys| Ok(Box::new(Composer::from_keys(ctx, keys)?)),
    file_digests: &[],
};

/// The mirror's root document (generated).
pub const PACKAGES_JSON: &str = "packages.json";
const P2: &str = "p2";
const DISTS: &str = "dists";
/// The suffix of a package's development versions' document.
pub const DEV: &str = "~dev";

pub struct Composer {
    filter: Option<Vec<Glob>>,
    /// Where clients reach this mirror (`http://host/composer`): dist URLs.
    public_url: String,
    /// Its path (`/composer`, or empty): the host-relative `metadata-url`.
    public_path: String,
    /// Upstream's `metadata-url` template, read from its `packages.json`
    /// (again at every sync).
    metadata_url: Mutex<Option<String>>,
    /// The mirror's `trust_on_first_use`: dists with no `shasum` are listed,
    /// each pinned to the SHA-256 of its first download.
    tofu: bool,
    /// The mirror's policy, applied to the versions of both p2 documents
    /// of a package together.
    policy: Policy,
}

/// One half of a package name (vendor or project), as Composer allows
/// them: lowercase letters and digits, single `.`, `_` or `-` (or `--`)
/// between them.
pub fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 100 {
        return false;
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    // The separators since the last letter or digit: one, or `--`.
    let mut seps: &[u8] = &[];
    for (i, &c) in b.iter().enumerate() {
        if alnum(c) {
            seps = &[];
        } else if matches!(c, b'.' | b'_' | b'-') {
            seps = &b[i - seps.len()..=i];
            if seps.len() > 2 || (seps.len() == 2 && seps != b"--") {
                return false;
            }
        } else {
            return false;
        }
    }
    true
}

/// `vendor/name`, lowercase (the form Composer asks for).
pub fn is_package_name(name: &str) -> bool {
    name.split_once('/')
        .is_some_and(|(v, n)| is_name_part(v) && is_name_part(n))
}

impl Composer {
    /// Reads `packages` (names or globs, any case; none: every package,
    /// lazily) and `public_url` (dist URLs are absolute).
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Composer, String> {
        let filter = keys.folded_globs(
            "packages",
            str::to_ascii_lowercase,
            is_package_name,
            "a Composer package name (vendor/name)",
        )?;
        let public_url = crate::layout::public_url(ctx, keys)?;
        let public_path = reqwest::Url::parse(&public_url)
            .map(|u| u.path().trim_end_matches('/').to_string())
            .map_err(|e| keys.error("public_url", e))?;
        Ok(Composer {
            filter,
            public_url,
            public_path,
            metadata_url: Mutex::new(None),
            tofu: ctx.trust_on_first_use,
            policy: ctx.policy.clone(),
        })
    }

    fn allowed(&self, name: &str) -> bool {
        is_package_name(name)
            && self
                .filter
                .as_ref()
                .is_none_or(|globs| globs.iter().any(|g| g.matches(name)))
    }

    /// Upstream's `metadata-url` template (`/p2/%package%.json`), from its
    /// `packages.json`: fetched once, and again when `refresh`.
    async fn metadata_url(&self, src: &dyn DocSource, refresh: bool) -> Result<String, SyncError> {
        if !refresh {
            if let Some(t) = self.metadata_url.lock().unwrap().clone() {
                return Ok(t);
            }
        }
        let doc = src
            .get(DocRequest {
                path: PACKAGES_JSON.into(),
                accept: Some("application/json"),
            })
            .await?;
        let root: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&doc.body)
            .map_err(|e| bad(&doc.url, format!("is not a Composer packages.json ({e})")))?;
        let template = root
            .get("metadata-url")
            .and_then(|m| m.as_str())
            .filter(|m| m.contains("%package%"))
            .ok_or_else(|| {
                bad(
                    &doc.url,
                    "has no `metadata-url` with %package%: not a Composer v2 repository (Composer 1 provider repositories are not supported)",
                )
            })?;
        let base = reqwest::Url::parse(&doc.url).map_err(|e| bad(&doc.url, e.to_string()))?;
        let probe = base
            .join(&template.replace("%package%", "vendor/name"))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        if probe.is_none() {
            return Err(bad(
                &doc.url,
                format!("`metadata-url` {template:?} is not an http(s) URL"),
            ));
        }
        let template = template.to_string();
        *self.metadata_url.lock().unwrap() = Some(template.clone());
        Ok(template)
    }

    /// What to do with a version's dist that upstream gives no `shasum`
    /// for (Packagist's dists of packages hosted on a forge all carry
    /// `"shasum": ""`). Under the mirror's `trust_on_first_use` it is
    /// listed with no digest, and the core pins it to the SHA-256 of its
    /// first download. Without the policy nothing vouches for these bytes,
    /// so the version is left out (counted, and one WARN per document
    /// names how many).
    fn unverified_dist(&self, url: &str) -> Option<Body> {
        self.tofu.then(|| Body::Remote {
            url: url.to_string(),
            size: None,
            digest: Digest::none(),
        })
    }

    /// The versions of `package` the policy serves as of `now`, chosen
    /// from both its p2 documents at once (so `keep_latest` counts them
    /// together) and the versions they retain; `None` where the mirror has
    /// no policy.
    fn served<'r>(
        &self,
        package: &str,
        dated: &[(String, Option<u64>)],
        retained: impl Iterator<Item = &'r Retained>,
        now: u64,
    ) -> Option<HashSet<String>> {
        if self.policy.cooldown.is_none() && !self.policy.filters_versions() {
            return None;
        }
        let all = dated
            .iter()
            .map(|(v, t)| (v.as_str(), *t))
            .chain(retained.map(|r| (r.version.as_str(), r.time)));
        let served = self.policy.unit(package).select(Scheme::Composer, all, now);
        Some(served.into_iter().map(str::to_string).collect())
    }

    /// Whether [`Composer::served`] reads the versions' times.
    fn policed(&self) -> bool {
        self.policy.cooldown.is_some() || self.policy.filters_versions()
    }

    /// Rewrites one p2 document of `package` (`suffix` "" or [`DEV`]) into
    /// `out`, serving the versions of `served` (`None`: all).
    /// `retained` are the versions kept although upstream removed them;
    /// returns the digests of those served.
    fn document(
        &self,
        package: &str,
        suffix: &str,
        (url, body): (&str, &[u8]),
        served: Option<&HashSet<String>>,
        retained: &[Retained],
        out: &mut UnitOutput,
    ) -> Result<Vec<Digest>, SyncError> {
        let Rewritten {
            body,
            dists,
            dropped,
            unverified,
            retained,
        } = self
            .rewrite_retaining(package, url, body, served, retained)
            .map_err(|what| bad(url, what))?;
        for d in &dropped {
            tracing::warn!(%url, "leaving out version {d}");
        }
        if !unverified.is_empty() {
            tracing::warn!(
                %url,
                versions = unverified.len(),
                "leaving out {} version(s) whose dist has no shasum: nothing vouches for their bytes ({}); trust_on_first_use = true on this mirror would list them, each pinned to the SHA-256 of its first download",
                unverified.len(),
                unverified.join(", ")
            );
        }
        out.rejected += dropped.len() + unverified.len();
        out.entries.extend(dists);
        out.entries.push(Entry {
            path: RelPath::new(format!("{P2}/{package}{suffix}.json")).expect("validated name"),
            mtime: None,
            body: Body::Inline(body),
        });
        Ok(retained)
    }
}

impl Adapter for Composer {
    fn select<'a>(&'a self, src: &'a dyn DocSource) -> BoxFuture<'a, Result<Selection, SyncError>> {
        Box::pin(async move {
            self.metadata_url(src, true).await?;
            let seeds = literal_seeds(&self.filter, |p| is_package_name(p).then(|| p.to_string()));
            Ok(Selection::Lazy(seeds))
        })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        now: u64,
        _full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(async move {
            if !self.allowed(unit) || self.policy.unit(unit).blocked() {
                return Ok(None);
            }
            let template = self.metadata_url(src, false).await?;
            let mut out = UnitOutput {
                entries: Vec::new(),
                rejected: 0,
                unchanged: false,
            };
            // A package upstream lacks costs one request: its ~dev.json is
            // only asked for where the stable document exists (Composer
            // repositories serve both for every package they have).
            let get = |suffix: &str| {
                get_optional(
                    src,
                    template.replace("%package%", &format!("{unit}{suffix}")),
                )
            };
            let Some(tagged) = get("").await? else {
                return Ok(None);
            };
            let dev = get(DEV).await?;
            let docs: Vec<&Doc> = std::iter::once(&tagged).chain(dev.as_ref()).collect();
            let retain = self.policy.retain == Retain::Additive;
            let mut dated = Vec::new();
            if retain || self.policed() {
                for doc in &docs {
                    dated.extend(p2::dated(unit, &doc.body).map_err(|what| bad(&doc.url, what))?);
                }
            }
            // Per document (tagged, dev): the versions it served last
            // generation that upstream removed, their dists cached.
            let mut kept: [Vec<Retained>; 2] = Default::default();
            if retain {
                let listed: HashSet<String> = dated.iter().map(|(v, _)| v.clone()).collect();
                for (kept, suffix) in kept.iter_mut().zip(["", DEV]) {
                    let path = format!("{P2}/{unit}{suffix}.json");
                    if let Some(old) = src.previous_doc(&path) {
                        *kept = retain::removed(unit, &path, &old, &listed, src, &self.public_url);
                    }
                }
            }
            let served = self.served(unit, &dated, kept.iter().flatten(), now);
            let mut retained = self.document(
                unit,
                "",
                (&tagged.url, &tagged.body),
                served.as_ref(),
                &kept[0],
                &mut out,
            )?;
            // Upstream dropped the dev document, but the one served keeps
            // versions: it is served with those alone (an empty upstream
            // document, which no error can name, stands in for it).
            let no_dev = (!kept[1].is_empty()).then(|| {
                let empty = serde_json::json!({"packages": {unit: []}});
                (
                    tagged.url.clone(),
                    serde_json::to_vec(&empty).expect("JSON serializes"),
                )
            });
            let dev_doc = match (&dev, &no_dev) {
                (Some(dev), _) => Some((dev.url.as_str(), dev.body.as_slice())),
                (None, Some((url, body))) => Some((url.as_str(), body.as_slice())),
                (None, None) => None,
            };
            if let Some(doc) = dev_doc {
                retained.extend(self.document(
                    unit,
                    DEV,
                    doc,
                    served.as_ref(),
                    &kept[1],
                    &mut out,
                )?);
            }
            if retain {
                if !retained.is_empty() {
                    tracing::info!(
                        package = unit,
                        versions = retained.len(),
                        "retain: keeping versions removed upstream whose dists are cached"
                    );
                }
                src.retained(unit, retained.len(), retained);
            }
            Ok(Some(out))
        })
    }

    fn changes_with_time(&self) -> bool {
        self.policy.cooldown.is_some()
    }

    fn root_entries(&self, _units: &[String]) -> Vec<Entry> {
        let mut root = serde_json::json!({
            "packages": [],
            "metadata-url": format!("{}/{P2}/%package%.json", self.public_path),
        });
        if let Some(globs) = &self.filter {
            // Composer's patterns know only `*`; over-matching is safe.
            let patterns: Vec<String> =
                globs.iter().map(|g| g.as_str().replace('?', "*")).collect();
            root["available-package-patterns"] = patterns.into();
        }
        vec![Entry {
            path: RelPath::new(PACKAGES_JSON.to_string()).expect("static path"),
            mtime: None,
            body: Body::Inline(format!("{root}\n").into_bytes()),
        }]
    }

    fn is_root_entry(&self, path: &str) -> bool {
        path == PACKAGES_JSON
    }

    fn lazy_unit(&self, parent: &str, name: &str) -> Option<String> {
        let (dir, vendor) = parent.split_once('/')?;
        let project = match dir {
            P2 => {
                let stem = name.strip_suffix(".json")?;
                stem.strip_suffix(DEV).unwrap_or(stem)
            }
            DISTS => name,
            _ => return None,
        };
        let unit = format!("{vendor}/{project}");
        self.allowed(&unit).then_some(unit)
    }

    fn lazy_dir(&self, parent: &str, name: &str) -> bool {
        match parent {
            "" => name == P2 || name == DISTS,
            P2 | DISTS => is_name_part(name),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
