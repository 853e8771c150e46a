//! One subdir's sync: its documents from upstream, each record checked and
//! filtered, and the tree's entries, with every served document agreeing
//! with the records the tree lists.

use std::collections::{HashMap, HashSet};

use reqwest::Url;
use serde_json::Value;

use super::repodata::{self, Kind, Repodata};
use super::shards::{self, Index};
use super::{Conda, Filter, zstd};
use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::fetch::DocHold;
use crate::layout::{Doc, DocSource, SyncError, UnitOutput, get_optional};
use crate::path::RelPath;

/// Malformed records logged one by one before a summary takes over.
const WARN_EACH: usize = 10;

use crate::layout::bad_metadata as bad;

/// `doc` without its share of the document budget.
fn released(mut doc: Doc) -> Doc {
    doc.hold = DocHold::default();
    doc
}

/// How a document upstream sent is served unchanged.
fn served(doc: &Doc) -> Body {
    match &doc.stored {
        Some(digest) => Body::Stored {
            digest: digest.clone(),
            size: doc.body.len() as u64,
        },
        None => Body::Inline(doc.body.clone()),
    }
}

/// A URL in a document (`base_url`, `shards_base_url`), resolved against
/// the subdir's URL; missing or empty means the subdir itself.
fn resolve(subdir: &Url, rel: Option<&str>) -> Result<Url, String> {
    let rel = match rel {
        None | Some("") => return Ok(subdir.clone()),
        Some(r) => r,
    };
    let mut u = subdir.join(rel).map_err(|e| format!("{rel:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{rel:?} is not an http(s) base URL"));
    }
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(u)
}

/// A name or filename as a log line may show it.
fn shown(s: &str) -> String {
    let mut t: String = s.escape_debug().take(120).collect();
    if t.len() < s.escape_debug().count() {
        t.push('…');
    }
    t
}

/// Where repodata.json came from.
enum Main {
    /// repodata.json.zst, decompressed.
    Zst(Doc),
    Plain(Doc),
}

/// Everything one subdir's build needs, owned (it runs on a blocking thread).
struct Plan {
    prefix: String,
    subdir: String,
    /// The subdir's upstream URL (ends with `/`).
    url: Url,
    filter: Filter,
    now: u64,
    max_document: u64,
}

/// The records of repodata.json as this sync serves them.
struct Kept<'d> {
    doc: &'d Repodata<'d>,
    keep: Vec<bool>,
    /// Kept records by package name (indices into `doc.records`).
    by_name: HashMap<String, Vec<usize>>,
    /// Names of which some record is not served (hidden or malformed).
    lost: HashSet<String>,
}

impl Conda {
    pub(super) async fn sync_subdir(
        &self,
        unit: &str,
        src: &dyn DocSource,
        now: u64,
        full: bool,
    ) -> Result<Option<UnitOutput>, SyncError> {
        let prefix = format!("{unit}/");
        // A unit must not wait for the document budget while it holds a
        // share (two units could wait for each other): the shard index and
        // current_repodata.json come first and give their shares back at
        // once (their bytes are a fraction of repodata.json's), then
        // repodata.json, which keeps its share through the build.
        let current = get_optional(src, format!("{prefix}current_repodata.json"))
            .await?
            .map(released);
        let index = get_optional(src, format!("{prefix}repodata_shards.msgpack.zst"))
            .await?
            .map(released);
        let main = match get_optional(src, format!("{prefix}repodata.json.zst")).await? {
            Some(d) => Main::Zst(d),
            None => match get_optional(src, format!("{prefix}repodata.json")).await? {
                Some(d) => Main::Plain(d),
                None => return Ok(None),
            },
        };
        let main_unchanged = match &main {
            Main::Zst(d) | Main::Plain(d) => d.unchanged,
        };
        let unchanged = main_unchanged
            && current.as_ref().is_none_or(|d| d.unchanged)
            && index.as_ref().is_none_or(|d| d.unchanged);
        if unchanged && !full && self.opts.filter.policy.cooldown.is_none() {
            return Ok(Some(UnitOutput {
                entries: Vec::new(),
                rejected: 0,
                unchanged: true,
            }));
        }
        let url = self
            .base
            .join(&prefix)
            .map_err(|e| bad(&prefix, format!("not a path under the upstream: {e}")))?;
        let plan = Plan {
            subdir: unit.rsplit('/').next().unwrap_or(unit).to_string(),
            prefix,
            url,
            filter: self.opts.filter.clone(),
            now,
            max_document: self.max_document,
        };
        tokio::task::spawn_blocking(move || plan.build(main, current, index))
            .await
            .map_err(|e| bad(unit, format!("sync task failed: {e}")))?
            .map(Some)
    }
}

