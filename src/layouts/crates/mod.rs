//! crates.io's sparse index (RFC 2789) and its crate files.
//!
//! ```text
//! index/config.json                      generated: `dl` points at this mirror, no `api`
//! index/1/<n>, index/2/<n>               one- and two-letter crates
//! index/3/<c>/<n>                        three letters
//! index/<ab>/<cd>/<name>                 the rest; upstream's index file, byte-identical
//! dl/<name>/<name>-<version>.crate       verified by the index line's `cksum` (sha256)
//! ```
//!
//! A crate (its index file) is the unit. The index gives no sizes, so a
//! `.crate` is fetched and verified on its first `stat` (invariant 8). Shard
//! directories exist as soon as they are looked up; the first lookup of an
//! index file or of `dl/<name>` materializes the crate.
//!
//! Under a policy (cooldown by the line's `pubtime`, `keep_latest`,
//! `prereleases`, `block`) the index file is upstream's with the hidden
//! versions' lines left out (each kept line byte-identical) and their
//! `.crate` files are not in the tree. A line without `pubtime` (older
//! registries) is of unknown age: a cooldown hides it.
//!
//! Under `retain = "additive"` a line upstream removed stays while its
//! `.crate` is cached (`retain.rs`); the index file is then upstream's kept
//! lines followed by the retained ones, each byte-identical.

mod retain;

use std::sync::Mutex;

use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::keys::{Glob, Section};
use crate::layout::{
    Adapter, BoxFuture, Capabilities, DocError, DocRequest, DocSource, LayoutDef, MirrorContext,
    Selection, Sizes, SyncError, UnitOutput, literal_seeds,
};
use crate::path::{RelPath, check_name};
use crate::policy::Retain;

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "crates",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: Some("crates"),
        lazy: true,
        sizes: Sizes::Fetched,
        placeholders: false,
        signed: false,
        cooldown: true,
        versions: Some(crate::policy::Scheme::Semver),
        retain: crate::layout::RetainSupport::Yes,
    },
    configure: |ctx, keys| Ok(Box::new(Crates::from_keys(ctx, keys)?)),
    file_digests: &[],
};

const INDEX: &str = "index";
const DL: &str = "dl";

pub struct Crates {
    filter: Option<Vec<Glob>>,
    /// Where clients reach this mirror's directory (`http://host/crates`).
    public_url: String,
    /// Upstream's download template, read from its `config.json` once, and
    /// the URL it came from (a relative template resolves against it).
    dl: Mutex<Option<(String, reqwest::Url)>>,
    policy: crate::policy::Policy,
}

/// A valid crate name, as crates.io allows them (any case).
pub fn is_crate_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphabetic()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// The sparse-index directory of a crate (lowercased): `1`, `2`, `3/s`, `se/rd`.
pub fn shard(name: &str) -> String {
    shard_prefix(name).to_ascii_lowercase()
}

/// One version line of an index file, as far as the mirror needs it.
#[derive(Debug, PartialEq, Eq)]
pub struct Version {
    pub name: String,
    pub vers: String,
    pub cksum: Digest,
    /// `pubtime` (appeared in 2025; absent on older lines), Unix seconds.
    pub pubtime: Option<u64>,
    /// Where the line is in the index file (without its newline).
    pub line: std::ops::Range<usize>,
}

/// Parses an index file: one JSON object per line. Lines that are not
/// usable (bad JSON, another crate's name, a version that is not a file
/// name, a checksum that is not sha256 hex) are returned as reasons.
pub fn parse_index(crate_name: &str, text: &[u8]) -> (Vec<Version>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut start = 0;
    for (i, line) in text.split(|&c| c == b'\n').enumerate() {
        let range = start..start + line.len();
        start = range.end + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                bad.push(format!("line {}: not JSON ({e})", i + 1));
                continue;
            }
        };
        let s = |k: &str| v.get(k).and_then(|x| x.as_str());
        let (Some(name), Some(vers), Some(cksum)) = (s("name"), s("vers"), s("cksum")) else {
            bad.push(format!("line {}: needs name, vers and cksum", i + 1));
            continue;
        };
        if !name.eq_ignore_ascii_case(crate_name) || !is_crate_name(name) {
            bad.push(format!("line {}: names crate {name:?}", i + 1));
            continue;
        }
        let vers_ok = !vers.is_empty()
            && vers.len() <= 128
            && vers
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+'))
            && check_name(&format!("{name}-{vers}.crate")).is_ok();
        if !vers_ok {
            bad.push(format!("line {}: version {vers:?} is not usable", i + 1));
            continue;
        }
        match Digest::from_hex(Algo::Sha256, cksum) {
            Ok(cksum) => out.push(Version {
                name: name.to_string(),
                vers: vers.to_string(),
                cksum,
                pubtime: s("pubtime")
                    .and_then(crate::timestamp::parse_rfc3339)
                    .map(|t| t.max(0) as u64),
                line: range,
            }),
            Err(e) => bad.push(format!("line {}: cksum: {e}", i + 1)),
        }
    }
    (out, bad)
}

