//! The plug-in interface of an ecosystem layout: what a layout declares
//! ([`LayoutDef`]), what it is given ([`MirrorContext`] and its own
//! `[[mirror]]` keys), and what it does ([`Adapter`]).
//!
//! A layout turns a registry's metadata into a mirror tree. Its adapter does
//! no I/O of its own: it names the upstream documents it needs through a
//! [`DocSource`] (the sync driver in production, fixture bytes in tests) and
//! returns catalog [`Entry`]s. Each layout lives in its own folder under
//! `src/layouts/` with its adapter, its keys, its embedded defaults
//! (`defaults.toml`), any digest of its own, and its unit tests;
//! `src/layouts.rs` lists them, one line each.
//!
//! Units are the grain of syncing: a PyPI project, an npm package, a Debian
//! suite. A mirror either syncs a fixed set of units, or (with no filter
//! configured) starts empty and materializes a unit on the first lookup of
//! its name.

use std::time::Duration;

pub use futures_util::future::BoxFuture;
use reqwest::Url;

use crate::catalog::Entry;
pub use crate::digest::FileDigest;
use crate::keys::{Glob, Section};

/// A layout as the registry lists it.
pub struct LayoutDef {
    /// The `layout = "…"` value.
    pub name: &'static str,
    /// The embedded `defaults.toml` (see [`LayoutSpec`]).
    pub defaults: &'static str,
    pub capabilities: Capabilities,
    /// Reads the layout's own `[[mirror]]` keys from `keys` (every key it
    /// does not ask for is an error) and builds its adapter.
    pub configure: Configure,
    /// Digests of the layout's own that are not a hash of the byte stream
    /// (Go's `h1:`): the store checks them on the complete file.
    pub file_digests: &'static [FileDigest],
}

/// Builds a layout's adapter from its `[[mirror]]` keys.
pub type Configure = fn(&MirrorContext, &mut Section) -> Result<Box<dyn Adapter>, String>;

impl LayoutDef {
    /// Reads the common policy keys, refusing those this layout cannot
    /// honour: a policy is never silently ignored.
    pub fn policy(&self, keys: &mut Section) -> Result<crate::policy::Policy, String> {
        let policy = crate::policy::Policy::from_keys(keys)?;
        if policy.cooldown.is_some() && !self.capabilities.cooldown {
            return Err(keys.error(
                "cooldown",
                format!(
                    "the {} layout cannot honour it (its metadata dates no version); remove the key",
                    self.name
                ),
            ));
        }
        if policy.filters_versions() && self.capabilities.versions.is_none() {
            let key = if !policy.block.is_empty() {
                "block"
            } else if !policy.overrides.is_empty() {
                "override"
            } else if policy.filters.keep_latest.is_some() {
                "keep_latest"
            } else {
                "prereleases"
            };
            return Err(keys.error(
                key,
                format!(
                    "the {} layout cannot honour it (it does not filter versions); remove the key",
                    self.name
                ),
            ));
        }
        if policy.retain == crate::policy::Retain::Additive {
            if let Some(why) = self.capabilities.retain.refusal() {
                return Err(keys.error(
                    "retain",
                    format!(
                        "the {} layout cannot honour \"additive\" ({why}); remove the key or set it to \"mirror\"",
                        self.name
                    ),
                ));
            }
        }
        Ok(policy)
    }
}

impl std::fmt::Debug for LayoutDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// What a layout can do, for the conformance suite, `status` and docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The `[[mirror]]` key that selects units (globs allowed), if any.
    pub filter_key: Option<&'static str>,
    /// Without a filter, units materialize on their first lookup.
    pub lazy: bool,
    /// Whether metadata gives artifact sizes; where it does not, the first
    /// `stat` of an artifact fetches it (invariant 8).
    pub sizes: Sizes,
    /// Directory-shaped lookups answer placeholder directories (Maven).
    pub placeholders: bool,
    /// Units are signed together and change all or nothing (a Debian suite).
    pub signed: bool,
    /// The layout honours the common `cooldown` key (its metadata dates
    /// what it lists); a mirror of a layout that does not is refused.
    pub cooldown: bool,
    /// How the layout orders versions and tells pre-releases, if it applies
    /// the common version filters (`keep_latest`, `prereleases`, `block`,
    /// `[[mirror.override]]`); a mirror of a layout that does not is refused.
    pub versions: Option<crate::policy::Scheme>,
    /// Whether the layout honours `retain = "additive"` (keeps listing
    /// versions upstream removed while their artifacts are cached).
    pub retain: RetainSupport,
}

/// Whether a layout honours `retain = "additive"`, and if not why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetainSupport {
    /// Removed versions stay in every document of the unit and in the tree.
    Yes,
    /// Not for this layout, and why (the refusal names it).
    No(&'static str),
    /// Its metadata is signed: rewriting it would break the signature.
    Signed,
}

