//! Packuments read as raw JSON and written back the same way: a member is
//! its key and the unparsed slice of its value, and only what the mirror
//! changes (`versions`, each `dist`, `dist-tags`) is opened. A packument
//! can be tens of MiB (every version's metadata, readmes included): no
//! generic JSON tree of it is ever built, and everything the mirror does
//! not change reaches clients exactly as upstream wrote it.
//!
//! Of a key that appears twice in one object the last is kept (as JSON
//! parsers commonly do).
//!
//! Under `retain = "additive"` the versions of the packument served last
//! generation that upstream no longer lists join upstream's before the
//! policy applies (`retain.rs`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::retain::{Old, Served};
use super::{ABBREVIATED_FIELDS, Npm, dist_digest};
use crate::catalog::{Body, Entry};
use crate::digest::Digest;
use crate::keys::Glob;
use crate::path::{RelPath, check_name};
use crate::policy::{Scheme, UnitPolicy};

/// A string borrowed from the document where it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON object's members in order, values unparsed.
pub(super) struct Members<'a>(pub(super) Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Members<'de>, M::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(0));
                while let Some((Str(k), raw)) = m.next_entry::<Str<'de>, &'de RawValue>()? {
                    v.push((k, raw));
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Members<'a> {
    /// The object in `raw`, if it is one, duplicates removed.
    pub(super) fn of(raw: &'a RawValue) -> Option<Members<'a>> {
        serde_json::from_str::<Members<'a>>(raw.get())
            .ok()
            .map(Members::dedup)
    }

    /// Keeps the last of each key, in the order of the kept ones.
    pub(super) fn dedup(mut self) -> Members<'a> {
        if self.0.len() < 2 {
            return self;
        }
        let mut seen = HashSet::with_capacity(self.0.len());
        let mut keep = vec![false; self.0.len()];
        for (i, (k, _)) in self.0.iter().enumerate().rev() {
            keep[i] = seen.insert(k.as_ref());
        }
        drop(seen);
        let mut keep = keep.into_iter();
        self.0.retain(|_| keep.next().unwrap_or(true));
        self
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// The string in `raw`, if it is one.
pub(super) fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Str>(raw.get()).ok().map(|s| s.0)
}

/// Appends `"key":` (escaped).
fn key(out: &mut Vec<u8>, k: &str) {
    serde_json::to_writer(&mut *out, k).expect("a string serializes into a Vec");
    out.push(b':');
}

/// Appends `{` members `}`, each written by `member` (which returns false
/// to leave one out).
fn object<T>(
    out: &mut Vec<u8>,
    members: impl IntoIterator<Item = T>,
    mut member: impl FnMut(&mut Vec<u8>, T) -> bool,
) {
    out.push(b'{');
    let mut first = true;
    for m in members {
        let mark = out.len();
        if !first {
            out.push(b',');
        }
        if member(out, m) {
            first = false;
        } else {
            out.truncate(mark);
        }
    }
    out.push(b'}');
}

/// A version the mirror serves: its metadata and its tarball's new URL.
pub(super) struct Kept<'a> {
    pub(super) version: &'a str,
    pub(super) meta: Members<'a>,
    pub(super) tarball: String,
}

/// The `.tgz` file a tarball URL names (its last path segment), if it is
/// one the tree can hold.
pub(super) fn tarball_file(tarball: &reqwest::Url) -> Option<String> {
    tarball
        .path_segments()
        .and_then(|mut s| s.next_back())
        .map(str::to_string)
        .filter(|f| f.ends_with(".tgz") && check_name(f).is_ok() && !f.starts_with('.'))
}

/// A rewritten packument: both documents served, the tarballs, why
/// versions were left out, how many the policy hides, and what was
/// retained.
pub struct Rewritten {
    pub full: Vec<u8>,
    pub abbreviated: Vec<u8>,
    pub entries: Vec<Entry>,
    pub dropped: Vec<String>,
    pub hidden: usize,
    /// The tarball digests of the versions served although upstream
    /// removed them (`retain = "additive"`), one per version.
    pub retained: Vec<Digest>,
}

