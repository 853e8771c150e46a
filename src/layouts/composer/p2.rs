//! p2 documents (`{"packages": {"vendor/name": [versions…]}, "minified":
//! "composer/2.0"}`) read and written back one version at a time.
//!
//! In the minified format the first version is whole and each later one
//! lists only the fields that changed since the previous one, a field
//! whose value is the string `"__unset"` being removed (Composer's
//! `MetadataMinifier`). The document is read as raw slices; each version is
//! expanded ([`Expander`]), rewritten, and minified again against the
//! previous version written ([`Minifier`]), so memory beyond the document
//! and its rewrite is that of one version. Top-level members other than
//! `packages` and `minified` (`security-advisories`, …) are kept as
//! upstream wrote them; other packages a document lists are left out.

use std::collections::{BTreeMap, HashSet};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::retain::Retained;
use super::{Composer, DISTS};
use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::path::{RelPath, check_name};

/// The value that removes a field in the minified format.
const UNSET: &str = "__unset";
/// The `minified` marker Composer expands.
const MINIFIED: &str = "composer/2.0";

/// Expands a minified version list one entry at a time.
#[derive(Default)]
pub struct Expander {
    state: Option<Map<String, Value>>,
}

impl Expander {
    /// The whole version that `diff` (the next entry) stands for.
    pub fn next(&mut self, diff: Map<String, Value>) -> Map<String, Value> {
        let Some(state) = &mut self.state else {
            self.state = Some(diff.clone());
            return diff;
        };
        for (k, v) in diff {
            if v.as_str() == Some(UNSET) {
                state.remove(&k);
            } else {
                state.insert(k, v);
            }
        }
        state.clone()
    }
}

/// Minifies a version list one version at a time (the inverse of
/// [`Expander`]).
#[derive(Default)]
pub struct Minifier {
    prev: Option<Map<String, Value>>,
}

impl Minifier {
    /// The entry that stands for `version` after the ones already given.
    pub fn next(&mut self, version: Map<String, Value>) -> Map<String, Value> {
        let Some(prev) = self.prev.replace(version.clone()) else {
            return version;
        };
        let mut diff: Map<String, Value> = version
            .iter()
            .filter(|(k, v)| prev.get(*k) != Some(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for k in prev.keys().filter(|k| !version.contains_key(*k)) {
            diff.insert(k.clone(), Value::from(UNSET));
        }
        diff
    }
}

/// A rewritten p2 document: the bytes served, its dists, the versions
/// left out (with why, or only named where their dist has no `shasum`),
/// and the dist digests of the versions it keeps although upstream removed
/// them (`retain = "additive"`), one per version.
pub struct Rewritten {
    pub body: Vec<u8>,
    pub dists: Vec<Entry>,
    pub dropped: Vec<String>,
    pub unverified: Vec<String>,
    pub retained: Vec<Digest>,
}

/// A version directory: the version, `/` (a branch's) as `~` (which no
/// git branch name holds), safe characters only.
fn version_dir(v: &str) -> Option<String> {
    let s = v.replace('/', "~");
    let ok = s.len() <= 128
        && !s.starts_with(['.', '~'])
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+' | b'~'))
        && check_name(&s).is_ok();
    ok.then_some(s)
}

/// A dist's file name stem: its reference (a commit id, a tag) where that
/// is a safe name, else `fallback` (its sha1).
fn file_stem(reference: Option<&str>, fallback: &str) -> String {
    reference
        .filter(|r| {
            (1..=128).contains(&r.len())
                && !r.starts_with('.')
                && r.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        })
        .unwrap_or(fallback)
        .to_string()
}

/// A dist's extension: its URL's where that is an archive's, else its
/// type's; `None` for a type no file serves (`path`).
fn extension(url: &reqwest::Url, kind: Option<&str>) -> Option<&'static str> {
    const EXTS: [&str; 12] = [
        "tar.gz", "tar.bz2", "tar.xz", "tgz", "zip", "tar", "gz", "bz2", "xz", "phar", "rar", "7z",
    ];
    let last = url.path_segments().and_then(|mut s| s.next_back())?;
    if let Some(e) = EXTS.iter().find(|e| {
        last.strip_suffix(*e)
            .is_some_and(|stem| stem.len() > 1 && stem.ends_with('.'))
    }) {
        return Some(e);
    }
    Some(match kind? {
        "zip" => "zip",
        "tar" => "tar",
        "gzip" => "gz",
        "xz" => "xz",
        "bzip2" => "bz2",
        "phar" => "phar",
        "rar" => "rar",
        _ => return None,
    })
}

/// What one version's dist turned into.
enum Dist {
    /// Served: the entry and the URL clients get.
    Served(Entry, String),
    /// Left out, with why.
    Dropped(String),
    /// Left out: no `shasum`.
    Unverified,
}

/// A p2 document read as raw slices: its top-level members, whether it is
/// minified, and `package`'s version list.
pub(super) struct Parsed<'b> {
    top: BTreeMap<String, &'b RawValue>,
    minified: bool,
    versions: Vec<&'b RawValue>,
}