impl RetainSupport {
    /// Why `retain = "additive"` is refused, if it is.
    pub fn refusal(self) -> Option<&'static str> {
        match self {
            RetainSupport::Yes => None,
            RetainSupport::No(why) => Some(why),
            RetainSupport::Signed => Some(
                "its indexes are signed and are never rewritten; superseded index files already stay reachable through by-hash/ for by_hash_grace where the layout has it",
            ),
        }
    }
}

/// Where artifact sizes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// Metadata lists every artifact's size: `stat` never waits.
    Listed,
    /// Some upstreams list them (PEP 700 JSON), others do not (HTML).
    Sometimes,
    /// Metadata has none: the first `stat` fetches and verifies the file.
    Fetched,
}

/// What a layout's `configure` is given besides its keys.
pub struct MirrorContext<'a> {
    /// The mirror's name (its directory under the mount).
    pub name: &'a str,
    /// Upstream base URLs in order, each ending with `/`.
    pub upstreams: &'a [Url],
    pub spec: &'a LayoutSpec,
    /// The mirror's `trust_on_first_use`: whether it may list artifacts
    /// whose metadata gives only a weak digest or none
    /// ([`crate::digest::Algo::is_weak`]). Without it a layout lists none
    /// (and says so once per sync); the core drops any it emits anyway.
    pub trust_on_first_use: bool,
    /// The mirror's policy keys (`cooldown`, …), read before the layout's own.
    pub policy: &'a crate::policy::Policy,
}

impl MirrorContext<'_> {
    /// The first upstream base URL (ends with `/`); artifact URLs fall back
    /// to the others.
    pub fn base(&self) -> String {
        self.upstreams[0].to_string()
    }
}

/// The `public_url` key, required by layouts whose documents must hold
/// absolute URLs: where clients reach this mirror through the exporter.
pub fn public_url(ctx: &MirrorContext, keys: &mut Section) -> Result<String, String> {
    let url = keys.string("public_url")?;
    let url = keys.required(
        "public_url",
        url,
        &format!(
            "where clients reach this mirror through your exporter, e.g. \"http://mirror.example/{}\"; the documents clients read must hold absolute URLs",
            ctx.name
        ),
    )?;
    crate::keys::parse_base_url(&url)
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .map_err(|e| keys.error("public_url", format!("\"{url}\": {e}")))
}

/// A layout's defaults from its embedded `defaults.toml`.
#[derive(Debug)]
pub struct LayoutSpec {
    pub lookup_timeout: Duration,
    pub negative_ttl: Duration,
    pub sync_concurrency: usize,
    pub max_document: u64,
    pub paths: toml::Table,
}

impl LayoutSpec {
    /// Parses an embedded spec; a broken one is a build defect, caught by
    /// the registry's tests.
    pub fn parse(text: &str) -> Result<LayoutSpec, String> {
        let t: toml::Table = text.parse().map_err(|e| format!("not TOML: {e}"))?;
        let s = |k: &str| {
            t.get(k)
                .and_then(|v| v.as_str())
                .ok_or(format!("missing {k}"))
        };
        let dur = |k: &str| crate::keys::parse_duration(s(k)?).ok_or(format!("bad {k}"));
        Ok(LayoutSpec {
            lookup_timeout: dur("lookup_timeout")?,
            negative_ttl: dur("negative_ttl")?,
            sync_concurrency: t
                .get("sync_concurrency")
                .and_then(|v| v.as_integer())
                .map_or(8, |n| n.clamp(1, 256) as usize),
            max_document: crate::keys::parse_size(s("max_document")?).ok_or("bad max_document")?,
            paths: t
                .get("paths")
                .and_then(|v| v.as_table())
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// A path template from `[paths]` (checked by the layout's tests).
    pub fn path(&self, key: &str) -> &str {
        self.paths
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("layout defaults: paths.{key} is missing"))
    }
}

/// An upstream document request, relative to the mirror's upstream base URL
/// (or absolute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocRequest {
    pub path: String,
    pub accept: Option<&'static str>,
}

/// An upstream document as received.
#[derive(Clone, Debug)]
pub struct Doc {
    /// The URL that answered (after redirects); relative links resolve against it.
    pub url: String,
    pub content_type: Option<String>,
    /// The digest upstream states for the body (`Docker-Content-Digest`),
    /// if it sent one.
    pub content_digest: Option<String>,
    pub body: Vec<u8>,
    /// Same bytes as at the last sync (304, or an identical body).
    pub unchanged: bool,
    /// The source keeps these bytes in the mirror's metadata store under
    /// this SHA-256, so an entry can serve them as `Body::Stored`.
    pub stored: Option<crate::digest::Digest>,
    /// Its share of the document budget ([`crate::fetch::DOC_BUDGET`]),
    /// given back when the document is dropped: keep the `Doc` until its
    /// parse is done, and drop a large one before asking for another.
    pub hold: DocHold,
}

/// A document's share of the fetcher's memory budget for upstream
/// documents ([`crate::fetch::DOC_BUDGET`]); clones share it, and it
/// returns when the last is dropped.
#[derive(Clone, Debug, Default)]
pub struct DocHold(Option<std::sync::Arc<tokio::sync::OwnedSemaphorePermit>>);

impl DocHold {
    pub(crate) fn new(share: Option<tokio::sync::OwnedSemaphorePermit>) -> DocHold {
        DocHold(share.map(std::sync::Arc::new))
    }