impl Npm {
    /// Rewrites a packument: tarballs point at the mirror, versions without
    /// a usable digest are dropped (and dist-tags naming them), and the
    /// install document is derived. The policy hides versions as of `now`
    /// (their publish time is the packument's `time` entry).
    pub fn rewrite(
        &self,
        name: &str,
        doc_url: &str,
        body: &[u8],
        now: u64,
    ) -> Result<Rewritten, String> {
        self.rewrite_retaining(name, doc_url, body, None, now)
    }

    /// [`Npm::rewrite`] for `retain = "additive"`: the versions `last`
    /// (the packument served last generation) listed that upstream's no longer does
    /// are served too while their tarballs are cached, as they were served,
    /// if the policy lets them through as it would upstream's (a blocked
    /// version never is; retained versions count towards `keep_latest`).
    /// A retained version's `time` entry is upstream's where it kept one,
    /// else the one served; upstream's dist-tags are kept as for any
    /// version, so a tag names a retained version only if upstream's does
    /// or `latest` moves to it.
    pub fn rewrite_retaining(
        &self,
        name: &str,
        doc_url: &str,
        body: &[u8],
        last: Option<Served>,
        now: u64,
    ) -> Result<Rewritten, String> {
        let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
        let top = serde_json::from_str::<Members>(text)
            .map_err(|e| format!("not a JSON object ({e})"))?
            .dedup();
        if top.get("name").and_then(string).as_deref() != Some(name) {
            return Err(format!("is not the packument of {name:?}"));
        }
        let base = reqwest::Url::parse(doc_url).map_err(|e| e.to_string())?;
        let versions = top
            .get("versions")
            .and_then(Members::of)
            .ok_or("has no `versions` object")?;
        let mut entries = Vec::with_capacity(versions.0.len());
        let mut dropped = Vec::new();
        let mut kept: Vec<Kept> = Vec::with_capacity(versions.0.len());
        for (vers, raw) in &versions.0 {
            let Some((meta, dist)) = Members::of(raw).and_then(|m| {
                let dist = m.get("dist")?;
                Some((m, dist))
            }) else {
                dropped.push(format!("{vers}: no dist"));
                continue;
            };
            // A dist is small: read it whole.
            let dist: serde_json::Value = serde_json::from_str(dist.get()).unwrap_or_default();
            let digest = dist_digest(&dist);
            let tarball = dist
                .get("tarball")
                .and_then(|t| t.as_str())
                .and_then(|t| base.join(t).ok());
            let (Some(digest), Some(tarball)) = (digest, tarball) else {
                dropped.push(format!("{vers}: no usable integrity, shasum or tarball"));
                continue;
            };
            let Some(file) = tarball_file(&tarball) else {
                dropped.push(format!("{vers}: tarball URL {tarball} names no .tgz file"));
                continue;
            };
            let Ok(path) = RelPath::new(format!("{name}/-/{file}")) else {
                dropped.push(format!("{vers}: unusable tarball name {file:?}"));
                continue;
            };
            entries.push((
                vers.as_ref(),
                Entry {
                    path,
                    mtime: None,
                    body: Body::Remote {
                        url: tarball.to_string(),
                        size: None,
                        digest,
                    },
                },
            ));
            kept.push(Kept {
                version: vers,
                meta,
                tarball: format!("{}/{name}/-/{file}", self.public_url),
            });
        }
        let old = last.and_then(|s| Some((Old::parse(name, s.packument)?, s.src)));
        let removed = old
            .as_ref()
            .map(|(o, src)| o.removed(name, &versions, *src, &self.public_url))
            .unwrap_or_default();
        // A tarball path upstream's versions now use is theirs.
        let removed: Vec<_> = removed
            .into_iter()
            .filter(|(_, e)| {
                !entries
                    .iter()
                    .any(|(_, u)| u.path.as_str() == e.path.as_str())
            })
            .collect();
        let candidates: HashSet<&str> = removed.iter().map(|(k, _)| k.version).collect();
        for (k, e) in removed {
            entries.push((k.version, e));
            kept.push(k);
        }
        let times = top.get("time").and_then(Members::of);
        // A retained version's time: upstream's if it kept one, else the one served.
        let time_of = |v: &str| {
            let upstream = times.as_ref().and_then(|t| t.get(v));
            upstream.or_else(|| {
                candidates
                    .contains(v)
                    .then(|| old.as_ref()?.0.time(v))
                    .flatten()
            })
        };
        let published = |v: &str| {
            let t = string(time_of(v)?)?;
            crate::timestamp::parse_rfc3339(&t).map(|t| t.max(0) as u64)
        };
        let selected = self.policy.unit(name).select(
            Scheme::Semver,
            kept.iter().map(|k| (k.version, published(k.version))),
            now,
        );
        let tags = top.get("dist-tags").and_then(Members::of);
        let selected = match &self.dist_tags {
            Some(globs) => tagged(globs, tags.as_ref(), selected),
            None => selected,
        };
        let hidden = kept.len() - selected.len();
        kept.retain(|k| selected.contains(k.version));
        let retained_versions: Vec<&str> = kept
            .iter()
            .map(|k| k.version)
            .filter(|v| candidates.contains(v))
            .collect();
        let retained: Vec<Digest> = entries
            .iter()
            .filter(|(v, _)| retained_versions.contains(v))
            .filter_map(|(_, e)| match &e.body {
                Body::Remote { digest, .. } => Some(digest.clone()),
                _ => None,
            })
            .collect();
        if !retained.is_empty() {
            tracing::info!(
                package = name,
                versions = retained.len(),
                "retain: keeping versions removed upstream whose tarballs are cached"
            );
        }
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|(v, _)| selected.contains(v))
            .map(|(_, e)| e)
            .collect();
        let served: HashSet<&str> = kept.iter().map(|k| k.version).collect();
        let latest = tags
            .as_ref()
            .and_then(|t| t.get("latest"))
            .and_then(string)
            .filter(|t| !served.contains(t.as_ref()))
            .and_then(|t| moved_latest(&served, &t));
        let write_tags = |out: &mut Vec<u8>, tags: &Members| {
            object(out, &tags.0, |out, (tag, v)| {
                if !self
                    .dist_tags
                    .as_ref()
                    .is_none_or(|g| g.iter().any(|g| g.matches(tag)))
                {
                    false
                } else if string(v).is_some_and(|v| served.contains(&*v)) {
                    key(out, tag);
                    out.extend_from_slice(v.get().as_bytes());
                    true
                } else if let Some(to) = latest.filter(|_| tag == "latest") {
                    key(out, tag);
                    serde_json::to_writer(&mut *out, to).expect("a string serializes into a Vec");
                    true
                } else {
                    false
                }
            })
        };
        // `time` loses the versions not served (it keeps `created`,
        // `modified`), a version served last generation included; a
        // retained version upstream's `time` no longer dates keeps the one
        // it was served with.
        let was_listed = |k: &str| {
            versions.get(k).is_some()
                || old
                    .as_ref()
                    .is_some_and(|(o, _)| o.versions.get(k).is_some())
        };
        let write_times = |out: &mut Vec<u8>, times: &Members| {
            let upstream = times.0.iter().map(|(k, v)| (k.as_ref(), *v));
            let carried = retained_versions
                .iter()
                .filter(|v| times.get(v).is_none())
                .filter_map(|v| Some((*v, time_of(v)?)));
            object(out, upstream.chain(carried), |out, (k, v)| {
                let keep = served.contains(k) || !was_listed(k);
                if keep {
                    key(out, k);
                    out.extend_from_slice(v.get().as_bytes());
                }
                keep
            })
        };
        let write_version = |out: &mut Vec<u8>, k: &Kept, all: bool| {
            let scripts = k.meta.get("scripts").and_then(Members::of);
            let installs = ["preinstall", "install", "postinstall"]
                .iter()
                .any(|s| scripts.as_ref().is_some_and(|sc| sc.get(s).is_some()));
            let flag = installs && k.meta.get("hasInstallScript").is_none();
            let extra = (!all && flag).then_some(("hasInstallScript", None));
            let members = k.meta.0.iter().map(|(f, v)| (f.as_ref(), Some(*v)));
            object(out, members.chain(extra), |out, (field, v)| {
                if !all && !ABBREVIATED_FIELDS.contains(&field) && field != "hasInstallScript" {
                    return false;
                }
                key(out, field);
                match (field, v) {
                    ("dist", Some(v)) => write_dist(out, v, &k.tarball),
                    (_, Some(v)) => out.extend_from_slice(v.get().as_bytes()),
                    (_, None) => out.extend_from_slice(b"true"),
                }
                true
            })
        };
        let write_versions = |out: &mut Vec<u8>, all: bool| {
            object(out, &kept, |out, k| {
                key(out, k.version);
                write_version(out, k, all);
                true
            })
        };
        let mut full = Vec::with_capacity(body.len() + 64 * kept.len());
        object(&mut full, &top.0, |out, (k, v)| {
            key(out, k);
            match (k.as_ref(), &tags) {
                ("versions", _) => write_versions(out, true),
                ("dist-tags", Some(tags)) => write_tags(out, tags),
                ("time", _) if times.is_some() => {
                    write_times(out, times.as_ref().expect("checked"))
                }
                _ => out.extend_from_slice(v.get().as_bytes()),
            }
            true
        });
        // npm's install document: per version only what installing needs.
        let mut abbreviated = Vec::with_capacity(body.len() / 2);
        let modified = times.as_ref().and_then(|t| t.get("modified"));
        let parts = ["name", "dist-tags", "modified", "versions"];
        object(&mut abbreviated, parts, |out, part| {
            match (part, &tags, modified) {
                ("name", ..) => {
                    key(out, "name");
                    out.extend_from_slice(top.get("name").map_or("null", |v| v.get()).as_bytes());
                }
                ("dist-tags", Some(tags), _) => {
                    key(out, "dist-tags");
                    write_tags(out, tags);
                }
                ("modified", _, Some(m)) => {
                    key(out, "modified");
                    out.extend_from_slice(m.get().as_bytes());
                }
                ("versions", ..) => {
                    key(out, "versions");
                    write_versions(out, false);
                }
                _ => return false,
            }
            true
        });
        Ok(Rewritten {
            full,
            abbreviated,
            entries,
            dropped,
            hidden,
            retained,
        })
    }
}