/// Expands a `dl` template of a registry's `config.json` (cargo's rules:
/// without markers, `/{crate}/{version}/download` is appended).
pub fn expand_dl(template: &str, v: &Version) -> String {
    const MARKERS: [&str; 5] = [
        "{crate}",
        "{version}",
        "{prefix}",
        "{lowerprefix}",
        "{sha256-checksum}",
    ];
    if !MARKERS.iter().any(|m| template.contains(m)) {
        return format!(
            "{}/{}/{}/download",
            template.trim_end_matches('/'),
            v.name,
            v.vers
        );
    }
    let prefix = shard_prefix(&v.name);
    template
        .replace("{crate}", &v.name)
        .replace("{version}", &v.vers)
        .replace("{lowerprefix}", &prefix.to_ascii_lowercase())
        .replace("{prefix}", &prefix)
        .replace("{sha256-checksum}", &v.cksum.hex())
}

/// Cargo's `{prefix}`: the shard directory in the crate name's own case.
/// `name` must be a valid crate name (ASCII): it is sliced by bytes.
fn shard_prefix(name: &str) -> String {
    match name.len() {
        1 => "1".into(),
        2 => "2".into(),
        3 => format!("3/{}", &name[..1]),
        _ => format!("{}/{}", &name[..2], &name[2..4]),
    }
}

impl Crates {
    /// Reads `crates` (names or globs; none: lazy) and `public_url`
    /// (`config.json`'s `dl` is an absolute URL).
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Crates, String> {
        Ok(Crates {
            filter: keys.globs("crates")?,
            public_url: crate::layout::public_url(ctx, keys)?,
            dl: Mutex::new(None),
            policy: ctx.policy.clone(),
        })
    }

    fn allowed(&self, name: &str) -> bool {
        is_crate_name(name)
            && !self.policy.unit(&name.to_ascii_lowercase()).blocked()
            && self.filter.as_ref().is_none_or(|globs| {
                let lower = name.to_ascii_lowercase();
                globs.iter().any(|g| g.matches(&lower) || g.matches(name))
            })
    }

    /// Upstream's download template and the URL it resolves against.
    async fn dl_template(&self, src: &dyn DocSource) -> Result<(String, reqwest::Url), SyncError> {
        if let Some(t) = self.dl.lock().unwrap().clone() {
            return Ok(t);
        }
        let doc = src
            .get(DocRequest {
                path: "config.json".into(),
                accept: None,
            })
            .await?;
        let bad = |what: &str| SyncError::BadMetadata {
            url: doc.url.clone(),
            what: what.to_string(),
        };
        let v: serde_json::Value = serde_json::from_slice(&doc.body)
            .map_err(|e| bad(&format!("not a registry config.json ({e})")))?;
        let dl = v
            .get("dl")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad("has no `dl` download URL"))?;
        // cargo wants an absolute URL; a relative one (test fixtures, some
        // self-hosted registries) is taken relative to config.json.
        let base = reqwest::Url::parse(&doc.url).map_err(|e| bad(&format!("its URL: {e}")))?;
        let probe = base
            .join(dl)
            .map_err(|e| bad(&format!("`dl` is not a URL ({e})")))?;
        if !matches!(probe.scheme(), "http" | "https") {
            return Err(bad("`dl` is not an http(s) URL"));
        }
        let got = (dl.to_string(), base);
        *self.dl.lock().unwrap() = Some(got.clone());
        Ok(got)
    }
}

