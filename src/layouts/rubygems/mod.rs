//! RubyGems: the compact index and the `.gem` files it checksums, as a
//! RubyGems server serves them (bundler and `gem` read the same paths).
//!
//! ```text
//! versions                          upstream's, byte-identical (without `gems`), or only the
//!                                   `gems` selected, one line each (with their upstream MD5s)
//! names                             likewise
//! info/<gem>                        byte-identical, checked against the MD5 /versions gives
//! gems/<name>-<version>[-<platform>].gem   verified by the sha256 of its /info line
//! quick/Marshal.4.8/<stem>.gemspec.rz      `quick_specs`: byte-identical, no digest
//! specs.4.8.gz, latest_specs.4.8.gz, prerelease_specs.4.8.gz   `classic_index`: likewise
//! ```
//!
//! Units: a gem (its `/info` and `.gem` files), one quick spec
//! (`quick/<stem>`), and [`INDEX`] (`/versions`, `/names`, the classic
//! index), which every sync refreshes.
//!
//! `/versions` decides what bundler asks for: it fetches `/info/<gem>` only
//! for gems `/versions` lists. Without `gems` the mirror serves upstream's
//! `/versions` as it is, so every gem is reachable and `/info/<gem>`
//! materializes on its first lookup; with `gems` it serves a `/versions` of
//! the selected gems alone. Either way the MD5 it gives for a gem is that of
//! the `/info` file the mirror serves, which was checked against upstream's
//! `/versions` (see `upstream.rs`). `.gem` sizes are not published: a
//! `.gem` is fetched and verified on its first `stat`.
//!
//! The quick specs and the classic index carry no digest anywhere: served
//! only where configured, byte-identical, and counted in `status`
//! ([`Adapter::unverified`]). `gem install` needs the quick spec of each
//! version it installs, even on the compact index; bundler needs neither.

mod index;
mod upstream;

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::digest::md5;

use crate::catalog::{Body, Entry, Generation};
use crate::keys::{Glob, Section};
use crate::layout::{
    Adapter, BoxFuture, Capabilities, DocSource, LayoutDef, MirrorContext, Selection, Sizes,
    SyncError, UnitOutput, get_optional,
};
use crate::path::RelPath;

pub use index::{gem_of_stem, is_gem_name};

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "rubygems",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: Some("gems"),
        lazy: true,
        sizes: Sizes::Fetched,
        placeholders: false,
        signed: false,
        cooldown: false,
        versions: None,
        retain: crate::layout::RetainSupport::No(
            "not built for RubyGems: its /versions is upstream's append-only file, served as it is so bundler can fetch only what was appended, and the MD5 it gives each /info file would not match an /info with retained lines",
        ),
    },
    configure: |ctx, keys| Ok(Box::new(RubyGems::from_keys(ctx, keys)?)),
    file_digests: &[],
};

/// The unit holding `/versions`, `/names` and the classic index (no gem
/// name has a `:`).
pub const INDEX: &str = ":index";
/// Where quick specs live, in the tree and upstream.
pub const QUICK: &str = "quick/Marshal.4.8";
/// The classic index's files, as `gem generate_index` writes them.
pub const CLASSIC: [&str; 3] = [
    "specs.4.8.gz",
    "latest_specs.4.8.gz",
    "prerelease_specs.4.8.gz",
];
/// Largest quick spec inflated to check it (real ones are a few KiB).
const MAX_SPEC: u64 = 16 << 20;
/// An `/info` file refused as inconsistent is refused again, without
/// another look at `/versions`, for this long (a client retrying must not
/// make the mirror fetch `/versions` each time).
const REFUSED_FOR: Duration = Duration::from_secs(60);

pub struct RubyGems {
    filter: Option<Vec<Glob>>,
    quick_specs: bool,
    classic_index: bool,
    /// The first upstream base (ends with `/`): `.gem` URLs are under it.
    base: String,
    upstream: upstream::Upstream,
    /// Gems whose `/info` disagreed with a fresh `/versions`: that file's
    /// MD5 and when (bounded: cleared past 10,000).
    refused: Mutex<HashMap<String, ([u8; 16], Instant)>>,
}

use crate::layout::bad_metadata as bad;

fn entry(path: String, body: Body) -> Entry {
    Entry {
        path: RelPath::new(path).expect("checked names"),
        mtime: None,
        body,
    }
}