impl<'b> Parsed<'b> {
    pub(super) fn new(package: &str, body: &'b [u8]) -> Result<Parsed<'b>, String> {
        let top: BTreeMap<String, &RawValue> = serde_json::from_slice(body)
            .map_err(|e| format!("is not a Composer p2 document: not a JSON object ({e})"))?;
        let minified = match top
            .get("minified")
            .map(|m| serde_json::from_str::<Value>(m.get()))
        {
            None => false,
            Some(Ok(Value::String(m))) if m == MINIFIED => true,
            Some(m) => return Err(format!("has an unknown `minified` format {m:?}")),
        };
        let packages: BTreeMap<String, &RawValue> = top
            .get("packages")
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .ok_or("has no `packages` object")?;
        let versions: Vec<&RawValue> = packages
            .get(package)
            .copied()
            .ok_or_else(|| format!("does not list package {package:?}"))
            .and_then(|v| {
                serde_json::from_str(v.get())
                    .map_err(|_| format!("lists {package:?} with no version list"))
            })?;
        Ok(Parsed {
            top,
            minified,
            versions,
        })
    }

    /// Each version whole (expanded where minified), in document order.
    pub(super) fn expanded<'p>(
        &'p self,
        package: &'p str,
    ) -> impl Iterator<Item = Result<Map<String, Value>, String>> + 'p {
        let mut expand = Expander::default();
        self.versions.iter().enumerate().map(move |(i, raw)| {
            let entry: Map<String, Value> = serde_json::from_str(raw.get())
                .map_err(|_| format!("version entry {i} of {package:?} is not an object"))?;
            Ok(if self.minified {
                expand.next(entry)
            } else {
                entry
            })
        })
    }
}