    /// The budget's KiB it holds.
    pub fn kib(&self) -> u32 {
        self.0.as_ref().map_or(0, |p| p.num_permits() as u32)
    }
}

impl Doc {
    /// How an entry serves these bytes: from the metadata store where the
    /// source kept them, else inline.
    pub fn into_body(self) -> crate::catalog::Body {
        let size = self.body.len() as u64;
        match self.stored {
            Some(digest) => crate::catalog::Body::Stored { digest, size },
            None => crate::catalog::Body::Inline(self.body),
        }
    }
}

/// Fetches a document upstream may not have: `Ok(None)` for a 404 or 410.
pub async fn get_optional(src: &dyn DocSource, path: String) -> Result<Option<Doc>, SyncError> {
    match src.get(DocRequest { path, accept: None }).await {
        Ok(doc) => Ok(Some(doc)),
        Err(DocError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The units a filter names literally (synced up front by lazy layouts),
/// each mapped to its unit name; patterns only allow.
pub fn literal_seeds(
    filter: &Option<Vec<Glob>>,
    unit: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    filter
        .iter()
        .flatten()
        .filter(|g| g.is_literal())
        .filter_map(|g| unit(g.as_str()))
        .collect()
}

/// Derived bytes being written into the mirror's metadata store; committed
/// only if they hash to the digest and size they were opened with.
pub trait Keep: std::io::Write + Send {
    fn commit(self: Box<Self>) -> Result<(), String>;
}

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("{url}: not found upstream")]
    NotFound { url: String },
    /// Upstream answered with a status that is neither success nor absence.
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    /// Anything else (transport, stall, size limit), as the source described it.
    #[error("{0}")]
    Failed(String),
}

/// Where adapters get upstream documents from (the sync driver in
/// production, fixture bytes in tests).
pub trait DocSource: Send + Sync {
    fn get(&self, req: DocRequest) -> BoxFuture<'_, Result<Doc, DocError>>;

    /// [`DocSource::get`] for a document upstream only ever appends to
    /// (RubyGems' `/versions`): where a copy is kept, only the bytes past it
    /// may be asked for (a Range request), and the result is the whole
    /// document, verified. Sources that cannot do better just `get` it.
    fn get_appended(&self, req: DocRequest) -> BoxFuture<'_, Result<Doc, DocError>> {
        self.get(req)
    }

    /// What the generation being served has at the mirror-relative `path`,
    /// for `retain = "additive"` (a layout merges the versions its last
    /// documents listed and upstream's no longer do). Sources that keep no
    /// generation (fixtures) have nothing.
    fn previous(&self, _path: &str) -> Option<Previous> {
        None
    }

    /// The document the generation being served has at `path`, if it has
    /// one there (not an artifact): what a layout merges under
    /// `retain = "additive"`.
    fn previous_doc(&self, path: &str) -> Option<Vec<u8>> {
        match self.previous(path)? {
            Previous::Doc(bytes) => Some(bytes),
            Previous::Artifact { .. } => None,
        }
    }

    /// The names of the files the generation being served has in directory
    /// `dir` (mirror-relative), for a layout whose documents do not list
    /// what it retained (CPAN: a signed CHECKSUMS is never rewritten).
    fn previous_files(&self, _dir: &str) -> Vec<String> {
        Vec::new()
    }

    /// Tells the mirror how many versions of `unit` its new documents keep
    /// listing although upstream removed them, and their artifacts (held
    /// from eviction on an immediate mirror); `status` shows the total.
    fn retained(&self, _unit: &str, _versions: usize, _artifacts: Vec<crate::digest::Digest>) {}

    /// Opens a blob for bytes the adapter derives (a decompressed index)
    /// that must hash to `sha256`; serve them afterwards as `Body::Stored`.
    fn keep(&self, sha256: &crate::digest::Digest, size: u64) -> Result<Box<dyn Keep>, String>;
}

/// A file of the generation being served ([`DocSource::previous`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Previous {
    /// A document regfs serves (a page it rendered), its bytes.
    Doc(Vec<u8>),
    /// An artifact as its entry promised it, and whether its verified bytes
    /// are in the cache now.
    Artifact {
        url: String,
        size: Option<u64>,
        digest: crate::digest::Digest,
        cached: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Doc(#[from] DocError),
    #[error("{url}: {what}")]
    BadMetadata { url: String, what: String },
}

/// A [`SyncError::BadMetadata`]: the document at `url` is not what it
/// should be, and `what` says how.
pub fn bad_metadata(url: &str, what: impl Into<String>) -> SyncError {
    SyncError::BadMetadata {
        url: url.to_string(),
        what: what.into(),
    }
}

/// Which units a sync covers.
#[derive(Debug, PartialEq, Eq)]
pub enum Selection {
    /// Exactly these units.
    Units(Vec<String>),
    /// Whatever has been materialized so far, plus these seeds.
    Lazy(Vec<String>),
}

/// What one unit contributes.
#[derive(Debug)]
pub struct UnitOutput {
    pub entries: Vec<Entry>,
    /// Entries dropped as malformed (logged by the adapter).
    pub rejected: usize,
    /// The unit did not change since the last sync and its entries were not
    /// produced (only when asked with `full = false`).
    pub unchanged: bool,
}

/// A signed upstream generation of one unit, as verified at sync: a Debian
/// suite's Release, an RPM repository's repomd.xml.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRelease {
    /// SHA-256 (hex) of the signed document.
    pub digest: String,
    /// Its `Valid-Until` (Unix seconds), if it has one.
    pub valid_until: Option<i64>,
}

/// The [`SeenRelease`] of each unit, as a signed layout records them.
#[derive(Default)]
pub struct SeenReleases(std::sync::Mutex<std::collections::HashMap<String, SeenRelease>>);

impl SeenReleases {
    /// Records that `unit`'s upstream generation is now `signed`.
    pub fn record(&self, unit: &str, signed: &[u8], valid_until: Option<i64>) {
        let seen = SeenRelease {
            digest: crate::digest::Digest::sha256_of(signed).hex(),
            valid_until,
        };
        self.0.lock().unwrap().insert(unit.to_string(), seen);
    }

