//! rustup's dist server: the channel manifests rustup reads and the
//! component archives they name, in upstream's layout, byte-identical.
//!
//! ```text
//! dist/channel-rust-<channel>.toml          a channel's manifest (+ .sha256, .asc):
//! dist/<date>/channel-rust-<channel>.toml   checked against its .sha256 and, with a
//!                                           keyring, its .asc at sync
//! dist/<date>/<pkg>-<version>-<target>.tar.{gz,xz,zst}   every archive the manifest
//!                                           lists for the selected targets and profiles,
//!                                           verified by its sha256 on first read
//! ```
//!
//! A channel (`stable`, `1.95.0`, `nightly-2026-11-30`) is the unit: its
//! manifest, `.sha256` and `.asc` change together in one generation, and a
//! channel whose refresh fails keeps its previous files while the others
//! update. The trust chain is the one rustup follows, with the signature it
//! no longer checks: `.asc` (gpgv, the configured keyring) → manifest ←
//! `.sha256` → each archive's `hash`/`xz_hash`. A sync whose `.sha256` is
//! unchanged costs that one request, as rustup's own update check does.
//!
//! Manifests are served as upstream has them: their URLs name upstream's
//! host, and rustup itself replaces it with `RUSTUP_DIST_SERVER`. The
//! mirror keeps each URL's path (see `manifest.rs`). Manifests give no
//! sizes, so an archive is fetched and verified on its first `stat`.

pub mod channel;
pub mod manifest;

use std::path::PathBuf;
use std::sync::Arc;

use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::keys::Section;
use crate::layout::{
    Adapter, BoxFuture, Capabilities, Doc, DocRequest, DocSource, LayoutDef, MirrorContext,
    Selection, Sizes, SyncError, UnitOutput, get_optional,
};
use crate::path::RelPath;

pub use channel::Channel;
pub use manifest::Filter;

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "rustup",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: None,
        lazy: false,
        sizes: Sizes::Fetched,
        placeholders: false,
        // Channels are signed one by one: a failed channel fails alone.
        signed: false,
        cooldown: false,
        versions: None,
        retain: crate::layout::RetainSupport::No(
            "a channel's manifest is signed and names one release: list the releases to keep as channels of their own (\"1.94.0\", \"nightly-2026-11-30\")",
        ),
    },
    configure: |ctx, keys| Ok(Box::new(Rustup::from_keys(ctx, keys)?)),
    file_digests: &[],
};

/// What a rustup mirror carries and how it is trusted.
#[derive(Clone, Debug, PartialEq)]
pub struct RustupOptions {
    pub channels: Vec<Channel>,
    pub filter: Filter,
    /// OpenPGP keyring that must have signed each manifest (`.asc`).
    pub keyring: Option<PathBuf>,
}