impl RubyGems {
    /// Reads `gems` (names or globs; none: every gem, lazily),
    /// `quick_specs` and `classic_index` (both off by default: they carry
    /// no digest).
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<RubyGems, String> {
        let filter = keys.globs("gems")?;
        let classic_index = keys.boolean("classic_index")?.unwrap_or(false);
        let quick_specs = keys.boolean("quick_specs")?.unwrap_or(false) || classic_index;
        if classic_index && filter.is_some() {
            return Err(keys.error(
                "classic_index",
                "upstream's classic index lists every gem it has, so it cannot be served by a mirror limited by `gems`; set quick_specs = true for `gem install` instead",
            ));
        }
        if let Some(bad) = filter
            .iter()
            .flatten()
            .find(|g| g.is_literal() && !is_gem_name(g.as_str()))
        {
            return Err(keys.error("gems", format!("\"{}\" is not a gem name", bad.as_str())));
        }
        Ok(RubyGems {
            filter,
            quick_specs,
            classic_index,
            base: ctx.base(),
            upstream: upstream::Upstream::default(),
            refused: Mutex::default(),
        })
    }

    /// Does a sync need `gem`'s line of `/versions`? (Only with `gems`.)
    fn selects(&self, gem: &str) -> bool {
        self.filter.is_some() && self.allowed(gem)
    }

    fn allowed(&self, gem: &str) -> bool {
        is_gem_name(gem)
            && self
                .filter
                .as_ref()
                .is_none_or(|globs| globs.iter().any(|g| g.matches(gem)))
    }

    /// `/versions`, `/names` and the classic index.
    async fn index(&self, src: &dyn DocSource) -> Result<UnitOutput, SyncError> {
        let snap = match self.upstream.synced() {
            Some(s) => s,
            None => self.upstream.sync(src, &|g| self.selects(g)).await?,
        };
        let mut entries = Vec::new();
        if self.filter.is_some() {
            entries.push(entry(
                upstream::VERSIONS.into(),
                Body::Inline(snap.versions.render_selected()),
            ));
            entries.push(entry(
                "names".into(),
                Body::Inline(snap.versions.render_names()),
            ));
        } else {
            let body = snap.body.clone().expect("a sync's copy keeps its body");
            entries.push(entry(upstream::VERSIONS.into(), body));
            match get_optional(src, "names".into()).await? {
                Some(doc) => entries.push(entry("names".into(), doc.into_body())),
                None => {
                    tracing::warn!(url = %snap.url, "upstream has no /names next to this /versions")
                }
            }
        }
        let mut rejected = 0;
        for file in CLASSIC.iter().filter(|_| self.classic_index) {
            match get_optional(src, file.to_string()).await? {
                Some(doc) if doc.body.starts_with(&[0x1f, 0x8b]) => {
                    entries.push(entry(file.to_string(), doc.into_body()))
                }
                Some(doc) => {
                    tracing::warn!(url = %doc.url, "leaving out the classic index file: not gzip");
                    rejected += 1;
                }
                None => tracing::warn!(file, "upstream has no such classic index file"),
            }
        }
        Ok(UnitOutput {
            entries,
            rejected,
            unchanged: false,
        })
    }

    /// Checks the MD5 of `gem`'s `/info` (from `url`) against upstream's
    /// `/versions`, fetching that again once if they disagree (unless this
    /// very file was refused lately).
    async fn check_info(
        &self,
        gem: &str,
        url: &str,
        md5: [u8; 16],
        src: &dyn DocSource,
    ) -> Result<(), SyncError> {
        let refused_lately = |refused: &HashMap<String, ([u8; 16], Instant)>| {
            refused
                .get(gem)
                .is_some_and(|(m, at)| *m == md5 && at.elapsed() < REFUSED_FOR)
        };
        let mut snap = self.upstream.latest(src).await?;
        if snap.versions.md5_of(gem) != Some(md5) && !refused_lately(&self.refused.lock().unwrap())
        {
            // Published since that /versions was fetched?
            snap = self.upstream.newer_than(src, snap.seq).await?;
        }
        let listed = snap.versions.md5_of(gem);
        let mut refused = self.refused.lock().unwrap();
        if listed == Some(md5) {
            refused.remove(gem);
            return Ok(());
        }
        if !refused_lately(&refused) {
            if refused.len() >= 10_000 {
                refused.clear();
            }
            refused.insert(gem.to_string(), (md5, Instant::now()));
        }
        let listed = listed.map_or("no line for it".to_string(), |m| {
            format!("MD5 {}", crate::digest::encode_hex(&m))
        });
        Err(bad(
            url,
            format!(
                "its MD5 is {}, but {} gives {listed}: upstream's compact index is inconsistent",
                crate::digest::encode_hex(&md5),
                snap.url
            ),
        ))
    }