    pub fn get(&self, unit: &str) -> Option<SeenRelease> {
        self.0.lock().unwrap().get(unit).cloned()
    }
}

pub trait Adapter: Send + Sync {
    /// Decides the units of this sync (may read an upstream listing for globs).
    fn select<'a>(&'a self, src: &'a dyn DocSource) -> BoxFuture<'a, Result<Selection, SyncError>>;

    /// Fetches and parses one unit. `Ok(None)`: upstream does not have it.
    /// Unless `full`, a unit whose upstream root document is unchanged may
    /// answer [`UnitOutput::unchanged`] without its entries.
    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        now: u64,
        full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>>;

    /// True when the entries change with time alone, upstream unchanged (a
    /// cooldown that hides recent files): every sync then rebuilds.
    fn changes_with_time(&self) -> bool {
        false
    }

    /// For a signed layout: the upstream generation of `unit` its last
    /// [`Adapter::unit`] call verified, which a `cooldown` holds back
    /// (`mirror/cooldown.rs`). `None`: the layout has no such generation.
    fn release_seen(&self, _unit: &str) -> Option<SeenRelease> {
        None
    }

    /// Entries derived from the set of units (root listings).
    fn root_entries(&self, _units: &[String]) -> Vec<Entry> {
        Vec::new()
    }

    /// True for the paths that [`Adapter::root_entries`] produces.
    fn is_root_entry(&self, _path: &str) -> bool {
        false
    }

    /// In lazy mode: the unit that a lookup of `name` in directory
    /// `parent` (mirror-relative) would materialize.
    fn lazy_unit(&self, parent: &str, name: &str) -> Option<String>;

    /// In lazy mode, after [`Adapter::lazy_unit`] found nothing: may `name`
    /// in `parent` be a directory whose contents are not known yet? Such a
    /// lookup answers with an empty placeholder directory (Maven's group
    /// paths, which no upstream document lists).
    fn lazy_dir(&self, _parent: &str, _name: &str) -> bool {
        false
    }

    /// Upstream base URLs learnt from metadata at sync (the mirrors an RPM
    /// metalink names): an artifact under one of them is also tried under
    /// the others, after the configured upstreams.
    fn fallback_upstreams(&self) -> Vec<Url> {
        Vec::new()
    }

    /// How many files of `g` are served as upstream sent them with no
    /// digest covering them (RubyGems' classic index): `status` shows it.
    fn unverified(&self, _g: &crate::catalog::Generation) -> u64 {
        0
    }

    /// Entries of the previous generation to keep although no unit lists
    /// them any more (Debian's by-hash grace period).
    fn carry_over(
        &self,
        _prev: &crate::catalog::Generation,
        _entries: &[Entry],
        _now: u64,
    ) -> Vec<Entry> {
        Vec::new()
    }
}
