//! Debian: the archive layout apt reads, indistinguishable from a full
//! mirror while holding only what was read.
//!
//! ```text
//! dists/<suite>/InRelease, Release, Release.gpg    byte-identical, signature checked at sync
//! dists/<suite>/<comp>/binary-<arch>/Packages.*     every index Release lists for the configured
//! dists/<suite>/<comp>/…                            components and architectures, with its size and
//!                                                   SHA256 from Release
//! dists/<suite>/<dir>/by-hash/SHA256/<hex>          an alias of every listed index (derived)
//! pool/<comp>/<prefix>/<source>/<file>              every file the Packages (and Sources) name
//! ```
//!
//! The trust chain is checked end to end: InRelease (or Release +
//! Release.gpg) must verify against the configured keyring and be within
//! `Valid-Until`; each index is checked against Release's size and SHA256;
//! each pool file against its stanza's SHA256 and size, when read.
//! Packages and Sources are fetched at sync (the tree needs them); the
//! other indexes (Contents, Translation, dep11, installer files) are
//! fetched and verified on first read. An uncompressed `Packages` that
//! Release lists but upstream does not serve is synthesized from the
//! verified compressed one, and checked against Release too.
//!
//! A sync whose InRelease is unchanged costs one request and builds
//! nothing. Index files of superseded Releases stay reachable through
//! `by-hash/` for `by_hash_grace`, so an apt client mid-update never sees
//! "Hash Sum mismatch".

mod deb822;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::{Body, Entry, Generation, Kind};
use crate::digest::Digest;
use crate::keys::Section;
use crate::layout::{
    Adapter, BoxFuture, Capabilities, Doc, DocError, DocRequest, DocSource, Keep, LayoutDef,
    MirrorContext, SeenRelease, SeenReleases, Selection, Sizes, SyncError, UnitOutput,
};
use crate::path::RelPath;

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "debian",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: None,
        lazy: false,
        sizes: Sizes::Listed,
        placeholders: false,
        signed: true,
        // Holds a new Release back, never rewrites one (`mirror/cooldown.rs`).
        cooldown: true,
        versions: None,
        retain: crate::layout::RetainSupport::Signed,
    },
    configure: |ctx, keys| Ok(Box::new(Debian::from_keys(ctx, keys)?)),
    file_digests: &[],
};

/// What a Debian mirror carries and how its archive is trusted.
#[derive(Clone, Debug, PartialEq)]
pub struct DebianOptions {
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub architectures: Vec<String>,
    /// Also `Sources` and the source files in `pool/`.
    pub sources: bool,
    /// OpenPGP keyring that must have signed each suite's Release.
    pub keyring: PathBuf,
    /// How long index files of a superseded Release stay reachable by hash.
    pub by_hash_grace: Duration,
}

impl DebianOptions {
    /// Reads `suites` (required), `components`, `architectures`, `sources`,
    /// `keyring` (required) and `by_hash_grace`.
    pub fn from_keys(keys: &mut Section) -> Result<DebianOptions, String> {
        let names = |keys: &Section, key: &str, v: Vec<String>, allow_slash: bool| {
            for n in &v {
                let ok = if allow_slash {
                    RelPath::new(n.as_str()).is_ok()
                } else {
                    crate::path::check_name(n).is_ok()
                };
                if !ok || n.contains(char::is_whitespace) {
                    return Err(keys.error(key, format!("\"{n}\" is not a usable name")));
                }
            }
            Ok(v)
        };
        let suites = keys.string_or_list("suites")?;
        let suites = keys.required(
            "suites",
            suites,
            "e.g. [\"bookworm\", \"bookworm-updates\"]",
        )?;
        if suites.is_empty() {
            return Err(keys.error("suites", "give at least one suite"));
        }
        let suites = names(keys, "suites", suites, true)?;
        let components = keys
            .string_or_list("components")?
            .unwrap_or_else(|| vec!["main".into()]);
        let components = names(keys, "components", components, true)?;
        let architectures = keys
            .string_or_list("architectures")?
            .unwrap_or_else(|| vec!["amd64".into(), "all".into()]);
        let architectures = names(keys, "architectures", architectures, false)?;
        let sources = keys.boolean("sources")?.unwrap_or(false);
        let keyring = crate::gpgv::keyring_key(
            keys,
            "install the archive's keyring package or point at its key",
        )?;
        let keyring = keys.required(
            "keyring",
            keyring,
            "the archive's OpenPGP keyring, e.g. /usr/share/keyrings/debian-archive-keyring.gpg",
        )?;
        let by_hash_grace = keys
            .duration("by_hash_grace")?
            .unwrap_or(Duration::from_secs(86400));
        Ok(DebianOptions {
            suites,
            components,
            architectures,
            sources,
            keyring,
            by_hash_grace,
        })
    }
}

