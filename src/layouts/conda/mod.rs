//! Conda channels (what conda, mamba, pixi and rattler read), each subdir
//! served in its upstream layout.
//!
//! ```text
//! <channel>/<subdir>/repodata.json                synced (fetched as .zst where upstream has it)
//! <channel>/<subdir>/repodata.json.zst            where upstream has it
//! <channel>/<subdir>/current_repodata.json        where upstream has it
//! <channel>/<subdir>/repodata_shards.msgpack.zst  CEP-16 shard index, where upstream has it
//! <channel>/<subdir>/shards/<sha256>.msgpack.zst  each shard, fetched on first read,
//!                                                 verified by its name
//! <channel>/<subdir>/<name>-<version>-<build>.conda|.tar.bz2
//!                                                 every package repodata.json lists, with
//!                                                 its size and sha256, fetched on first read
//! ```
//!
//! `<channel>` is each of the mirror's `channels` (paths under the upstream
//! base), or nothing: the upstream URL itself is then the one channel, at
//! the mirror's root. Each `<channel>/<subdir>` is a unit, synced on its
//! own. There is no signature: repodata.json (over TLS) gives each
//! package's sha256 (md5 alone is not trusted), and a shard is named after
//! its own sha256.
//!
//! Without filters every document is served byte-identical. Where
//! `packages`, `exclude` or `cooldown` (or a malformed record) leave
//! records out, every document a client may read agrees with what is
//! listed: repodata.json and current_repodata.json are rewritten (kept
//! records byte for byte), repodata.json.zst is compressed again, the shard
//! index drops the names that are gone and points at shards this mirror
//! writes from repodata.json for names that lost some records; the shards
//! of untouched names are upstream's, fetched lazily. `repodata.json.bz2`
//! is never served: regfs would have to decompress it to know that it
//! agrees with repodata.json, and every client that probes for it falls
//! back to `.zst` or plain JSON on the 404.
//!
//! With `retain = "additive"` a package upstream's repodata.json no longer
//! lists stays in every document that lists packages, and in the tree,
//! while its file is cached with the sha256 it was listed with
//! (`retain.rs`).

mod msgpack;
pub mod repodata;
mod retain;
pub mod shards;
mod sync;
pub mod zstd;

use reqwest::Url;

use crate::keys::{Glob, Section};
use crate::layout::{
    Adapter, BoxFuture, Capabilities, DocSource, LayoutDef, MirrorContext, Selection, Sizes,
    SyncError, UnitOutput,
};
use crate::path::RelPath;

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "conda",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: Some("packages"),
        lazy: false,
        // repodata.json gives every package's size; shards (not packages)
        // have none, so their first stat fetches them.
        sizes: Sizes::Listed,
        placeholders: false,
        signed: false,
        cooldown: true,
        versions: Some(crate::policy::Scheme::Conda),
        retain: crate::layout::RetainSupport::Yes,
    },
    configure: |ctx, keys| Ok(Box::new(Conda::from_keys(ctx, keys)?)),
    file_digests: &[],
};

/// Which records a mirror lists.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// Package names (or patterns) to list; `None`: all.
    pub packages: Option<Vec<Glob>>,
    /// Package names (or patterns) never listed.
    pub exclude: Vec<Glob>,
    /// The mirror's policy: records younger than `cooldown` (by their
    /// `timestamp`) are hidden, and its version filters and block list
    /// apply per package name (the policy's unit), by conda's version order.
    pub policy: crate::policy::Policy,
}

impl Filter {
    /// Whether any record could be left out.
    pub fn is_empty(&self) -> bool {
        self.packages.is_none()
            && self.exclude.is_empty()
            && self.policy.cooldown.is_none()
            && !self.policy.filters_versions()
    }

    pub fn allows(&self, name: &str) -> bool {
        self.packages
            .as_ref()
            .is_none_or(|p| p.iter().any(|g| g.matches(name)))
            && !self.exclude.iter().any(|g| g.matches(name))
    }

    /// Of one package's records (version and timestamp each), which are
    /// served: the block list, the cooldown (a record timestamped less than
    /// `cooldown` before `now`, or later, or with no timestamp: a cooldown
    /// never lists a package whose age it cannot establish), `prereleases`,
    /// then `keep_latest` over the versions left (every build of a kept
    /// version stays).
    pub fn served<'v>(
        &self,
        name: &str,
        records: impl IntoIterator<Item = (&'v str, Option<u64>)>,
        now: u64,
    ) -> std::collections::HashSet<&'v str> {
        self.policy
            .unit(name)
            .select(crate::policy::Scheme::Conda, records, now)
    }
}

