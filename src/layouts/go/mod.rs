//! Go modules: the GOPROXY protocol, verified against the checksum database.
//!
//! ```text
//! <escaped module>/@v/list             upstream's version list, byte-identical
//! <escaped module>/@latest             where upstream has it
//! <escaped module>/@v/<v>.info         byte-identical
//! <escaped module>/@v/<v>.mod          byte-identical, checked against its `/go.mod h1:`
//! <escaped module>/@v/<v>.zip          fetched on first read, verified by its `h1:` hash
//! ```
//!
//! Module paths are case-encoded (`!a` for `A`) exactly as in proxy URLs,
//! so the tree is a GOPROXY as it stands. Units are a module (its list and
//! `@latest`) and a module version (its .info, .mod and .zip), both
//! materialized on lookup. The `h1:` hashes come from the checksum database
//! (its `lookup` endpoint, reached through the upstream proxy at
//! `sumdb/<name>/`) or from a go.sum file the configuration names; a
//! version neither vouches for is not served.
//!
//! With a checksum database, its endpoints are passed through too, so
//! clients with GOSUMDB on verify through the mirror: `sumdb/<name>/supported`,
//! `latest`, `lookup/…` and `tile/…`, each fetched on first lookup (tiles and
//! lookups never change; `latest` is refreshed by every sync). The go command
//! checks their signatures and proofs itself.
//!
//! Under a policy the module's `@v/list` is upstream's without the hidden
//! versions, and `@latest` names a served version (the newest one's
//! `.info`, when upstream's latest is hidden); a hidden version's `.info`,
//! `.mod` and `.zip` are not in the tree (a lookup finds nothing). A
//! cooldown dates each version by its `.info` `Time`, so a module's sync
//! then asks for the `.info` of every version it lists; a version whose
//! `.info` has no `Time` is of unknown age and hidden.
//!
//! With `retain = "additive"` a version upstream removed stays in
//! `@v/list` and its files in the tree while its zip is cached with the
//! `h1:` it was served with (`retain.rs`); it passes the policy as
//! upstream's versions do (dated by the `.info` it was served with).

pub mod modzip;
mod retain;

use std::collections::HashMap;

use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::keys::{Glob, Section};
use crate::layout::{
    Adapter, BoxFuture, Capabilities, Doc, DocError, DocSource, FileDigest, LayoutDef,
    MirrorContext, Selection, Sizes, SyncError, UnitOutput, get_optional, literal_seeds,
};
use crate::path::{RelPath, check_name};
use crate::policy::{Policy, Retain, Scheme};
use modzip::{escape, hash_mod, parse_h1, unescape};

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "go",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: Some("modules"),
        lazy: true,
        sizes: Sizes::Fetched,
        placeholders: true,
        signed: false,
        cooldown: true,
        versions: Some(Scheme::Semver),
        retain: crate::layout::RetainSupport::Yes,
    },
    configure: |ctx, keys| Ok(Box::new(Go::from_keys(ctx, keys)?)),
    // `h1:` hashes a module zip's files, not its bytes.
    file_digests: &[FileDigest {
        algo: Algo::GoH1,
        digest_file: modzip::hash_zip,
    }],
};

/// Where the `h1:` hashes come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Sums {
    /// The checksum database of this name, through `<upstream>/sumdb/<name>/`.
    Database(String),
    /// `module version[/go.mod] h1:…` lines, as go.sum holds them.
    File(HashMap<String, Digest>),
}

pub struct Go {
    filter: Option<Vec<Glob>>,
    sums: Sums,
    /// The first upstream base URL (ends with `/`).
    base: String,
    policy: Policy,
}

/// An `.info` document's `Version` and `Time`.
fn parse_info(body: &[u8]) -> (Option<String>, Option<u64>) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str());
    let time = s("Time")
        .and_then(crate::timestamp::parse_rfc3339)
        .map(|t| t.max(0) as u64);
    (s("Version").map(str::to_string), time)
}

/// A module version as proxies spell it.
fn is_version(v: &str) -> bool {
    v.starts_with('v')
        && v.len() <= 128
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'!'))
}

/// A module path (unescaped): a host-like first element, then path elements.
pub fn is_module_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 512
        && p.contains('.')
        && p.split('/').all(|e| {
            !e.is_empty()
                && !e.starts_with('.')
                && !e.ends_with('.')
                && e.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'~'))
        })
}