impl Adapter for Crates {
    fn select<'a>(
        &'a self,
        _src: &'a dyn DocSource,
    ) -> BoxFuture<'a, Result<Selection, SyncError>> {
        let seeds = literal_seeds(&self.filter, |c| {
            is_crate_name(c).then(|| c.to_ascii_lowercase())
        });
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
            if !self.allowed(unit) || unit != unit.to_ascii_lowercase() {
                return Ok(None);
            }
            let path = format!("{}/{unit}", shard(unit));
            let doc = match src
                .get(DocRequest {
                    path: path.clone(),
                    accept: None,
                })
                .await
            {
                Ok(doc) => doc,
                Err(DocError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let (dl, base) = self.dl_template(src).await?;
            let (mut versions, bad) = parse_index(unit, &doc.body);
            for b in &bad {
                tracing::warn!(url = %doc.url, "skipping an index line: {b}");
            }
            if versions.is_empty() && !bad.is_empty() {
                return Err(SyncError::BadMetadata {
                    url: doc.url.clone(),
                    what: format!("no usable version line ({})", bad[0]),
                });
            }
            let index_path = format!("{INDEX}/{path}");
            let served = match self.policy.retain {
                Retain::Additive => src.previous_doc(&index_path),
                Retain::Mirror => None,
            };
            let mut removed = served
                .as_deref()
                .map(|old| retain::removed(unit, old, &versions, src))
                .unwrap_or_default();
            let policed = self.policy.cooldown.is_some() || self.policy.filters_versions();
            if policed {
                let all = versions.iter().chain(removed.iter().map(|r| &r.version));
                let selected = self.policy.unit(unit).select(
                    crate::policy::Scheme::Semver,
                    all.map(|v| (v.vers.as_str(), v.pubtime)),
                    now,
                );
                let selected: std::collections::HashSet<String> =
                    selected.into_iter().map(str::to_string).collect();
                versions.retain(|v| selected.contains(&v.vers));
                removed.retain(|r| selected.contains(&r.version.vers));
            }
            if self.policy.retain == Retain::Additive {
                let artifacts = removed.iter().map(|r| r.version.cksum.clone()).collect();
                src.retained(unit, removed.len(), artifacts);
            }
            if !removed.is_empty() {
                tracing::info!(
                    krate = unit,
                    versions = removed.len(),
                    "retain: keeping index lines removed upstream whose .crate files are cached"
                );
            }
            let mut entries: Vec<Entry> = versions
                .iter()
                .filter_map(|v| {
                    let url = base.join(&expand_dl(&dl, v)).ok()?;
                    Some(Entry {
                        path: RelPath::new(format!("{DL}/{0}/{0}-{1}.crate", v.name, v.vers))
                            .expect("name and version validated"),
                        mtime: None,
                        body: Body::Remote {
                            url: url.to_string(),
                            size: None,
                            digest: v.cksum.clone(),
                        },
                    })
                })
                .collect();
            entries.extend(removed.iter().map(|r| r.entry.clone()));
            entries.push(Entry {
                path: RelPath::new(index_path).expect("validated name"),
                mtime: None,
                body: if policed || !removed.is_empty() {
                    // The kept lines as upstream wrote them, then the
                    // retained ones as they were served.
                    let mut kept = Vec::with_capacity(doc.body.len());
                    for v in &versions {
                        kept.extend_from_slice(&doc.body[v.line.clone()]);
                        kept.push(b'\n');
                    }
                    let old = served.as_deref().unwrap_or_default();
                    for r in &removed {
                        kept.extend_from_slice(&old[r.version.line.clone()]);
                        kept.push(b'\n');
                    }
                    Body::Inline(kept)
                } else {
                    doc.into_body()
                },
            });
            Ok(Some(UnitOutput {
                entries,
                rejected: bad.len(),
                unchanged: false,
            }))
        })
    }

    fn changes_with_time(&self) -> bool {
        self.policy.cooldown.is_some()
    }

    fn root_entries(&self, _units: &[String]) -> Vec<Entry> {
        let config = serde_json::json!({
            "dl": format!("{}/{DL}/{{crate}}/{{crate}}-{{version}}.crate", self.public_url),
        });
        vec![Entry {
            path: RelPath::new(format!("{INDEX}/config.json")).expect("static path"),
            mtime: None,
            body: Body::Inline(format!("{config}\n").into_bytes()),
        }]
    }

    fn is_root_entry(&self, path: &str) -> bool {
        path == "index/config.json"
    }

    fn lazy_unit(&self, parent: &str, name: &str) -> Option<String> {
        let unit = if parent == DL {
            name
        } else if let Some(crate_dir) = parent.strip_prefix("dl/") {
            // A .crate of a crate not materialized yet.
            name.strip_suffix(".crate")?;
            crate_dir
        } else {
            let dir = parent.strip_prefix("index/")?;
            // Validate before slicing: shard() indexes bytes.
            (is_crate_name(name) && shard(name) == dir && name == name.to_ascii_lowercase())
                .then_some(name)?
        };
        self.allowed(unit).then(|| unit.to_ascii_lowercase())
    }

    fn lazy_dir(&self, parent: &str, name: &str) -> bool {
        let ok = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
        };
        match parent {
            "" => name == INDEX || name == DL,
            INDEX => matches!(name, "1" | "2" | "3") || ok(name, 2),
            "index/3" => ok(name, 1),
            _ => parent
                .strip_prefix("index/")
                .is_some_and(|p| ok(p, 2) && ok(name, 2)),
        }
    }
}

#[cfg(test)]
mod tests;