/// What a conda mirror carries.
#[derive(Clone, Debug, PartialEq)]
pub struct CondaOptions {
    /// Channel paths under the upstream base (`""`: the base itself).
    pub channels: Vec<String>,
    pub subdirs: Vec<String>,
    pub filter: Filter,
}

/// A platform subdir name (`linux-64`, `osx-arm64`, `noarch`).
fn is_subdir(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s != "shards"
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_'))
}

impl CondaOptions {
    /// Reads `channels`, `subdirs`, `packages` and `exclude`; `cooldown`,
    /// `keep_latest`, `prereleases`, `block` and `[[mirror.override]]` are
    /// the common policy keys, applied per package name.
    pub fn from_keys(
        keys: &mut Section,
        policy: &crate::policy::Policy,
    ) -> Result<CondaOptions, String> {
        let channels = keys.subpaths("channels", "channel", "conda-forge", "")?;
        let subdirs = keys.string_or_list("subdirs")?;
        let subdirs = keys.required(
            "subdirs",
            subdirs,
            "the platform subdirs to mirror, e.g. [\"linux-64\", \"noarch\"]",
        )?;
        if let Some(bad) = subdirs.iter().find(|s| !is_subdir(s)) {
            return Err(keys.error(
                "subdirs",
                format!(
                    "\"{bad}\" is not a subdir name (e.g. \"linux-64\", \"osx-arm64\", \"noarch\")"
                ),
            ));
        }
        if !subdirs.iter().any(|s| s == "noarch") {
            return Err(keys.error(
                "subdirs",
                "include \"noarch\": every conda client reads it beside its platform",
            ));
        }
        let mut subdirs = subdirs;
        subdirs.sort();
        subdirs.dedup();
        // Every document path of every channel's subdirs must fit in the
        // tree (a shard's is the longest), so a sync never meets one that
        // cannot be represented.
        let longest = format!("shards/{}.msgpack.zst", "0".repeat(64));
        for c in &channels {
            for s in &subdirs {
                let unit = if c.is_empty() {
                    s.clone()
                } else {
                    format!("{c}/{s}")
                };
                if RelPath::new(format!("{unit}/{longest}")).is_err() {
                    return Err(keys.error(
                        "channels",
                        format!("\"{c}\" is too long to hold the documents of subdir \"{s}\""),
                    ));
                }
            }
        }
        let filter = Filter {
            packages: keys.globs("packages")?,
            exclude: keys.globs("exclude")?.unwrap_or_default(),
            policy: policy.clone(),
        };
        Ok(CondaOptions {
            channels,
            subdirs,
            filter,
        })
    }
}

pub struct Conda {
    opts: CondaOptions,
    /// The first configured upstream base (ends with `/`): package, shard
    /// and base URLs are resolved against it (the core falls back to the
    /// others).
    base: Url,
    max_document: u64,
}

impl Conda {
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Conda, String> {
        Ok(Conda::new(ctx, CondaOptions::from_keys(keys, ctx.policy)?))
    }

    pub fn new(ctx: &MirrorContext, opts: CondaOptions) -> Conda {
        Conda {
            opts,
            base: ctx.upstreams[0].clone(),
            max_document: ctx.spec.max_document,
        }
    }

    /// The units: `<channel>/<subdir>`, or `<subdir>` for the root channel.
    pub fn units(&self) -> Vec<String> {
        let mut units = Vec::new();
        for c in &self.opts.channels {
            for s in &self.opts.subdirs {
                units.push(if c.is_empty() {
                    s.clone()
                } else {
                    format!("{c}/{s}")
                });
            }
        }
        units
    }
}

impl Adapter for Conda {
    fn select<'a>(
        &'a self,
        _src: &'a dyn DocSource,
    ) -> BoxFuture<'a, Result<Selection, SyncError>> {
        let units = self.units();
        Box::pin(async move { Ok(Selection::Units(units)) })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        now: u64,
        full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(self.sync_subdir(unit, src, now, full))
    }

    fn changes_with_time(&self) -> bool {
        self.opts.filter.policy.cooldown.is_some()
    }

    fn lazy_unit(&self, _parent: &str, _name: &str) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests;
