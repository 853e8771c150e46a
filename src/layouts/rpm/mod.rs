//! RPM repositories (rpm-md: what dnf, yum and zypper read), each served
//! in its upstream layout, byte-identical.
//!
//! ```text
//! <repo>/repodata/repomd.xml        the root (+ .asc, .key when upstream has them),
//!                                   signature checked at sync when a keyring is set
//! <repo>/repodata/<hash>-primary…   fetched and verified at sync, parsed as it streams
//! <repo>/repodata/<other files>     every file repomd.xml lists, with its size and
//!                                   checksum, fetched and verified on first read
//! <repo>/<location href>            every package primary.xml lists (Packages/a/…),
//!                                   with its size and sha256, fetched on first read
//! ```
//!
//! `<repo>` is each of the mirror's `repos` (paths under the upstream base),
//! or nothing: the upstream URL itself is then the one repository, at the
//! mirror's root. The trust chain runs repomd.xml (signed, or matched
//! against a metalink's hashes) → each repodata file's checksum → each
//! package's checksum (sha256 or sha512; md5 and sha1 are not trusted on
//! their own). A repository changes all or nothing; a failed sync keeps
//! the served generation.
//!
//! A sync whose repomd.xml is unchanged costs one request per repository.
//! Repodata files that a new repomd.xml no longer lists stay reachable for
//! `repodata_grace`, so a client that read the old repomd.xml a moment ago
//! still gets the files it names.

mod decode;
pub mod primary;
pub mod repomd;
mod sync;
pub mod xml;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;

use crate::catalog::{Entry, Generation, Kind};
use crate::keys::Section;
// Debian's gpgv verifier: repomd.xml.asc is checked as Release.gpg is.
use crate::layout::{
    Adapter, BoxFuture, Capabilities, DocSource, LayoutDef, MirrorContext, Selection, Sizes,
    SyncError, UnitOutput,
};
use crate::path::RelPath;

pub use decode::{DecodeError, XmlSink, decompress_into};

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "rpm",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: None,
        lazy: false,
        sizes: Sizes::Listed,
        placeholders: false,
        // Each repository is all or nothing under its repomd.xml (signed
        // when a keyring is configured).
        signed: true,
        // Holds a new repomd.xml back, never rewrites one (`mirror/cooldown.rs`).
        cooldown: true,
        versions: None,
        retain: crate::layout::RetainSupport::Signed,
    },
    configure: |ctx, keys| Ok(Box::new(Rpm::from_keys(ctx, keys)?)),
    file_digests: &[],
};

/// The unit name of a mirror's one repository when `repos` is not given.
pub const ROOT_UNIT: &str = "/";

/// Files beside repomd.xml that are served as upstream has them.
const ROOT_FILES: [&str; 3] = ["repomd.xml", "repomd.xml.asc", "repomd.xml.key"];

/// What an RPM mirror carries and how it is trusted.
#[derive(Clone, Debug, PartialEq)]
pub struct RpmOptions {
    /// Repository paths under the upstream base (`""`: the base itself).
    pub repos: Vec<String>,
    /// OpenPGP keyring that must have signed each repomd.xml (`.asc`).
    pub keyring: Option<PathBuf>,
    /// A metalink naming the repository's mirrors and repomd.xml's hashes.
    pub metalink: Option<Url>,
    /// How long repodata files of a superseded repomd.xml stay reachable.
    pub repodata_grace: Duration,
}

impl RpmOptions {
    /// Reads `repos`, `keyring`, `metalink` and `repodata_grace`.
    pub fn from_keys(keys: &mut Section) -> Result<RpmOptions, String> {
        let repos = keys.subpaths(
            "repos",
            "repository",
            "BaseOS/x86_64/os",
            "repodata/repomd.xml.asc",
        )?;
        let keyring = crate::gpgv::keyring_key(
            keys,
            "point at the repository's OpenPGP key, e.g. the file its gpgkey= names",
        )?;
        let metalink = match keys.string("metalink")? {
            None => None,
            Some(s) => {
                let url = Url::parse(&s)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        keys.error("metalink", format!("\"{s}\" is not an http(s) URL"))
                    })?;
                if repos != [""] {
                    return Err(keys.error(
                        "metalink",
                        "a metalink lists the mirrors of one repository: drop `repos` and give each repository its own [[mirror]]",
                    ));
                }
                Some(url)
            }
        };
        let repodata_grace = keys
            .duration("repodata_grace")?
            .unwrap_or(Duration::from_secs(86400));
        Ok(RpmOptions {
            repos,
            keyring,
            metalink,
            repodata_grace,
        })
    }
}

