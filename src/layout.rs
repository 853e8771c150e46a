//! Ecosystem layouts: how a registry's metadata becomes a mirror tree.
//!
//! Each layout is an adapter that does no I/O of its own: it names the
//! upstream documents it needs (through a [`DocSource`] the sync driver
//! provides) and turns their bytes into catalog [`Entry`]s. Layout defaults
//! (timeouts, path templates) live in `layouts/<name>.toml`, embedded here.
//!
//! Units are the grain of syncing: a PyPI project, an npm package. A mirror
//! either syncs a fixed set of units, or (with no filter configured) starts
//! empty and materializes a unit on the first lookup of its name.

pub mod crates;
pub mod debian;
pub mod go;
pub mod maven;
pub mod npm;
pub mod pypi;
#[cfg(test)]
pub mod testing;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::catalog::Entry;
use crate::config::MirrorConfig;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayoutKind {
    Pypi,
    Debian,
    Maven,
    Crates,
    Npm,
    Go,
}

impl LayoutKind {
    const ALL: &'static [(LayoutKind, &'static str)] = &[
        (LayoutKind::Pypi, "pypi"),
        (LayoutKind::Debian, "debian"),
        (LayoutKind::Maven, "maven"),
        (LayoutKind::Crates, "crates"),
        (LayoutKind::Npm, "npm"),
        (LayoutKind::Go, "go"),
    ];

    pub fn from_name(name: &str) -> Option<LayoutKind> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("?", |(_, n)| n)
    }

    /// The known layout names, for error messages.
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|(_, n)| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The layout's embedded defaults.
    pub fn spec(self) -> &'static LayoutSpec {
        static PYPI: std::sync::OnceLock<LayoutSpec> = std::sync::OnceLock::new();
        static DEBIAN: std::sync::OnceLock<LayoutSpec> = std::sync::OnceLock::new();
        static MAVEN: std::sync::OnceLock<LayoutSpec> = std::sync::OnceLock::new();
        static CRATES: std::sync::OnceLock<LayoutSpec> = std::sync::OnceLock::new();
        static NPM: std::sync::OnceLock<LayoutSpec> = std::sync::OnceLock::new();
        static GO: std::sync::OnceLock<LayoutSpec> = std::sync::OnceLock::new();
        match self {
            LayoutKind::Pypi => {
                PYPI.get_or_init(|| LayoutSpec::parse(include_str!("../layouts/pypi.toml")))
            }
            LayoutKind::Debian => {
                DEBIAN.get_or_init(|| LayoutSpec::parse(include_str!("../layouts/debian.toml")))
            }
            LayoutKind::Maven => {
                MAVEN.get_or_init(|| LayoutSpec::parse(include_str!("../layouts/maven.toml")))
            }
            LayoutKind::Crates => {
                CRATES.get_or_init(|| LayoutSpec::parse(include_str!("../layouts/crates.toml")))
            }
            LayoutKind::Npm => {
                NPM.get_or_init(|| LayoutSpec::parse(include_str!("../layouts/npm.toml")))
            }
            LayoutKind::Go => {
                GO.get_or_init(|| LayoutSpec::parse(include_str!("../layouts/go.toml")))
            }
        }
    }

    pub fn adapter(self, mirror: &MirrorConfig) -> Box<dyn Adapter> {
        match self {
            LayoutKind::Pypi => Box::new(pypi::Pypi::new(mirror, self.spec())),
            LayoutKind::Debian => Box::new(debian::Debian::new(mirror, self.spec())),
            LayoutKind::Maven => Box::new(maven::Maven::new(mirror, self.spec())),
            LayoutKind::Crates => Box::new(crates::Crates::new(mirror, self.spec())),
            LayoutKind::Npm => Box::new(npm::Npm::new(mirror, self.spec())),
            LayoutKind::Go => Box::new(go::Go::new(mirror, self.spec())),
        }
    }
}

/// A layout's defaults from `layouts/<name>.toml`.
#[derive(Debug)]
pub struct LayoutSpec {
    /// The `[[mirror]]` key that selects units, for layouts that have one.
    pub filter_key: Option<&'static str>,
    pub lookup_timeout: Duration,
    pub negative_ttl: Duration,
    pub sync_concurrency: usize,
    pub max_document: u64,
    pub paths: toml::Table,
}

impl LayoutSpec {
    /// Parses an embedded spec; a broken one is a build defect, caught by tests.
    fn parse(text: &str) -> LayoutSpec {
        let t: toml::Table = text.parse().expect("embedded layout spec is valid TOML");
        let s = |k: &str| {
            t.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_else(|| panic!("layout spec: {k}"))
        };
        let dur = |k: &str| {
            crate::config::parse_duration(s(k)).unwrap_or_else(|| panic!("layout spec: {k}"))
        };
        LayoutSpec {
            filter_key: t
                .get("filter_key")
                .and_then(|v| v.as_str())
                .map(|k| &*Box::leak(k.to_string().into_boxed_str())),
            lookup_timeout: dur("lookup_timeout"),
            negative_ttl: dur("negative_ttl"),
            sync_concurrency: t
                .get("sync_concurrency")
                .and_then(|v| v.as_integer())
                .unwrap_or(8) as usize,
            max_document: crate::config::parse_size(s("max_document"))
                .expect("layout spec: max_document"),
            paths: t
                .get("paths")
                .and_then(|v| v.as_table())
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// A path template from `[paths]`.
    pub fn path(&self, key: &str) -> &str {
        self.paths
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("layout spec: paths.{key}"))
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
    pub body: Vec<u8>,
    /// Same bytes as at the last sync (304, or an identical body).
    pub unchanged: bool,
    /// The source keeps these bytes in the mirror's metadata store under
    /// this SHA-256, so an entry can serve them as `Body::Stored`.
    pub stored: Option<crate::digest::Digest>,
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
    filter: &Option<Vec<crate::config::Glob>>,
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
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
}

/// Where adapters get upstream documents from (the sync driver in
/// production, fixture bytes in tests).
pub trait DocSource: Send + Sync {
    fn get(&self, req: DocRequest) -> BoxFuture<'_, Result<Doc, DocError>>;

    /// Opens a blob for bytes the adapter derives (a decompressed index)
    /// that must hash to `sha256`; serve them afterwards as `Body::Stored`.
    fn keep(&self, sha256: &crate::digest::Digest, size: u64) -> Result<Box<dyn Keep>, String>;
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Doc(#[from] DocError),
    #[error("{url}: {what}")]
    BadMetadata { url: String, what: String },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_specs_parse() {
        for (k, name) in LayoutKind::ALL {
            let spec = k.spec();
            assert!(spec.lookup_timeout.as_secs() > 0, "{name}");
            assert_eq!(LayoutKind::from_name(name), Some(*k));
        }
        assert_eq!(LayoutKind::Pypi.spec().path("index_dir"), "simple");
    }
}