/// Is `s` shaped like a target triple (`x86_64-unknown-linux-gnu`)?
fn is_triple(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

impl RustupOptions {
    /// Reads `channels` (required), `targets`, `profiles` and `keyring`.
    pub fn from_keys(keys: &mut Section) -> Result<RustupOptions, String> {
        let names = keys.string_or_list("channels")?;
        let names = keys.required(
            "channels",
            names,
            "the channels to mirror, e.g. [\"stable\", \"1.95.0\", \"nightly-2026-11-30\"]",
        )?;
        let mut channels: Vec<Channel> = Vec::new();
        for n in &names {
            let c = Channel::parse(n).map_err(|e| keys.error("channels", e))?;
            if channels.contains(&c) {
                return Err(keys.error("channels", format!("\"{n}\" is listed twice")));
            }
            channels.push(c);
        }
        if channels.is_empty() {
            return Err(keys.error("channels", "lists no channel"));
        }
        let targets = keys.string_or_list("targets")?;
        if let Some(bad) = targets.iter().flatten().find(|t| !is_triple(t)) {
            return Err(keys.error(
                "targets",
                format!("\"{bad}\" is not a target triple such as \"x86_64-unknown-linux-gnu\""),
            ));
        }
        let profiles = keys.string_or_list("profiles")?;
        if let Some(bad) = profiles
            .iter()
            .flatten()
            .find(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
        {
            return Err(keys.error(
                "profiles",
                format!("\"{bad}\" is not a profile name such as \"minimal\", \"default\" or \"complete\""),
            ));
        }
        let keyring = crate::gpgv::keyring_key(
            keys,
            "point at the OpenPGP key that signs the channel manifests",
        )?;
        Ok(RustupOptions {
            channels,
            filter: Filter { targets, profiles },
            keyring,
        })
    }
}

pub struct Rustup {
    opts: RustupOptions,
    /// The first upstream base (ends with `/`): archives are fetched under it.
    base: String,
    gpg: Option<Arc<crate::gpgv::Gpgv>>,
}

use crate::layout::bad_metadata as bad;

fn entry(path: String, body: Body) -> Entry {
    Entry {
        path: RelPath::new(path).expect("channel paths are valid"),
        mtime: None,
        body,
    }
}

/// The digest a `.sha256` sidecar gives (`sha256sum` format: the hex first).
fn sidecar_digest(doc: &Doc) -> Result<Digest, SyncError> {
    let text = String::from_utf8_lossy(&doc.body);
    let hex = text.split_whitespace().next().unwrap_or("");
    Digest::from_hex(Algo::Sha256, hex)
        .map_err(|e| bad(&doc.url, format!("is not a sha256sum line ({e})")))
}

impl Rustup {
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Rustup, String> {
        Ok(Rustup::new(ctx, RustupOptions::from_keys(keys)?))
    }

    pub fn new(ctx: &MirrorContext, opts: RustupOptions) -> Rustup {
        Rustup {
            gpg: opts
                .keyring
                .as_deref()
                .map(|k| Arc::new(crate::gpgv::Gpgv::new(k))),
            opts,
            base: ctx.base(),
        }
    }

    /// One channel: its manifest checked against `.sha256` (and `.asc`),
    /// and the archives it lists.
    async fn channel(
        &self,
        c: &Channel,
        src: &dyn DocSource,
        full: bool,
    ) -> Result<Option<UnitOutput>, SyncError> {
        let path = c.manifest_path();
        // A configured channel upstream lacks is an error, not an empty channel.
        let sum = src
            .get(DocRequest {
                path: format!("{path}.sha256"),
                accept: None,
            })
            .await?;
        if sum.unchanged && !full {
            return Ok(Some(UnitOutput {
                entries: Vec::new(),
                rejected: 0,
                unchanged: true,
            }));
        }
        let want = sidecar_digest(&sum)?;
        let doc = src
            .get(DocRequest {
                path: path.clone(),
                accept: None,
            })
            .await?;
        let got = Digest::sha256_of(&doc.body);
        if got != want {
            return Err(bad(
                &doc.url,
                format!(
                    "digest mismatch: {} gives {want}, upstream sent {got} (upstream may be mid-update; the channel keeps its previous files)",
                    sum.url
                ),
            ));
        }
        let asc = get_optional(src, format!("{path}.asc")).await?;
        crate::gpgv::check_detached(self.gpg.as_ref(), &doc, asc.as_ref(), "the manifest").await?;
        let listing =
            manifest::parse(&doc.body, &self.opts.filter).map_err(|e| bad(&doc.url, e))?;
        for r in &listing.rejected {
            tracing::warn!(url = %doc.url, "leaving out {r}");
        }
        for p in &listing.missing_profiles {
            tracing::warn!(url = %doc.url, profile = %p, "the manifest defines no such profile");
        }
        let mut entries = Vec::with_capacity(listing.files.len() + 3);
        for l in listing.files {
            entries.push(Entry {
                body: Body::Remote {
                    url: format!("{}{}", self.base, l.path),
                    size: None,
                    digest: l.digest,
                },
                path: l.path,
                mtime: None,
            });
        }
        entries.push(entry(path.clone(), doc.into_body()));
        entries.push(entry(format!("{path}.sha256"), sum.into_body()));
        if let Some(a) = asc {
            entries.push(entry(format!("{path}.asc"), a.into_body()));
        }
        Ok(Some(UnitOutput {
            entries,
            rejected: listing.rejected.len(),
            unchanged: false,
        }))
    }
}

impl Adapter for Rustup {
    fn select<'a>(
        &'a self,
        _src: &'a dyn DocSource,
    ) -> BoxFuture<'a, Result<Selection, SyncError>> {
        let units = self
            .opts
            .channels
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        Box::pin(async move { Ok(Selection::Units(units)) })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        _now: u64,
        full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(async move {
            match self.opts.channels.iter().find(|c| c.name() == unit) {
                Some(c) => self.channel(c, src, full).await,
                None => Ok(None),
            }
        })
    }

    fn lazy_unit(&self, _parent: &str, _name: &str) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests;