pub struct Rpm {
    opts: RpmOptions,
    /// Configured upstream bases, first first (each ends with `/`).
    bases: Vec<String>,
    gpg: Option<Arc<crate::gpgv::Gpgv>>,
    max_document: u64,
    /// Mirror bases the last metalink named (fallbacks for artifacts).
    learnt: Mutex<Vec<Url>>,
    /// Each repository's repomd.xml as last verified.
    pub(super) seen: crate::layout::SeenReleases,
}

use crate::layout::bad_metadata as bad;

impl Rpm {
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Rpm, String> {
        Ok(Rpm::new(ctx, RpmOptions::from_keys(keys)?))
    }

    pub fn new(ctx: &MirrorContext, opts: RpmOptions) -> Rpm {
        Rpm {
            gpg: opts
                .keyring
                .as_deref()
                .map(|k| Arc::new(crate::gpgv::Gpgv::new(k))),
            opts,
            bases: ctx.upstreams.iter().map(|u| u.to_string()).collect(),
            max_document: ctx.spec.max_document,
            learnt: Mutex::new(Vec::new()),
            seen: Default::default(),
        }
    }

    /// The repository path of a unit.
    fn repo_of<'a>(&self, unit: &'a str) -> &'a str {
        if unit == ROOT_UNIT { "" } else { unit }
    }

    /// `repo/` (or nothing for the mirror's root repository).
    fn prefix(repo: &str) -> String {
        if repo.is_empty() {
            String::new()
        } else {
            format!("{repo}/")
        }
    }
}

impl Adapter for Rpm {
    fn select<'a>(
        &'a self,
        _src: &'a dyn DocSource,
    ) -> BoxFuture<'a, Result<Selection, SyncError>> {
        let units = self
            .opts
            .repos
            .iter()
            .map(|r| if r.is_empty() { ROOT_UNIT } else { r })
            .map(str::to_string)
            .collect();
        Box::pin(async move { Ok(Selection::Units(units)) })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        now: u64,
        full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(async move {
            self.sync_repo(self.repo_of(unit), src, now, full)
                .await
                .map(Some)
        })
    }

    fn lazy_unit(&self, _parent: &str, _name: &str) -> Option<String> {
        None
    }

    fn release_seen(&self, unit: &str) -> Option<crate::layout::SeenRelease> {
        self.seen.get(unit)
    }

    fn fallback_upstreams(&self) -> Vec<Url> {
        self.learnt.lock().unwrap().clone()
    }

    /// Keeps the repodata files of a superseded repomd.xml for
    /// `repodata_grace` after it was superseded. Every file a repomd.xml
    /// lists carries the same mtime as that repomd.xml (the sync that
    /// listed it), so a file of `prev` whose mtime equals its repomd.xml's
    /// retires now; a file carried already keeps the mtime it retired at,
    /// which is always earlier. Both survive restarts in the catalog.
    fn carry_over(&self, prev: &Generation, entries: &[Entry], now: u64) -> Vec<Entry> {
        let fresh: HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        let grace = self.opts.repodata_grace.as_secs();
        let mut out = Vec::new();
        for repo in &self.opts.repos {
            let dir = format!("{}repodata", Rpm::prefix(repo));
            let Some(node) = prev.resolve(&dir) else {
                continue;
            };
            let stamp_of = |id| prev.mtime(id);
            let old_stamp = prev.resolve(&format!("{dir}/repomd.xml")).map(stamp_of);
            let new_stamp = entries
                .iter()
                .find(|e| e.path.as_str() == format!("{dir}/repomd.xml"))
                .and_then(|e| e.mtime)
                .map_or(now, u64::from);
            for child in prev.children(node) {
                if prev.kind(child) != Kind::File
                    || ROOT_FILES.contains(&&*prev.name(child).as_str())
                {
                    continue;
                }
                let path = prev.path(child);
                if fresh.contains(path.as_str()) {
                    continue;
                }
                let Some(f) = prev.file(child) else { continue };
                let m = prev.mtime(child);
                let retired = if Some(m) == old_stamp {
                    new_stamp.saturating_sub(1)
                } else {
                    u64::from(m)
                };
                if now.saturating_sub(retired) > grace {
                    continue;
                }
                let body = f.into_body();
                let Ok(path) = RelPath::new(path) else {
                    continue;
                };
                out.push(Entry {
                    path,
                    mtime: u32::try_from(retired).ok(),
                    body,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
