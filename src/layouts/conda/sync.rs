//! One subdir's sync: its documents from upstream, each record checked and
//! filtered, and the tree's entries, with every served document agreeing
//! with the records the tree lists.

use std::collections::{HashMap, HashSet};

use reqwest::Url;
use serde_json::Value;

use super::repodata::{self, Kind, Listed, Repodata};
use super::retain::{self, Served};
use super::shards::{self, Index};
use super::{Conda, Filter, zstd};
use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::fetch::DocHold;
use crate::layout::{Doc, DocSource, SyncError, UnitOutput, get_optional};
use crate::path::RelPath;
use crate::policy::Retain;

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
    /// Names of which some record is not served (hidden or malformed), or
    /// that have retained records: their shards are written here.
    lost: HashSet<String>,
    /// Records of the repodata.json served last generation that upstream's
    /// no longer lists, served still (`retain = "additive"`).
    retained: Vec<&'d Listed<'d>>,
    /// Retained records by package name (indices into `retained`).
    retained_by_name: HashMap<String, Vec<usize>>,
    /// How many versions (name and version) only retained records give.
    retained_versions: usize,
    /// The retained records' sha256s.
    retained_artifacts: Vec<Digest>,
}

impl Kept<'_> {
    /// Whether any record of `name` is served.
    fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.retained_by_name.contains_key(name)
    }

    /// The served records of `name`, upstream's then retained ones.
    fn records_of(&self, name: &str) -> Vec<&Listed<'_>> {
        let own = self
            .by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| &self.doc.records[i]);
        let kept = self
            .retained_by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| self.retained[i]);
        own.chain(kept).collect()
    }
}

/// Where a record that passed the checks comes from.
#[derive(Clone, Copy)]
enum Origin {
    /// Upstream's repodata.json, at this index.
    Upstream(usize),
    /// The one served last generation, at this index (retained).
    Served(usize),
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
        // Under `retain = "additive"` an artifact retained here and evicted
        // since changes what is served: the mirror then asks again with
        // `full` (its record of what each unit retains survives a restart).
        let retain = self.opts.filter.policy.retain == Retain::Additive;
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
        let (ask, asked) = retain::line();
        let served = retain
            .then(|| src.previous_doc(&format!("{}repodata.json", plan.prefix)))
            .flatten()
            .map(|bytes| Served { bytes, ask });
        let build = tokio::task::spawn_blocking(move || plan.build(main, current, index, served));
        let (out, versions, artifacts) = retain::answer(src, asked, build)
            .await
            .map_err(|e| bad(unit, format!("sync task failed: {e}")))??;
        if retain {
            if versions > 0 {
                tracing::info!(
                    subdir = unit,
                    versions,
                    "retain: keeping packages removed upstream whose files are cached"
                );
            }
            src.retained(unit, versions, artifacts);
        }
        Ok(Some(out))
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

    /// The subdir's entries from upstream's documents (and, under `retain =
    /// "additive"`, the repodata.json served last generation), with the
    /// versions and artifacts retained.
    fn build(
        self,
        main: Main,
        current: Option<Doc>,
        index: Option<Doc>,
        last: Option<Served>,
    ) -> Result<(UnitOutput, usize, Vec<Digest>), SyncError> {
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
        if let Some(s) = info
            .get("subdir")
            .and_then(Value::as_str)
            .filter(|s| *s != self.subdir)
        {
            return Err(bad(
                &doc_url,
                format!("info.subdir is {s:?}, not {:?}", self.subdir),
            ));
        }
        let base = info.get("base_url").and_then(Value::as_str);
        let packages_at =
            resolve(&self.url, base).map_err(|e| bad(&doc_url, format!("info.base_url: {e}")))?;
        // Packages are served beside repodata.json: a base_url elsewhere goes.
        let new_info = (packages_at != self.url).then(|| {
            info.remove("base_url");
            serde_json::to_string(&info).expect("JSON values serialize")
        });
        let mut rejected = 0;
        let old = last
            .as_ref()
            .and_then(|s| Some((s.parse(&self.prefix)?, &s.ask)));
        let old = old.as_ref().map(|(o, ask)| (o, *ask));
        let (kept, mut entries) = self.classify(&doc, &doc_url, &packages_at, old, &mut rejected);
        let whole = kept.keep.iter().all(|k| *k) && new_info.is_none() && kept.retained.is_empty();
        let rendered = (!whole)
            .then(|| doc.render_adding(&|i| kept.keep[i], new_info.as_deref(), &kept.retained));
        let (retained_versions, retained_artifacts) =
            (kept.retained_versions, kept.retained_artifacts.clone());
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
        let out = UnitOutput {
            entries,
            rejected,
            unchanged: false,
        };
        Ok((out, retained_versions, retained_artifacts))
    }