/// A version's `version` string (empty where it has none).
pub(super) fn version_of(v: &Map<String, Value>) -> &str {
    v.get("version")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

/// The versions `package`'s p2 document lists, each with its `time` (Unix
/// seconds; `None` where absent or unreadable): what the policy selects from.
pub fn dated(package: &str, body: &[u8]) -> Result<Vec<(String, Option<u64>)>, String> {
    let parsed = Parsed::new(package, body)?;
    parsed
        .expanded(package)
        .map(|v| {
            let v = v?;
            let time = v.get("time").and_then(|t| t.as_str());
            let time = time.and_then(crate::timestamp::parse_rfc3339);
            Ok((version_of(&v).to_string(), time.map(|t| t.max(0) as u64)))
        })
        .filter(|v| !matches!(v, Ok((version, _)) if version.is_empty()))
        .collect()
}

impl Composer {
    /// Rewrites `package`'s p2 document fetched from `doc_url`: versions
    /// whose dist is served point at the mirror, the others are left out,
    /// and so are those not in `served` (the policy's choice; `None`: all).
    pub fn rewrite(
        &self,
        package: &str,
        doc_url: &str,
        body: &[u8],
        served: Option<&HashSet<String>>,
    ) -> Result<Rewritten, String> {
        self.rewrite_retaining(package, doc_url, body, served, &[])
    }

    /// [`Composer::rewrite`] for `retain = "additive"`: after upstream's
    /// versions come `retained` (versions this document served last
    /// generation that upstream removed, their dists cached), each as it
    /// was served, those not in `served` left out like upstream's. One
    /// whose dist path an upstream version now uses is left out: the path
    /// is upstream's.
    pub fn rewrite_retaining(
        &self,
        package: &str,
        doc_url: &str,
        body: &[u8],
        served: Option<&HashSet<String>>,
        retained: &[Retained],
    ) -> Result<Rewritten, String> {
        let parsed = Parsed::new(package, body)?;
        let base = reqwest::Url::parse(doc_url).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(body.len() + 64 * parsed.versions.len());
        out.push(b'{');
        let mut minify = Minifier::default();
        let (mut dists, mut dropped, mut unverified) = (Vec::new(), Vec::new(), Vec::new());
        for (k, raw) in &parsed.top {
            if k == "packages" || k == "minified" {
                continue;
            }
            write_key(&mut out, k);
            out.extend_from_slice(raw.get().as_bytes());
            out.push(b',');
        }
        write_key(&mut out, "minified");
        write_json(&mut out, &Value::from(MINIFIED));
        out.push(b',');
        write_key(&mut out, "packages");
        out.push(b'{');
        write_key(&mut out, package);
        out.push(b'[');
        let mut first = true;
        for (i, v) in parsed.expanded(package).enumerate() {
            let mut v = v?;
            let version = version_of(&v).to_string();
            if version.is_empty() {
                dropped.push(format!("entry {i}: no `version`"));
                continue;
            }
            if served.is_some_and(|s| !s.contains(&version)) {
                continue;
            }
            match self.dist(package, &version, v.get("dist"), &base) {
                Dist::Served(entry, url) => {
                    dists.push(entry);
                    if let Some(Value::Object(d)) = v.get_mut("dist") {
                        d.insert("url".into(), url.into());
                        d.remove("mirrors");
                    }
                }
                Dist::Dropped(why) => {
                    dropped.push(format!("{version}: {why}"));
                    continue;
                }
                Dist::Unverified => {
                    unverified.push(version);
                    continue;
                }
            }
            v.remove("source");
            v.remove("notification-url");
            if !first {
                out.push(b',');
            }
            first = false;
            write_json(&mut out, &Value::Object(minify.next(v)));
        }
        let mut kept = Vec::new();
        for r in retained {
            if served.is_some_and(|s| !s.contains(&r.version))
                || dists
                    .iter()
                    .any(|d| d.path.as_str() == r.entry.path.as_str())
            {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            write_json(&mut out, &Value::Object(minify.next(r.meta.clone())));
            kept.extend(r.digest().cloned());
            dists.push(r.entry.clone());
        }
        out.extend_from_slice(b"]}}");
        Ok(Rewritten {
            body: out,
            dists,
            dropped,
            unverified,
            retained: kept,
        })
    }

    /// The entry of one version's dist, if the mirror serves it.
    fn dist(
        &self,
        package: &str,
        version: &str,
        dist: Option<&Value>,
        base: &reqwest::Url,
    ) -> Dist {
        let Some(dist) = dist.and_then(|d| d.as_object()) else {
            return Dist::Dropped("no dist (a mirror cannot serve `source`)".into());
        };
        let s = |k: &str| dist.get(k).and_then(|v| v.as_str());
        let Some(url) = s("url")
            .and_then(|u| base.join(u).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
        else {
            return Dist::Dropped("its dist has no http(s) URL".into());
        };
        let Some(ext) = extension(&url, s("type")) else {
            return Dist::Dropped(format!("dist type {:?} is not a file", s("type")));
        };
        let Some(dir) = version_dir(version) else {
            return Dist::Dropped("the version is not a usable directory name".into());
        };
        let shasum = s("shasum").unwrap_or_default();
        let digest = match shasum {
            "" => None,
            hex => match Digest::from_hex(Algo::Sha1, hex) {
                Ok(d) => Some(d),
                Err(e) => return Dist::Dropped(format!("shasum: {e}")),
            },
        };
        let stem = digest.as_ref().map_or("dist".to_string(), |d| d.hex());
        let file = format!("{}.{ext}", file_stem(s("reference"), &stem));
        let rel = format!("{DISTS}/{package}/{dir}/{file}");
        let Ok(path) = RelPath::new(rel.clone()) else {
            return Dist::Dropped(format!("unusable dist path {rel:?}"));
        };
        let body = match digest {
            Some(digest) => Body::Remote {
                url: url.to_string(),
                size: None,
                digest,
            },
            None => match self.unverified_dist(url.as_str()) {
                Some(body) => body,
                None => return Dist::Unverified,
            },
        };
        let entry = Entry {
            path,
            mtime: None,
            body,
        };
        Dist::Served(entry, format!("{}/{rel}", self.public_url))
    }
}

/// Appends `"key":` (escaped).
fn write_key(out: &mut Vec<u8>, k: &str) {
    write_json(out, &Value::from(k));
    out.push(b':');
}

fn write_json(out: &mut Vec<u8>, v: &Value) {
    serde_json::to_writer(&mut *out, v).expect("a value serializes into a Vec");
}