/// Reads go.sum lines into `"module version" -> h1` (and `".../go.mod"`).
pub fn parse_go_sum(text: &str) -> Result<HashMap<String, Digest>, String> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [module, version, hash] = parts.as_slice() else {
            return Err(format!("line {}: expected `module version h1:hash`", i + 1));
        };
        let d = parse_h1(hash).ok_or_else(|| format!("line {}: not an h1: hash", i + 1))?;
        out.insert(format!("{module} {version}"), d);
    }
    Ok(out)
}

/// `checksum_db = "NAME[+KEY] [URL]"` (as GOSUMDB) or `go_sum = "/path/go.sum"`.
fn parse_sums(keys: &mut Section) -> Result<Sums, String> {
    let db = keys.string("checksum_db")?;
    let file = keys.file_text("go_sum")?;
    match (db, file) {
        (Some(db), None) => {
            // GOSUMDB's form is `name[+key] [url]`: the name is what the proxy serves under sumdb/.
            let name = db.split(['+', ' ']).next().unwrap_or_default().to_string();
            if name.is_empty() || check_name(&name).is_err() || name.starts_with('.') {
                return Err(keys.error(
                    "checksum_db",
                    format!("\"{db}\" is not a checksum database name (as in GOSUMDB)"),
                ));
            }
            Ok(Sums::Database(name))
        }
        (None, Some((path, text))) => parse_go_sum(&text)
            .map(Sums::File)
            .map_err(|e| keys.error("go_sum", format!("\"{}\": {e}", path.display()))),
        (Some(_), Some(_)) => Err(format!(
            "{}: give either `checksum_db` or `go_sum`, not both",
            keys.label()
        )),
        (None, None) => Err(format!(
            "{}: missing key `checksum_db` (the checksum database the upstream proxy passes through, as in GOSUMDB) or `go_sum` (a go.sum file whose hashes to trust): a Go module mirror verifies every module against one",
            keys.label()
        )),
    }
}

/// The two hashes a checksum-database lookup answer gives for `module@version`.
fn parse_lookup(text: &str, module: &str, version: &str) -> (Option<Digest>, Option<Digest>) {
    let (mut zip, mut modf) = (None, None);
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let [m, v, h] = parts.as_slice() {
            if *m != module {
                continue;
            }
            if *v == version {
                zip = parse_h1(h);
            } else if v.strip_suffix("/go.mod") == Some(version) {
                modf = parse_h1(h);
            }
        }
    }
    (zip, modf)
}

impl Go {
    /// Reads `modules` (module paths or globs; none: lazy) and where the
    /// `h1:` hashes come from: `checksum_db` or `go_sum`, exactly one.
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Go, String> {
        Ok(Go {
            filter: keys.globs("modules")?,
            sums: parse_sums(keys)?,
            base: ctx.base(),
            policy: ctx.policy.clone(),
        })
    }

    fn allowed(&self, module: &str) -> bool {
        is_module_path(module)
            && !self.policy.unit(module).blocked()
            && self
                .filter
                .as_ref()
                .is_none_or(|globs| globs.iter().any(|g| g.matches(module)))
    }

    /// `sumdb/<name>` when a checksum database is configured.
    fn sumdb_dir(&self) -> Option<String> {
        match &self.sums {
            Sums::Database(name) => Some(format!("sumdb/{name}")),
            Sums::File(_) => None,
        }
    }