impl Plan {
    fn entry(&self, rel: &str, body: Body, mtime: Option<u32>) -> Result<Entry, String> {
        RelPath::new(format!("{}{rel}", self.prefix))
            .map(|path| Entry { path, mtime, body })
            .map_err(|e| e.to_string())
    }

    fn doc_entry(&self, rel: &str, body: Body) -> Entry {
        self.entry(rel, body, None)
            .expect("channels are checked to leave room for the subdir's documents")
    }

    fn build(self, main: Main, current: Option<Doc>, index: Option<Doc>) -> Result<UnitOutput, SyncError> {
        let (doc_url, json) = match &main {
            Main::Zst(d) => (
                d.url.clone(),
                zstd::decode(&d.body, self.max_document).map_err(|e| bad(&d.url, e))?,
            ),
            Main::Plain(d) => (d.url.clone(), Vec::new()),
        };
        let bytes = match &main {
            Main::Zst(_) => &json[..],
            Main::Plain(d) => &d.body[..],
        };
        let doc = Repodata::parse(bytes).map_err(|e| bad(&doc_url, e))?;
        let mut info = doc.info().map_err(|e| bad(&doc_url, e))?;
        if let Some(s) = info.get("subdir").and_then(Value::as_str).filter(|s| *s != self.subdir) {
            return Err(bad(&doc_url, format!("info.subdir is {s:?}, not {:?}", self.subdir)));
        }
        let base = info.get("base_url").and_then(Value::as_str);
        let packages_at = resolve(&self.url, base).map_err(|e| bad(&doc_url, format!("info.base_url: {e}")))?;
        // Packages are served beside repodata.json: a base_url elsewhere goes.
        let new_info = (packages_at != self.url).then(|| {
            info.remove("base_url");
            serde_json::to_string(&info).expect("JSON values serialize")
        });
        let mut rejected = 0;
        let (kept, mut entries) = self.classify(&doc, &doc_url, &packages_at, &mut rejected);
        let whole = kept.keep.iter().all(|k| *k) && new_info.is_none();
        let rendered = (!whole).then(|| doc.render(&|i| kept.keep[i], new_info.as_deref()));
        if let Some(c) = &current {
            match self.current(c, &kept) {
                Ok(body) => entries.push(self.doc_entry("current_repodata.json", body)),
                Err(e) => {
                    tracing::warn!("{}: leaving it out: {e}", c.url);
                    rejected += 1;
                }
            }
        }
        if let Some(i) = &index {
            match self.shards(i, &kept, &mut rejected) {
                Ok(mut e) => entries.append(&mut e),
                Err(e) => {
                    tracing::warn!("{}: leaving the shard index out: {e}", i.url);
                    rejected += 1;
                }
            }
        }
        drop(kept);
        drop(doc);
        let (json_body, zst_body) = match (rendered, main) {
            (None, Main::Plain(d)) => (served(&d), None),
            (None, Main::Zst(d)) => (Body::Inline(json), Some(served(&d))),
            (Some(r), Main::Plain(_)) => (Body::Inline(r), None),
            (Some(r), Main::Zst(_)) => {
                let z = zstd::encode(&r);
                (Body::Inline(r), Some(Body::Inline(z)))
            }
        };
        entries.push(self.doc_entry("repodata.json", json_body));
        if let Some(z) = zst_body {
            entries.push(self.doc_entry("repodata.json.zst", z));
        }
        Ok(UnitOutput {
            entries,
            rejected,
            unchanged: false,
        })
    }