pub use deb822::{
    IndexKind, IndexParser, Listed, PoolFile, Release, parse_packages, parse_release, parse_sources,
};

pub struct Debian {
    opts: DebianOptions,
    /// The first upstream base URL; artifact URLs fall back to the others.
    base: String,
    dists: String,
    gpg: Arc<crate::gpgv::Gpgv>,
    max_document: u64,
    /// Each suite's Release as last verified.
    seen: SeenReleases,
}

/// A suite's Release after its signature checked out.
struct Verified {
    /// The signed text.
    text: String,
    /// Signed files to serve, byte-identical.
    serve: Vec<(&'static str, Vec<u8>)>,
    /// InRelease is the same as at the last sync.
    unchanged: bool,
}

/// Compressions apt understands, in the order regfs prefers to read them
/// (gzip decodes several times faster than xz).
const COMPRESSIONS: &[&str] = &[".gz", ".xz", ""];

use crate::layout::bad_metadata as bad;

impl Debian {
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Debian, String> {
        Ok(Debian::new(ctx, DebianOptions::from_keys(keys)?))
    }

    pub fn new(ctx: &MirrorContext, opts: DebianOptions) -> Debian {
        Debian {
            gpg: Arc::new(crate::gpgv::Gpgv::new(&opts.keyring)),
            opts,
            base: ctx.base(),
            dists: ctx.spec.path("dists").to_string(),
            max_document: ctx.spec.max_document,
            seen: SeenReleases::default(),
        }
    }

    /// Is this Release entry part of the configured components and architectures?
    fn wanted(&self, path: &str, archs: &[String]) -> bool {
        let rest = match self.opts.components.iter().find_map(|c| {
            path.strip_prefix(c.as_str())
                .and_then(|r| r.strip_prefix('/'))
        }) {
            Some(rest) => rest,
            None if !path.contains('/') => path,
            None => return false,
        };
        for token in rest.split(['/', '-', '.', '_']) {
            if token == "source" || token == "Sources" {
                if !self.opts.sources {
                    return false;
                }
            } else if (archs.iter().any(|a| a == token) || token == "all")
                && !self.opts.architectures.iter().any(|a| a == token)
            {
                return false;
            }
        }
        true
    }