    /// Is `name` in `parent` (inside `sumdb/<name>/`) a file of the
    /// checksum database's protocol? `None`: not inside it at all.
    fn sumdb_file(&self, parent: &str, name: &str) -> Option<bool> {
        let db = self.sumdb_dir()?;
        let rest = if parent == db {
            ""
        } else {
            parent.strip_prefix(&db)?.strip_prefix('/')?
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        let file = match rest.split('/').next().unwrap_or("") {
            "" => matches!(name, "supported" | "latest"),
            "lookup" => name.contains('@'),
            // tile/<H>/<L or data>/[x<NNN>/…]<NNN>[.p/<W>]
            "tile" => rest.split('/').count() >= 3 && digits(name),
            _ => return None,
        };
        Some(file)
    }

    /// The module an escaped directory path names, if it may be mirrored.
    fn module_of(&self, escaped_dir: &str) -> Option<String> {
        let m = unescape(escaped_dir)?;
        (self.allowed(&m) && escaped_dir.split('/').all(|s| check_name(s).is_ok())).then_some(m)
    }

    /// [`get_optional`], but a 403 is absent too.
    async fn optional(&self, src: &dyn DocSource, path: String) -> Result<Option<Doc>, SyncError> {
        match get_optional(src, path).await {
            // Some module proxies answer 403 ("not available") where the
            // protocol says 404/410; the go command probes path prefixes of
            // every module, so treat it as absent rather than as a failure.
            Err(SyncError::Doc(DocError::Status { status: 403, url })) => {
                tracing::debug!(%url, "403 taken as not found");
                Ok(None)
            }
            other => other,
        }
    }

    /// The zip's and the go.mod's `h1:` for `module@version`.
    async fn sums_for(
        &self,
        src: &dyn DocSource,
        module: &str,
        version: &str,
    ) -> Result<(Option<Digest>, Option<Digest>), SyncError> {
        match &self.sums {
            Sums::File(map) => Ok((
                map.get(&format!("{module} {version}")).cloned(),
                map.get(&format!("{module} {version}/go.mod")).cloned(),
            )),
            Sums::Database(name) => {
                let esc = escape(module).unwrap_or_default();
                let path = format!("sumdb/{name}/lookup/{esc}@{version}");
                let Some(doc) = self.optional(src, path).await? else {
                    return Ok((None, None));
                };
                Ok(parse_lookup(
                    &String::from_utf8_lossy(&doc.body),
                    module,
                    version,
                ))
            }
        }
    }

    /// The versions the policy serves of upstream's `list` and (under
    /// `retain = "additive"`) of the versions the served list had that
    /// upstream's lacks and whose zips are cached, upstream's first.
    async fn served(
        &self,
        esc: &str,
        module: &str,
        list: &[u8],
        src: &dyn DocSource,
        now: u64,
    ) -> Result<Listing, SyncError> {
        let listed: Vec<String> = String::from_utf8_lossy(list)
            .split_whitespace()
            .filter(|v| is_version(v))
            .map(str::to_string)
            .collect();
        let removed = match self.policy.retain {
            Retain::Additive => retain::removed(src, esc, &listed),
            Retain::Mirror => Vec::new(),
        };
        let mut infos = HashMap::new();
        if self.policy.cooldown.is_some() {
            let docs = futures_util::future::join_all(
                listed
                    .iter()
                    .map(|v| self.optional(src, format!("{esc}/@v/{v}.info"))),
            )
            .await;
            for (v, doc) in listed.iter().zip(docs) {
                if let Some(doc) = doc? {
                    infos.insert(v.clone(), doc);
                }
            }
        }
        // A retained version is dated by the .info it was served with.
        let time = |v: &str| infos.get(v).and_then(|d| parse_info(&d.body).1);
        let candidates = listed
            .iter()
            .map(|v| (v.as_str(), time(v)))
            .chain(removed.iter().map(|(v, k)| (v.as_str(), k.time())));
        let selected = self
            .policy
            .unit(module)
            .select(Scheme::Semver, candidates, now);
        let kept = listed
            .iter()
            .chain(removed.iter().map(|(v, _)| v))
            .filter(|v| selected.contains(v.as_str()))
            .cloned()
            .collect();
        let retained = removed
            .iter()
            .filter(|(v, _)| selected.contains(v.as_str()))
            .cloned()
            .collect();
        Ok(Listing {
            kept,
            infos,
            retained,
        })
    }

    async fn module_unit(
        &self,
        esc: &str,
        module: &str,
        src: &dyn DocSource,
        now: u64,
    ) -> Result<Option<UnitOutput>, SyncError> {
        // The list and @latest together: a client waits for this unit
        // before its first file of the module, so asking one after the
        // other would cost it a round trip more than going to upstream
        // (B9: 4 rounds of upstream's latency against its 3). A name
        // upstream does not know costs two requests, answered together.
        let (list, latest) = futures_util::future::join(
            self.optional(src, format!("{esc}/@v/list")),
            self.optional(src, format!("{esc}/@latest")),
        )
        .await;
        let Some(list) = list? else {
            return Ok(None);
        };
        let latest = latest?;
        if self.policy == Policy::default() {
            let mut entries = vec![stored(format!("{esc}/@v/list"), list)?];
            if let Some(latest) = latest {
                entries.push(stored(format!("{esc}/@latest"), latest)?);
            }
            return Ok(Some(UnitOutput {
                entries,
                rejected: 0,
                unchanged: false,
            }));
        }
        let Listing {
            kept,
            mut infos,
            retained,
        } = self.served(esc, module, &list.body, src, now).await?;
        if !retained.is_empty() {
            tracing::info!(
                module,
                versions = retained.len(),
                "retain: keeping versions removed upstream whose zips are cached in @v/list"
            );
        }
        let path = |p: String| {
            RelPath::new(p).map_err(|e| SyncError::BadMetadata {
                url: list.url.clone(),
                what: format!("cannot be represented in the tree: {e}"),
            })
        };
        let text: String = kept.iter().map(|v| format!("{v}\n")).collect();
        let mut entries = vec![Entry {
            path: path(format!("{esc}/@v/list"))?,
            mtime: None,
            body: Body::Inline(text.into_bytes()),
        }];
        // @latest as upstream has it if it names a served version, else
        // the newest served version's .info (a retained version's as it
        // was served).
        let upstream_latest = latest.as_ref().and_then(|d| parse_info(&d.body).0);
        let dated = |d: &Doc| {
            let (v, t) = parse_info(&d.body);
            v.is_some_and(|v| {
                self.policy
                    .unit(module)
                    .hides(Scheme::Semver, &v, t, now)
                    .is_none()
            })
        };
        let unlisted = |v: &str| {
            !String::from_utf8_lossy(&list.body)
                .split_whitespace()
                .any(|l| l == v)
        };
        let served_latest = match (latest, upstream_latest) {
            (Some(d), Some(v)) if kept.contains(&v) => Some(d.body),
            // A latest not in the list (a pseudo-version) stands if the policy lets it.
            (Some(d), Some(v))
                if unlisted(&v)
                    && self.policy.unit(module).filters.keep_latest.is_none()
                    && dated(&d) =>
            {
                Some(d.body)
            }
            _ => match crate::policy::UnitPolicy::newest_release(
                Scheme::Semver,
                kept.iter().map(String::as_str),
            ) {
                Some(v) => match (infos.remove(v), retained.iter().find(|(r, _)| r == v)) {
                    (Some(d), _) => Some(d.body),
                    (None, Some((_, k))) => Some(k.info.clone()),
                    (None, None) => self
                        .optional(src, format!("{esc}/@v/{v}.info"))
                        .await?
                        .map(|d| d.body),
                },
                None => None,
            },
        };
        if let Some(body) = served_latest {
            entries.push(Entry {
                path: path(format!("{esc}/@latest"))?,
                mtime: None,
                body: Body::Inline(body),
            });
        }
        Ok(Some(UnitOutput {
            entries,
            rejected: 0,
            unchanged: false,
        }))
    }

    /// A module version's `.info`, `.mod` and `.zip`, and (under `retain =
    /// "additive"`) the zip's `h1:` if the version is served from the
    /// served generation's files because upstream removed it.
    async fn version_unit(
        &self,
        esc: &str,
        module: &str,
        version: &str,
        src: &dyn DocSource,
        now: u64,
    ) -> Result<(Option<UnitOutput>, Option<Digest>), SyncError> {
        let at = format!("{esc}/@v/{version}");
        let old = match self.policy.retain {
            Retain::Additive => retain::served_version(src, esc, version),
            Retain::Mirror => None,
        };
        // Under a cooldown the policy has read the .info already.
        let mut dated = None;
        if self.policy != Policy::default() {
            match self
                .version_served(esc, module, version, old.as_ref(), src, now)
                .await?
            {
                Served::Hidden => {
                    tracing::debug!(module, version, "hidden by the mirror's policy");
                    return Ok((None, None));
                }
                Served::Yes(info) => dated = info,
            }
        }
        let info = async {
            match dated {
                Some(d) => Ok(Some(d)),
                None => self.optional(src, format!("{at}.info")).await,
            }
        };
        let (info, modf, sums) = tokio::join!(
            info,
            self.optional(src, format!("{at}.mod")),
            self.sums_for(src, module, version)
        );
        let (Some(info), Some(modf)) = (info?, modf?) else {
            return Ok(self.retained_version(module, version, &at, old, sums?));
        };
        let (zip_sum, mod_sum) = sums?;
        let (Some(zip_sum), Some(mod_sum)) = (zip_sum, mod_sum) else {
            tracing::warn!(
                module,
                version,
                "not served: the checksum source has no h1: hashes for it"
            );
            return Ok((None, None));
        };
        let got = hash_mod(&modf.body);
        if got != mod_sum {
            return Err(SyncError::BadMetadata {
                url: modf.url.clone(),
                what: format!(
                    "go.mod hashes to {}, the checksum source says {}",
                    modzip::format_h1(&got),
                    modzip::format_h1(&mod_sum)
                ),
            });
        }
        let entries = vec![
            stored(format!("{at}.info"), info)?,
            stored(format!("{at}.mod"), modf)?,
            Entry {
                path: RelPath::new(format!("{at}.zip")).map_err(|e| SyncError::BadMetadata {
                    url: format!("{}{at}.zip", self.base),
                    what: e.to_string(),
                })?,
                mtime: None,
                body: Body::Remote {
                    url: format!("{}{at}.zip", self.base),
                    size: None,
                    digest: zip_sum,
                },
            },
        ];
        let out = UnitOutput {
            entries,
            rejected: 0,
            unchanged: false,
        };
        Ok((Some(out), None))
    }

    /// A version upstream no longer serves (its `.info` or `.mod` is gone):
    /// under `retain = "additive"` its files as the served generation has
    /// them (`old`, there only if its zip is cached), unless the checksum
    /// source now names another zip `h1:` for it; else nothing.
    fn retained_version(
        &self,
        module: &str,
        version: &str,
        at: &str,
        old: Option<retain::Kept>,
        sums: (Option<Digest>, Option<Digest>),
    ) -> (Option<UnitOutput>, Option<Digest>) {
        let Some(old) = old else {
            return (None, None);
        };
        if let (Some(sum), _) = &sums
            && *sum != old.digest
        {
            tracing::warn!(
                module,
                version,
                "retain: the checksum source names another zip h1: than the one served, not retained"
            );
            return (None, None);
        }
        tracing::info!(
            module,
            version,
            "retain: removed upstream, served from the cache"
        );
        let out = UnitOutput {
            entries: old.entries(at),
            rejected: 0,
            unchanged: false,
        };
        (Some(out), Some(old.digest))
    }
}

impl Go {
    /// Whether the policy serves `module@version`: it passes the filters on
    /// its own `.info` `Time`, and under `keep_latest` is among the newest
    /// served of the list.
    /// A version upstream removed that is retained (`old`, its files as
    /// served) is dated by the `.info` it was served with.
    async fn version_served(
        &self,
        esc: &str,
        module: &str,
        version: &str,
        old: Option<&retain::Kept>,
        src: &dyn DocSource,
        now: u64,
    ) -> Result<Served, SyncError> {
        let (time, info) = match self.policy.cooldown {
            Some(_) => match (
                self.optional(src, format!("{esc}/@v/{version}.info"))
                    .await?,
                old,
            ) {
                (Some(d), _) => (parse_info(&d.body).1, Some(d)),
                (None, Some(old)) => (old.time(), None),
                (None, None) => return Ok(Served::Hidden),
            },
            None => (None, None),
        };
        if self
            .policy
            .unit(module)
            .hides(Scheme::Semver, version, time, now)
            .is_some()
        {
            return Ok(Served::Hidden);
        }
        if self.policy.unit(module).filters.keep_latest.is_none() {
            return Ok(Served::Yes(info));
        }
        let Some(list) = self.optional(src, format!("{esc}/@v/list")).await? else {
            return Ok(Served::Hidden);
        };
        let Listing {
            kept, mut infos, ..
        } = self.served(esc, module, &list.body, src, now).await?;
        if !kept.iter().any(|v| v == version) {
            return Ok(Served::Hidden);
        }
        Ok(Served::Yes(info.or_else(|| infos.remove(version))))
    }
}

/// The versions of a module the policy serves ([`Go::served`]).
struct Listing {
    /// Upstream's in its order, then the retained ones.
    kept: Vec<String>,
    /// The `.info` documents read upstream to date them (under a cooldown).
    infos: HashMap<String, Doc>,
    /// The kept versions upstream's list no longer has, with their files as served.
    retained: Vec<(String, retain::Kept)>,
}

/// What the policy says of one module version.
enum Served {
    Hidden,
    /// Served; the `.info` read to date it, if one was.
    Yes(Option<Doc>),
}

/// A document served as it came, at `path`; a path the tree cannot hold (a
/// module path element over 255 bytes once escaped, say) fails the unit.
fn stored(path: String, doc: Doc) -> Result<Entry, SyncError> {
    let path = RelPath::new(path).map_err(|e| SyncError::BadMetadata {
        url: doc.url.clone(),
        what: format!("cannot be represented in the tree: {e}"),
    })?;
    Ok(Entry {
        path,
        mtime: None,
        body: doc.into_body(),
    })
}

impl Adapter for Go {
    fn select<'a>(
        &'a self,
        _src: &'a dyn DocSource,
    ) -> BoxFuture<'a, Result<Selection, SyncError>> {
        let seeds = literal_seeds(&self.filter, |m| {
            is_module_path(m).then(|| escape(m)).flatten()
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
            if self
                .sumdb_dir()
                .is_some_and(|db| unit.starts_with(&format!("{db}/")))
            {
                let Some(doc) = self.optional(src, unit.to_string()).await? else {
                    return Ok(None);
                };
                return Ok(Some(UnitOutput {
                    entries: vec![stored(unit.to_string(), doc)?],
                    rejected: 0,
                    unchanged: false,
                }));
            }
            // `<escaped module>` or `<escaped module>@<version>`.
            let (esc, version) = match unit.rsplit_once('@') {
                Some((esc, v)) if is_version(v) => (esc, Some(v)),
                _ => (unit, None),
            };
            let Some(module) = self.module_of(esc) else {
                return Ok(None);
            };
            let Some(v) = version else {
                return self.module_unit(esc, &module, src, now).await;
            };
            let (out, retained) = self.version_unit(esc, &module, v, src, now).await?;
            if self.policy.retain == Retain::Additive {
                let artifacts: Vec<Digest> = retained.into_iter().collect();
                src.retained(unit, artifacts.len(), artifacts);
            }
            Ok(out)
        })
    }

    fn changes_with_time(&self) -> bool {
        self.policy.cooldown.is_some()
    }

    fn lazy_unit(&self, parent: &str, name: &str) -> Option<String> {
        if let Some(file) = self.sumdb_file(parent, name) {
            let path = format!("{parent}/{name}");
            let valid = RelPath::new(path.as_str()).is_ok() && !name.starts_with('.');
            return (file && valid).then_some(path);
        }
        if name == "@v" || name == "@latest" {
            return self.module_of(parent).map(|_| parent.to_string());
        }
        let esc = parent.strip_suffix("/@v")?;
        self.module_of(esc)?;
        if name == "list" {
            return Some(esc.to_string());
        }
        let version = [".info", ".mod", ".zip"]
            .iter()
            .find_map(|ext| name.strip_suffix(ext))?;
        is_version(version).then(|| format!("{esc}@{version}"))
    }

    fn lazy_dir(&self, parent: &str, name: &str) -> bool {
        if let Some(file) = self.sumdb_file(parent, name) {
            return !file && check_name(name).is_ok() && !name.starts_with('.');
        }
        if parent.is_empty() && name == "sumdb" {
            return self.sumdb_dir().is_some();
        }
        if parent == "sumdb" {
            return self
                .sumdb_dir()
                .is_some_and(|d| d == format!("sumdb/{name}"));
        }
        let depth = parent.split('/').filter(|s| !s.is_empty()).count();
        depth < 16
            && !name.starts_with(['@', '.'])
            && check_name(name).is_ok()
            && !parent.split('/').any(|s| s.starts_with('@'))
            && name.bytes().all(|c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, b'.' | b'-' | b'_' | b'~' | b'!')
            })
    }
}

#[cfg(test)]
mod tests;