    /// A gem: its `/info` file, checked against `/versions`, and its `.gem`s.
    async fn gem(&self, gem: &str, src: &dyn DocSource) -> Result<Option<UnitOutput>, SyncError> {
        if !self.allowed(gem) {
            return Ok(None);
        }
        let Some(doc) = get_optional(src, format!("info/{gem}")).await? else {
            return Ok(None);
        };
        let (versions, dropped) = index::parse_info(gem, &doc.body);
        for d in &dropped {
            tracing::warn!(url = %doc.url, "leaving out {d}");
        }
        let mut entries: Vec<Entry> = versions
            .into_iter()
            .map(|v| {
                let file = format!("{}.gem", v.stem);
                Entry {
                    path: RelPath::new(format!("gems/{file}")).expect("checked stem"),
                    mtime: None,
                    body: Body::Remote {
                        url: format!("{}gems/{file}", self.base),
                        size: None,
                        digest: v.sha256,
                    },
                }
            })
            .collect();
        // Checked after the /info's bytes (and their share of the document
        // budget) are let go: the check may fetch /versions.
        let (url, md5) = (doc.url.clone(), md5::md5(&doc.body));
        entries.push(entry(format!("info/{gem}"), doc.into_body()));
        self.check_info(gem, &url, md5, src).await?;
        Ok(Some(UnitOutput {
            entries,
            rejected: dropped.len(),
            unchanged: false,
        }))
    }

    /// One quick spec (`<stem>.gemspec.rz`), byte-identical. Nothing vouches
    /// for it; it must at least be a deflated Ruby Marshal stream.
    async fn quick(
        &self,
        stem: &str,
        src: &dyn DocSource,
    ) -> Result<Option<UnitOutput>, SyncError> {
        if !self.quick_specs || !gem_of_stem(stem).is_some_and(|g| self.allowed(g)) {
            return Ok(None);
        }
        let path = format!("{QUICK}/{stem}.gemspec.rz");
        let Some(doc) = get_optional(src, path.clone()).await? else {
            return Ok(None);
        };
        let mut spec = Vec::new();
        let inflated = flate2::read::ZlibDecoder::new(&doc.body[..])
            .take(MAX_SPEC)
            .read_to_end(&mut spec);
        if inflated.is_err() || !spec.starts_with(&[4, 8]) {
            return Err(bad(&doc.url, "is not a deflated Ruby Marshal 4.8 gemspec"));
        }
        Ok(Some(UnitOutput {
            entries: vec![entry(path, doc.into_body())],
            rejected: 0,
            unchanged: false,
        }))
    }
}

impl Adapter for RubyGems {
    fn select<'a>(&'a self, src: &'a dyn DocSource) -> BoxFuture<'a, Result<Selection, SyncError>> {
        Box::pin(async move {
            let snap = self.upstream.sync(src, &|g| self.selects(g)).await?;
            let mut seeds = vec![INDEX.to_string()];
            seeds.extend(snap.versions.selected_names().map(str::to_string));
            for g in self.filter.iter().flatten().filter(|g| g.is_literal()) {
                if snap.versions.md5_of(g.as_str()).is_none() {
                    tracing::warn!(url = %snap.url, gem = g.as_str(), "not listed upstream; skipped");
                }
            }
            Ok(Selection::Lazy(seeds))
        })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        _now: u64,
        _full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(async move {
            if unit == INDEX {
                return self.index(src).await.map(Some);
            }
            match unit.strip_prefix("quick/") {
                Some(stem) => self.quick(stem, src).await,
                None => self.gem(unit, src).await,
            }
        })
    }

    fn lazy_unit(&self, parent: &str, name: &str) -> Option<String> {
        let unit = match parent {
            "info" => name.to_string(),
            "gems" => gem_of_stem(name.strip_suffix(".gem")?)?.to_string(),
            QUICK if self.quick_specs => {
                let stem = name.strip_suffix(".gemspec.rz")?;
                gem_of_stem(stem).filter(|g| self.allowed(g))?;
                return Some(format!("quick/{stem}"));
            }
            _ => return None,
        };
        self.allowed(&unit).then_some(unit)
    }

    fn lazy_dir(&self, parent: &str, name: &str) -> bool {
        match (parent, name) {
            ("", "info" | "gems") => true,
            ("", "quick") | ("quick", "Marshal.4.8") => self.quick_specs,
            _ => false,
        }
    }

    fn unverified(&self, g: &Generation) -> u64 {
        let quick = g.resolve(QUICK).map_or(0, |d| g.children(d).len() as u64);
        let classic = CLASSIC.iter().filter(|f| g.resolve(f).is_some()).count() as u64;
        quick + classic
    }
}

#[cfg(test)]
mod tests;