    /// Checks and filters every record, and (given `old`, the repodata.json
    /// served last generation) the served records upstream no longer lists
    /// whose files are cached; the package entries.
    fn classify<'d>(
        &self,
        doc: &'d Repodata<'d>,
        url: &str,
        packages_at: &Url,
        old: Option<(&'d Repodata<'d>, &retain::Ask)>,
        rejected: &mut usize,
    ) -> (Kept<'d>, Vec<Entry>) {
        let mut kept = Kept {
            doc,
            keep: vec![false; doc.records.len()],
            by_name: HashMap::new(),
            lost: HashSet::new(),
            retained: Vec::new(),
            retained_by_name: HashMap::new(),
            retained_versions: 0,
            retained_artifacts: Vec::new(),
        };
        // Records that passed the checks and the name filter, in listing
        // order (then retained ones), with their versions and timestamps by
        // package name.
        let mut passed: Vec<(Origin, repodata::Record, Entry)> = Vec::new();
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
                Ok((rec, e)) if self.filter.allows(&rec.name) => {
                    passed.push((Origin::Upstream(i), rec, e))
                }
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
        if let Some((old, ask)) = old {
            // A filename upstream lists (well-formed or not) is upstream's.
            let listed: HashSet<&str> = doc.records.iter().map(|r| r.filename.as_str()).collect();
            let listed = |f: &str| listed.contains(f);
            let allows = |n: &str| self.filter.allows(n);
            for c in retain::removed(old, ask, &self.prefix, &self.subdir, &listed, &allows) {
                passed.push((Origin::Served(c.index), c.rec, c.entry));
            }
        }
        let policed =
            self.filter.policy.cooldown.is_some() || self.filter.policy.filters_versions();
        let serve: Vec<bool> = if !policed {
            // No version policy: every record that passed is served (a
            // channel's repodata.json has hundreds of thousands).
            vec![true; passed.len()]
        } else {
            let mut versions: HashMap<&str, Vec<(&str, Option<u64>)>> = HashMap::new();
            for (_, rec, _) in &passed {
                versions
                    .entry(&rec.name)
                    .or_default()
                    .push((&rec.version, rec.timestamp));
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
        let mut upstream_versions: HashSet<(String, String)> = HashSet::new();
        let mut retained_versions: HashSet<(String, String)> = HashSet::new();
        for ((origin, rec, e), serve) in passed.into_iter().zip(serve) {
            if !serve {
                let Origin::Upstream(i) = origin else {
                    tracing::debug!(file = %e.path.file_name(), "removed upstream and hidden by the mirror's policy: not retained");
                    continue;
                };
                if self.filter.policy.cooldown.is_some() && rec.timestamp.is_none() {
                    undated += 1;
                }
                tracing::debug!(file = %doc.records[i].filename, "hidden by the mirror's policy");
                kept.lost.insert(rec.name);
                continue;
            }
            match origin {
                Origin::Upstream(i) => {
                    kept.keep[i] = true;
                    upstream_versions.insert((rec.name.clone(), rec.version.clone()));
                    kept.by_name.entry(rec.name).or_default().push(i);
                }
                Origin::Served(j) => {
                    let old = old.expect("served records come from the served document").0;
                    kept.retained_by_name
                        .entry(rec.name.clone())
                        .or_default()
                        .push(kept.retained.len());
                    kept.retained.push(&old.records[j]);
                    kept.retained_artifacts.push(rec.sha256.clone());
                    kept.lost.insert(rec.name.clone());
                    retained_versions.insert((rec.name, rec.version));
                }
            }
            entries.push(e);
        }
        kept.retained_versions = retained_versions.difference(&upstream_versions).count();
        if skipped > WARN_EACH {
            tracing::warn!("{url}: skipped {skipped} malformed packages in all");
        }
        if undated > 0 {
            tracing::warn!(
                "{url}: the cooldown hides {undated} packages with no timestamp (their age is unknown)"
            );
        }
        *rejected += skipped;
        (kept, entries)
    }

    /// current_repodata.json with only what repodata.json lists.
    fn current(&self, c: &Doc, kept: &Kept) -> Result<Body, String> {
        let cur = Repodata::parse(&c.body)?;
        let mut info = cur.info()?;
        if let Some(s) = info
            .get("subdir")
            .and_then(Value::as_str)
            .filter(|s| *s != self.subdir)
        {
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
            .map(|r| {
                !cur.duplicates.contains(&r.filename)
                    && listed.contains(&(r.kind, r.filename.as_str()))
            })
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
        let packages_at = resolve(&self.url, index.info_str("base_url"))
            .map_err(|e| format!("info.base_url: {e}"))?;
        let own = self.url.join("shards/").expect("a relative path joins");
        let shards_at = resolve(
            &self.url,
            Some(index.info_str("shards_base_url").unwrap_or("./shards/")),
        )
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
                if kept.has(name) && !regenerate.contains(name) {
                    regenerate.push(name);
                }
                continue;
            }
            if !kept.has(name) {
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
            tracing::warn!(
                "{}: skipped {skipped} malformed shard entries in all",
                doc.url
            );
        }
        *rejected += skipped;
        // Names repodata.json lists that the index lacks get a shard too.
        let listed: HashSet<&str> = index.shards.iter().map(|(n, _)| *n).collect();
        let names = kept.by_name.keys().chain(kept.retained_by_name.keys());
        let mut missing: Vec<&str> = names
            .map(String::as_str)
            .filter(|n| !listed.contains(n))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        changed |= !missing.is_empty();
        regenerate.extend(missing);
        if !changed {
            return Ok(entries_with(
                entries,
                self.doc_entry("repodata_shards.msgpack.zst", served(doc)),
            ));
        }
        let removed = kept.doc.removed();
        for name in regenerate {
            let records: Vec<_> = kept
                .records_of(name)
                .into_iter()
                .map(|r| (r.kind, r.filename.as_str(), r.raw))
                .collect();
            // A retained file is listed, not removed.
            let gone: Vec<&str> = removed
                .iter()
                .map(String::as_str)
                .filter(|f| repodata::name_of_filename(f) == Some(name))
                .filter(|f| !kept.retained.iter().any(|r| r.filename == *f))
                .collect();
            let z = zstd::encode(&shards::render_shard(&records, &gone)?);
            let digest = Digest::sha256_of(&z);
            let hash: [u8; 32] = digest.as_bytes().try_into().expect("sha256 is 32 bytes");
            if paths.insert(digest.hex()) {
                entries.push(self.doc_entry(
                    &format!("shards/{}.msgpack.zst", digest.hex()),
                    Body::Inline(z),
                ));
            }
            served_shards.push((name, hash));
        }
        let z = zstd::encode(&index.render(&set, &served_shards));
        Ok(entries_with(
            entries,
            self.doc_entry("repodata_shards.msgpack.zst", Body::Inline(z)),
        ))
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