    async fn fetch(&self, src: &dyn DocSource, path: String) -> Result<Option<Doc>, SyncError> {
        match src.get(DocRequest { path, accept: None }).await {
            Ok(doc) => Ok(Some(doc)),
            Err(DocError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Fetches and verifies the suite's Release. With `full` false and an
    /// unchanged InRelease, Release and Release.gpg are not even requested.
    async fn release(
        &self,
        suite: &str,
        src: &dyn DocSource,
        full: bool,
    ) -> Result<Verified, SyncError> {
        let d = format!("{}/{suite}", self.dists);
        let inrelease = self.fetch(src, format!("{d}/InRelease")).await?;
        let unchanged = inrelease.as_ref().is_some_and(|d| d.unchanged);
        let (release, sig) = if unchanged && !full {
            (None, None)
        } else {
            (
                self.fetch(src, format!("{d}/Release")).await?,
                self.fetch(src, format!("{d}/Release.gpg")).await?,
            )
        };
        let url = format!("{}{d}/", self.base);
        let gpg = self.gpg.clone();
        let (ir, r, s) = (
            inrelease.map(|d| d.body),
            release.map(|d| d.body),
            sig.map(|d| d.body),
        );
        tokio::task::spawn_blocking(move || {
            let mut serve = Vec::new();
            let text = match (&ir, &r, &s) {
                (Some(ir), _, _) => gpg
                    .verify_clearsigned(ir)
                    .map_err(|e| bad(&format!("{url}InRelease"), e))?,
                (None, Some(r), Some(s)) => {
                    gpg.verify_detached(r, s)
                        .map_err(|e| bad(&format!("{url}Release.gpg"), e))?;
                    r.clone()
                }
                _ => {
                    return Err(bad(
                        &url,
                        "neither InRelease nor Release with Release.gpg is served",
                    ));
                }
            };
            if let Some(ir) = ir {
                serve.push(("InRelease", ir));
            }
            if let (Some(r), Some(s)) = (r, s) {
                // Served only if it verifies too: nothing unsigned is published.
                match gpg.verify_detached(&r, &s) {
                    Ok(()) => {
                        serve.push(("Release", r));
                        serve.push(("Release.gpg", s));
                    }
                    Err(e) => tracing::warn!("{url}Release.gpg: {e}; serving InRelease only"),
                }
            }
            let text = String::from_utf8(text).map_err(|_| bad(&url, "Release is not UTF-8"))?;
            Ok(Verified {
                text,
                serve,
                unchanged,
            })
        })
        .await
        .map_err(|e| bad(&d, format!("verification task failed: {e}")))?
    }

    fn check_validity(&self, url: &str, rel: &Release, now: u64) -> Result<(), SyncError> {
        if let Some(until) = rel.valid_until {
            if until < now as i64 {
                return Err(bad(
                    url,
                    format!(
                        "Release expired: Valid-Until {} is in the past; upstream is stale",
                        crate::timestamp::format_rfc3339(until)
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn suite(
        &self,
        suite: &str,
        src: &dyn DocSource,
        now: u64,
        full: bool,
    ) -> Result<Option<UnitOutput>, SyncError> {
        let dists = format!("{}/{suite}", self.dists);
        let url = format!("{}{dists}/InRelease", self.base);
        let Verified {
            text,
            serve: signed,
            unchanged,
        } = self.release(suite, src, full).await?;
        let rel = parse_release(&text);
        for r in &rel.rejected {
            tracing::warn!(suite, "Release: ignoring unusable checksum line {r:?}");
        }
        self.check_validity(&url, &rel, now)?;
        self.seen.record(suite, text.as_bytes(), rel.valid_until);
        if unchanged && !full {
            // Still signed and valid; nothing to rebuild for this suite.
            return Ok(Some(UnitOutput {
                entries: Vec::new(),
                rejected: 0,
                unchanged: true,
            }));
        }
        let archs = rel.architectures.clone();
        let wanted: Vec<&Listed> = rel
            .files
            .iter()
            .filter(|f| self.wanted(f.path.as_str(), &archs))
            .collect();
        let mut entries = Vec::new();
        for (name, body) in signed {
            entries.push(Entry {
                path: RelPath::new(format!("{dists}/{name}")).expect("suite validated"),
                mtime: rel.date.and_then(|d| u32::try_from(d).ok()),
                body: Body::Inline(body),
            });
        }
        // Indexes the tree needs: fetch, verify against Release, parse.
        let mut have: std::collections::HashMap<String, Body> = std::collections::HashMap::new();
        let mut pool: Vec<PoolFile> = Vec::new();
        let mut rejected = 0;
        let stems: Vec<String> = {
            let mut s: Vec<String> = wanted
                .iter()
                .map(|f| strip_compression(f.path.as_str()).to_string())
                .filter(|p| {
                    (p.ends_with("/Packages") && p.contains("/binary-"))
                        || p.ends_with("/source/Sources")
                })
                .collect();
            s.sort();
            s.dedup();
            s
        };
        for stem in &stems {
            let plain = wanted.iter().find(|f| f.path.as_str() == stem).copied();
            let mut done = false;
            for ext in COMPRESSIONS {
                let Some(listed) = wanted
                    .iter()
                    .find(|f| f.path.as_str() == format!("{stem}{ext}"))
                    .copied()
                else {
                    continue;
                };
                let Some(doc) = self.fetch(src, format!("{dists}/{}", listed.path)).await? else {
                    continue;
                };
                let url = doc.url.clone();
                let kind = if stem.ends_with("Sources") {
                    IndexKind::Sources
                } else {
                    IndexKind::Packages
                };
                // The uncompressed form Release lists is kept (synthesized) as it streams by.
                let keep = match plain {
                    Some(p) => Some(src.keep(&p.sha256, p.size).map_err(|e| bad(&url, e))?),
                    None => None,
                };
                let (listed, plain_listed, limit) =
                    (listed.clone(), plain.cloned(), self.max_document);
                let (body, stored) = (doc.body, doc.stored);
                let parsed = tokio::task::spawn_blocking(move || -> Result<_, SyncError> {
                    check(&url, &body, listed.size, &listed.sha256)?;
                    let mut sink =
                        IndexSink::new(kind, plain_listed.as_ref().map_or(limit, |p| p.size), keep);
                    decompress_into(&url, &body, &mut sink)?;
                    let (files, rejects, keep, digest, size) = sink.finish();
                    if let (Some(p), Some(keep)) = (&plain_listed, keep) {
                        let what = format!("{url} decompressed");
                        if size != p.size || digest != p.sha256 {
                            return Err(bad(
                                &what,
                                format!(
                                    "{size} bytes with {digest}, but Release lists {} with {}",
                                    p.size, p.sha256
                                ),
                            ));
                        }
                        keep.commit().map_err(|e| bad(&what, e))?;
                    }
                    for r in &rejects {
                        tracing::warn!("{url}: skipping {r}");
                    }
                    // Served from the metadata store when the source kept it there.
                    let local = match stored {
                        Some(d) if d == listed.sha256 => Body::Stored {
                            digest: d,
                            size: listed.size,
                        },
                        _ => Body::Inline(body),
                    };
                    Ok((local, files, rejects.len()))
                })
                .await
                .map_err(|e| bad(stem, format!("index task failed: {e}")))??;
                let (local, files, n_bad) = parsed;
                have.insert(format!("{stem}{ext}"), local);
                if let Some(p) = plain.filter(|_| !ext.is_empty()) {
                    have.insert(
                        stem.clone(),
                        Body::Stored {
                            digest: p.sha256.clone(),
                            size: p.size,
                        },
                    );
                }
                pool.extend(files);
                rejected += n_bad;
                done = true;
                break;
            }
            if !done {
                return Err(bad(
                    &format!("{}{dists}/{stem}", self.base),
                    "no listed form of this index could be fetched",
                ));
            }
        }
        for f in &wanted {
            let p = f.path.as_str();
            // Invariant 9: a path Release may name but the tree cannot hold
            // (PATH_MAX below `dists/<suite>/`) is left out.
            let Ok(path) = RelPath::new(format!("{dists}/{p}")) else {
                tracing::warn!(
                    suite,
                    file = p,
                    "leaving out an index whose path is too long for the tree"
                );
                rejected += 1;
                continue;
            };
            let dir = p
                .rsplit_once('/')
                .map_or(dists.clone(), |(d, _)| format!("{dists}/{d}"));
            let (body, alias) = match have.remove(p) {
                Some(local) => (
                    local,
                    Body::Stored {
                        digest: f.sha256.clone(),
                        size: f.size,
                    },
                ),
                None => {
                    let remote = Body::Remote {
                        url: format!("{}{dists}/{p}", self.base),
                        size: Some(f.size),
                        digest: f.sha256.clone(),
                    };
                    (remote.clone(), remote)
                }
            };
            entries.push(Entry {
                path,
                mtime: None,
                body,
            });
            let hashes = [
                ("SHA256", Some(f.sha256.hex())),
                ("SHA512", f.sha512.clone()),
            ];
            for (algo, hex) in hashes.into_iter().filter_map(|(a, h)| Some((a, h?))) {
                let Ok(alias_path) = RelPath::new(format!("{dir}/by-hash/{algo}/{hex}")) else {
                    tracing::warn!(
                        suite,
                        file = p,
                        "leaving out a by-hash path too long for the tree"
                    );
                    rejected += 1;
                    continue;
                };
                entries.push(Entry {
                    path: alias_path,
                    mtime: None,
                    body: alias.clone(),
                });
            }
        }
        for f in pool {
            entries.push(Entry {
                body: Body::Remote {
                    url: format!("{}{}", self.base, f.path),
                    size: Some(f.size),
                    digest: f.sha256,
                },
                path: f.path,
                mtime: None,
            });
        }
        Ok(Some(UnitOutput {
            entries,
            rejected,
            unchanged: false,
        }))
    }
}

fn strip_compression(p: &str) -> &str {
    [".gz", ".xz", ".bz2", ".lzma", ".zst"]
        .iter()
        .find_map(|e| p.strip_suffix(e))
        .unwrap_or(p)
}

fn check(url: &str, data: &[u8], size: u64, sha256: &Digest) -> Result<(), SyncError> {
    if data.len() as u64 != size {
        return Err(bad(
            url,
            format!("size {} does not match Release ({size})", data.len()),
        ));
    }
    let actual = Digest::sha256_of(data);
    if &actual != sha256 {
        return Err(bad(
            url,
            format!("digest mismatch: Release promised {sha256}, upstream sent {actual}"),
        ));
    }
    Ok(())
}

/// Where a decompressing index streams: it hashes the bytes (the
/// uncompressed form Release lists must match), keeps them if asked,
/// parses them, and refuses more than `limit` bytes, so neither a large
/// index nor a decompression bomb is ever held in memory.
struct IndexSink {
    parser: IndexParser,
    keep: Option<Box<dyn Keep>>,
    hasher: crate::digest::Hasher,
    written: u64,
    limit: u64,
}

impl IndexSink {
    fn new(kind: IndexKind, limit: u64, keep: Option<Box<dyn Keep>>) -> IndexSink {
        IndexSink {
            parser: IndexParser::new(kind),
            keep,
            hasher: crate::digest::Hasher::new(crate::digest::Algo::Sha256),
            written: 0,
            limit,
        }
    }

    /// Files named, stanzas rejected, the keep (uncommitted), and the
    /// SHA-256 and size of the decompressed bytes.
    #[allow(clippy::type_complexity)]
    fn finish(
        self,
    ) -> (
        Vec<PoolFile>,
        Vec<String>,
        Option<Box<dyn Keep>>,
        Digest,
        u64,
    ) {
        let (files, bad) = self.parser.finish();
        (files, bad, self.keep, self.hasher.finish(), self.written)
    }

    fn exceeded(&self) -> bool {
        self.written > self.limit
    }
}

impl std::io::Write for IndexSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.written = self.limit + 1;
            return Err(std::io::Error::other("decompressed size limit exceeded"));
        }
        self.written += buf.len() as u64;
        self.hasher.update(buf);
        if let Some(k) = &mut self.keep {
            k.write_all(buf)?;
        }
        self.parser.feed(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decompresses `data` by its magic (gzip, xz, or none) into `sink`.
fn decompress_into(url: &str, data: &[u8], sink: &mut IndexSink) -> Result<(), SyncError> {
    use std::io::Write;
    let result = if data.starts_with(&[0x1f, 0x8b]) {
        std::io::copy(&mut flate2::read::MultiGzDecoder::new(data), sink)
            .map(drop)
            .map_err(|e| format!("bad gzip data: {e}"))
    } else if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        lzma_rs::xz_decompress(&mut std::io::BufReader::new(data), sink)
            .map_err(|e| format!("bad xz data: {e}"))
    } else {
        sink.write_all(data).map_err(|e| e.to_string())
    };
    if sink.exceeded() {
        return Err(bad(
            url,
            format!("decompresses to more than {} bytes", sink.limit),
        ));
    }
    result.map_err(|e| bad(url, e))
}

impl Adapter for Debian {
    fn select<'a>(
        &'a self,
        _src: &'a dyn DocSource,
    ) -> BoxFuture<'a, Result<Selection, SyncError>> {
        Box::pin(async move { Ok(Selection::Units(self.opts.suites.clone())) })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        now: u64,
        full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(self.suite(unit, src, now, full))
    }

    fn lazy_unit(&self, _parent: &str, _name: &str) -> Option<String> {
        None
    }

    fn release_seen(&self, unit: &str) -> Option<SeenRelease> {
        self.seen.get(unit)
    }

    /// Keeps by-hash aliases of superseded indexes for `by_hash_grace`. An
    /// alias retires when its index is no longer listed; its mtime records
    /// when, so the grace period survives further syncs and restarts.
    fn carry_over(&self, prev: &Generation, entries: &[Entry], now: u64) -> Vec<Entry> {
        let fresh: HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        let grace = self.opts.by_hash_grace.as_secs();
        let mut out = Vec::new();
        let Some(root) = prev.resolve(&self.dists) else {
            return out;
        };
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let is_hash_dir = matches!(&*prev.name(dir).as_str(), "SHA256" | "SHA512")
                && prev.name(prev.parent(dir)) == "by-hash";
            for child in prev.children(dir) {
                if prev.kind(child) == Kind::Dir {
                    stack.push(child);
                    continue;
                }
                if !is_hash_dir {
                    continue;
                }
                let path = prev.path(child);
                if fresh.contains(path.as_str()) {
                    continue;
                }
                let Some(f) = prev.file(child) else { continue };
                // Current in `prev` if an index beside by-hash/ had this digest.
                let index_dir = prev.parent(prev.parent(dir));
                let was_current = prev.children(index_dir).any(|c| {
                    prev.kind(c) == Kind::File && prev.file(c).is_some_and(|o| o.digest == f.digest)
                });
                let retired = if was_current {
                    now
                } else {
                    u64::from(prev.mtime(child))
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