/// `dist_tags`: of the versions the policy `selected`, those a tag `globs`
/// match names, where `latest` names the version it moves to if its own
/// is not selected.
fn tagged<'v>(
    globs: &[Glob],
    tags: Option<&Members>,
    selected: HashSet<&'v str>,
) -> HashSet<&'v str> {
    let mut keep = HashSet::new();
    for (tag, v) in tags.map_or(&[][..], |t| &t.0[..]) {
        if !globs.iter().any(|g| g.matches(tag)) {
            continue;
        }
        let Some(v) = string(v) else { continue };
        match selected.get(v.as_ref()) {
            Some(v) => {
                keep.insert(*v);
            }
            None if tag.as_ref() == "latest" => keep.extend(moved_latest(&selected, &v)),
            None => {}
        }
    }
    keep
}

/// Where `latest` moves when the version it names is not served: the newest
/// served version not above it, a release if one is left.
fn moved_latest<'v>(served: &HashSet<&'v str>, target: &str) -> Option<&'v str> {
    let below: Vec<&str> = served
        .iter()
        .copied()
        .filter(|v| Scheme::Semver.cmp(v, target).is_le())
        .collect();
    UnitPolicy::newest_release(Scheme::Semver, below)
}

/// Writes a version's `dist` with `tarball` replaced.
fn write_dist(out: &mut Vec<u8>, raw: &RawValue, tarball: &str) {
    let Some(dist) = Members::of(raw) else {
        out.extend_from_slice(raw.get().as_bytes());
        return;
    };
    object(out, &dist.0, |out, (k, v)| {
        key(out, k);
        if k == "tarball" {
            serde_json::to_writer(&mut *out, tarball).expect("a string serializes into a Vec");
        } else {
            out.extend_from_slice(v.get().as_bytes());
        }
        true
    });
}