    /// Checks and filters every record; the package entries.
    fn classify<'d>(
        &self,
        doc: &'d Repodata<'d>,
        url: &str,
        packages_at: &Url,
        rejected: &mut usize,
    ) -> (Kept<'d>, Vec<Entry>) {
        let mut kept = Kept {
            doc,
            keep: vec![false; doc.records.len()],
            by_name: HashMap::new(),
            lost: HashSet::new(),
        };
        // Records that passed the checks and the name filter, in listing
        // order, with their versions and timestamps by package name.
        let mut passed: Vec<(usize, repodata::Record, Entry)> = Vec::new();
        let mut skipped = 0;
        for (i, r) in doc.records.iter().enumerate() {
            let checked = if doc.duplicates.contains(&r.filename) {
                Err("listed more than once".to_string())
            } else {
                repodata::check(r, &self.subdir)
            };
            let rec = checked.and_then(|rec| {
                let e = self.entry(
                    &r.filename,
                    Body::Remote {
                        url: format!("{packages_at}{}", r.filename),
                        size: rec.size,
                        digest: rec.sha256.clone(),
                    },
                    rec.timestamp.and_then(|t| u32::try_from(t).ok()),
                )?;
                Ok((rec, e))
            });
            match rec {
                Ok((rec, e)) if self.filter.allows(&rec.name) => passed.push((i, rec, e)),
                Ok(_) => {}
                Err(why) => {
                    skipped += 1;
                    if skipped <= WARN_EACH {
                        tracing::warn!("{url}: skipping {}: {why}", shown(&r.filename));
                    }
                    if let Some(n) = record_name(r) {
                        kept.lost.insert(n);
                    }
                }
            }
        }
        let serve: Vec<bool> = {
            let mut versions: HashMap<&str, Vec<(&str, Option<u64>)>> = HashMap::new();
            for (_, rec, _) in &passed {
                versions.entry(&rec.name).or_default().push((&rec.version, rec.timestamp));
            }
            let served: HashMap<&str, HashSet<&str>> = versions
                .into_iter()
                .map(|(name, vs)| (name, self.filter.served(name, vs, self.now)))
                .collect();
            passed
                .iter()
                .map(|(_, rec, _)| served[rec.name.as_str()].contains(rec.version.as_str()))
                .collect()
        };
        let mut entries = Vec::new();
        let mut undated = 0;
        for ((i, rec, e), serve) in passed.into_iter().zip(serve) {
            if !serve {
                if self.filter.policy.cooldown.is_some() && rec.timestamp.is_none() {
                    undated += 1;
                }
                tracing::debug!(file = %doc.records[i].filename, "hidden by the mirror's policy");
                kept.lost.insert(rec.name);
                continue;
            }
            kept.keep[i] = true;
            kept.by_name.entry(rec.name).or_default().push(i);
            entries.push(e);
        }
        if skipped > WARN_EACH {
            tracing::warn!("{url}: skipped {skipped} malformed packages in all");
        }
        if undated > 0 {
            tracing::warn!("{url}: the cooldown hides {undated} packages with no timestamp (their age is unknown)");
        }
        *rejected += skipped;
        (kept, entries)
    }

    /// current_repodata.json with only what repodata.json lists.
    fn current(&self, c: &Doc, kept: &Kept) -> Result<Body, String> {
        let cur = Repodata::parse(&c.body)?;
        let mut info = cur.info()?;
        if let Some(s) = info.get("subdir").and_then(Value::as_str).filter(|s| *s != self.subdir) {
            return Err(format!("info.subdir is {s:?}, not {:?}", self.subdir));
        }
        let at = resolve(&self.url, info.get("base_url").and_then(Value::as_str))
            .map_err(|e| format!("info.base_url: {e}"))?;
        let new_info = (at != self.url).then(|| {
            info.remove("base_url");
            serde_json::to_string(&info).expect("JSON values serialize")
        });
        let listed: HashSet<(Kind, &str)> = kept
            .doc
            .records
            .iter()
            .zip(&kept.keep)
            .filter(|(_, k)| **k)
            .map(|(r, _)| (r.kind, r.filename.as_str()))
            .collect();
        let keep: Vec<bool> = cur
            .records
            .iter()
            .map(|r| !cur.duplicates.contains(&r.filename) && listed.contains(&(r.kind, r.filename.as_str())))
            .collect();
        if keep.iter().all(|k| *k) && new_info.is_none() {
            return Ok(served(c));
        }
        Ok(Body::Inline(cur.render(&|i| keep[i], new_info.as_deref())))
    }

    /// The shard index as served and the shards it names.
    fn shards(&self, doc: &Doc, kept: &Kept, rejected: &mut usize) -> Result<Vec<Entry>, String> {
        let raw = zstd::decode(&doc.body, self.max_document)?;
        let index = Index::parse(&raw)?;
        if let Some(s) = index.info_str("subdir").filter(|s| *s != self.subdir) {
            return Err(format!("info.subdir is {s:?}, not {:?}", self.subdir));
        }
        let packages_at = resolve(&self.url, index.info_str("base_url")).map_err(|e| format!("info.base_url: {e}"))?;
        let own = self.url.join("shards/").expect("a relative path joins");
        let shards_at = resolve(&self.url, Some(index.info_str("shards_base_url").unwrap_or("./shards/")))
            .map_err(|e| format!("info.shards_base_url: {e}"))?;
        let mut set = Vec::new();
        if packages_at != self.url {
            set.push(("base_url", ""));
        }
        if shards_at != own {
            set.push(("shards_base_url", "./shards/"));
        }
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (name, _) in &index.shards {
            *count.entry(name).or_default() += 1;
        }
        let mut served_shards: Vec<(&str, [u8; 32])> = Vec::new();
        let mut paths = HashSet::new();
        let mut entries = Vec::new();
        let mut regenerate: Vec<&str> = Vec::new();
        let mut changed = !set.is_empty();
        let mut skipped = 0;
        for (name, hash) in &index.shards {
            let why = if !repodata::is_package_name(name) {
                Some("not a package name")
            } else if count[name] > 1 {
                Some("listed more than once")
            } else {
                hash.as_ref().err().copied()
            };
            if let Some(why) = why {
                skipped += 1;
                changed = true;
                if skipped <= WARN_EACH {
                    tracing::warn!("{}: skipping the shard of {}: {why}", doc.url, shown(name));
                }
                if kept.by_name.contains_key(*name) && !regenerate.contains(name) {
                    regenerate.push(name);
                }
                continue;
            }
            if !kept.by_name.contains_key(*name) {
                // Filtered, hidden whole, or not in repodata.json at all.
                changed = true;
                continue;
            }
            if kept.lost.contains(*name) {
                changed = true;
                regenerate.push(name);
                continue;
            }
            let hash = hash.expect("checked above");
            let hex = crate::digest::encode_hex(&hash);
            let body = Body::Remote {
                url: format!("{shards_at}{hex}.msgpack.zst"),
                size: None,
                digest: Digest::from_bytes(Algo::Sha256, &hash).expect("32 bytes"),
            };
            if paths.insert(hex.clone()) {
                entries.push(self.doc_entry(&format!("shards/{hex}.msgpack.zst"), body));
            }
            served_shards.push((name, hash));
        }
        if skipped > WARN_EACH {
            tracing::warn!("{}: skipped {skipped} malformed shard entries in all", doc.url);
        }
        *rejected += skipped;
        // Names repodata.json lists that the index lacks get a shard too.
        let listed: HashSet<&str> = index.shards.iter().map(|(n, _)| *n).collect();
        let mut missing: Vec<&str> = kept.by_name.keys().map(String::as_str).filter(|n| !listed.contains(n)).collect();
        missing.sort_unstable();
        changed |= !missing.is_empty();
        regenerate.extend(missing);
        if !changed {
            return Ok(entries_with(entries, self.doc_entry("repodata_shards.msgpack.zst", served(doc))));
        }
        let removed = kept.doc.removed();
        for name in regenerate {
            let records: Vec<_> = kept.by_name[name]
                .iter()
                .map(|&i| {
                    let r = &kept.doc.records[i];
                    (r.kind, r.filename.as_str(), r.raw)
                })
                .collect();
            let gone: Vec<&str> = removed
                .iter()
                .map(String::as_str)
                .filter(|f| repodata::name_of_filename(f) == Some(name))
                .collect();
            let z = zstd::encode(&shards::render_shard(&records, &gone)?);
            let digest = Digest::sha256_of(&z);
            let hash: [u8; 32] = digest.as_bytes().try_into().expect("sha256 is 32 bytes");
            if paths.insert(digest.hex()) {
                entries.push(self.doc_entry(&format!("shards/{}.msgpack.zst", digest.hex()), Body::Inline(z)));
            }
            served_shards.push((name, hash));
        }
        let z = zstd::encode(&index.render(&set, &served_shards));
        Ok(entries_with(entries, self.doc_entry("repodata_shards.msgpack.zst", Body::Inline(z))))
    }
}

fn entries_with(mut entries: Vec<Entry>, e: Entry) -> Vec<Entry> {
    entries.push(e);
    entries
}

/// The name a record belongs to, for a record that could not be checked:
/// its `name` if readable, else the one its filename carries.
fn record_name(r: &repodata::Listed) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Name {
        name: Option<String>,
    }
    serde_json::from_str::<Name>(r.raw.get())
        .ok()
        .and_then(|n| n.name)
        .or_else(|| repodata::name_of_filename(&r.filename).map(str::to_string))
        .filter(|n| repodata::is_package_name(n))
}
