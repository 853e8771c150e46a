//! Maven: a Maven 2 repository, discovered path by path.
//!
//! ```text
//! <group/as/path>/maven-metadata.xml[.sha1|.md5|…]              plugin groups
//! <group/as/path>/<artifactId>/maven-metadata.xml[.sha1|…]     versions
//! <group/as/path>/<artifactId>/<version>/<artifactId>-<version>[-<classifier>].<ext>
//! <group/as/path>/<artifactId>/<version>/<…>.<ext>.sha1|.md5|.sha256|.sha512
//! ```
//!
//! Maven has no global listing and many upstreams serve no directory
//! listings, so the tree is built from what clients ask for: every file a
//! lookup names is a unit of its own. Materializing a file fetches its
//! checksum sidecars; the file itself is listed with the strongest digest
//! they give (SHA-512, SHA-256, then SHA-1; MD5 alone is not trusted) and
//! fetched and verified on first read. A file with no usable sidecar is not
//! served. `maven-metadata.xml` and every sidecar are served byte-identical,
//! and metadata is checked against its own sidecar.
//!
//! Directories above a file exist before anything under them is known: a
//! lookup of a directory-shaped name answers with an empty placeholder
//! directory (see [`Adapter::lazy_dir`]), so `group/…/version/file` resolves
//! one component at a time as the kernel asks.

use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::keys::{Glob, Section};
use crate::layout::{
    Adapter, BoxFuture, Capabilities, DocSource, LayoutDef, MirrorContext, Previous, Selection,
    Sizes, SyncError, UnitOutput, get_optional, literal_seeds,
};
use crate::path::{RelPath, check_name};

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "maven",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: Some("artifacts"),
        lazy: true,
        sizes: Sizes::Fetched,
        placeholders: true,
        signed: false,
        cooldown: false,
        versions: None,
        retain: crate::layout::RetainSupport::Yes,
    },
    configure: |ctx, keys| Ok(Box::new(Maven::from_keys(ctx, keys)?)),
    file_digests: &[],
};

/// Checksum sidecars, strongest first; `None`: served but never trusted.
const SIDECARS: [(&str, Option<Algo>); 4] = [
    (".sha512", Some(Algo::Sha512)),
    (".sha256", Some(Algo::Sha256)),
    (".sha1", Some(Algo::Sha1)),
    (".md5", None),
];

const METADATA: &str = "maven-metadata.xml";

/// Deepest directory a lookup may create (real repositories stay far below).
const MAX_DEPTH: usize = 24;

pub struct Maven {
    filter: Option<Vec<Glob>>,
    /// The first upstream base URL (ends with `/`).
    base: String,
    kinds: Kinds,
    /// `retain = "additive"`: a file upstream deleted stays while cached.
    additive: bool,
}

/// Lookups in a row that may find a sidecar kind absent before it is no
/// longer asked for.
const ABSENT_STREAK: u32 = 8;
/// A kind no longer asked for is still asked on every this-many-th lookup,
/// so one the repository starts publishing is found again.
const PROBE_EVERY: u64 = 64;

/// Which sidecar kinds this repository publishes, learned from lookups.
/// Many repositories have no `.sha512` or `.sha256` at all, and an
/// upstream's 404 can be as slow as its 200: a lookup that asks for every
/// kind waits for the slowest answer. A kind absent [`ABSENT_STREAK`] times
/// in a row is skipped (probed every [`PROBE_EVERY`]th lookup) while a
/// trusted kind keeps being found, so a lookup never goes without asking
/// for what it can verify against.
#[derive(Default)]
struct Kinds {
    /// Per entry of [`SIDECARS`]: lookups in a row that found none.
    absent: [std::sync::atomic::AtomicU32; SIDECARS.len()],
    lookups: std::sync::atomic::AtomicU64,
}

impl Kinds {
    /// Which of [`SIDECARS`] this lookup asks for.
    fn to_ask(&self) -> [bool; SIDECARS.len()] {
        use std::sync::atomic::Ordering::Relaxed;
        let probe = self.lookups.fetch_add(1, Relaxed) % PROBE_EVERY == 0;
        let known = |i: usize| self.absent[i].load(Relaxed) < ABSENT_STREAK;
        let trusted_known = (0..SIDECARS.len()).any(|i| SIDECARS[i].1.is_some() && known(i));
        std::array::from_fn(|i| probe || !trusted_known || known(i))
    }

    /// Records what a lookup that asked for kind `i` found.
    fn found(&self, i: usize, present: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if present {
            self.absent[i].store(0, Relaxed);
        } else {
            let _ = self.absent[i].fetch_update(Relaxed, Relaxed, |n| n.checked_add(1));
        }
    }
}

/// `name` without a sidecar extension, and that extension.
fn split_sidecar(name: &str) -> (&str, Option<&'static str>) {
    for (ext, _) in SIDECARS {
        if let Some(base) = name.strip_suffix(ext) {
            return (base, Some(ext));
        }
    }
    (name, None)
}

/// The digest a sidecar's text holds: its first token of the right length
/// that is hexadecimal (`<hex>`, `<hex>  <file>`, or `MD5 (f) = <hex>`).
pub fn parse_sidecar(algo: Algo, text: &[u8]) -> Option<Digest> {
    let text = std::str::from_utf8(text).ok()?;
    text.split_whitespace()
        .find_map(|t| Digest::from_hex(algo, t).ok())
}

/// `group:artifact` for a directory `group/as/path/artifact`.
fn coordinate(dir: &[&str]) -> Option<String> {
    let (artifact, group) = dir.split_last()?;
    (!group.is_empty()).then(|| format!("{}:{artifact}", group.join(".")))
}

impl Maven {
    /// Reads `artifacts` (`"groupId:artifactId"` coordinates, globs
    /// allowed; none: anything a client asks for).
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Maven, String> {
        let filter = keys.globs("artifacts")?;
        if let Some(g) = filter.iter().flatten().find(|g| {
            g.as_str().split_once(':').is_none_or(|(group, artifact)| {
                group.is_empty() || artifact.is_empty() || artifact.contains(':')
            })
        }) {
            return Err(keys.error(
                "artifacts",
                format!(
                    "\"{}\" is not a coordinate; write \"groupId:artifactId\" (globs allowed, e.g. \"org.apache.commons:*\")",
                    g.as_str()
                ),
            ));
        }
        Ok(Maven {
            filter,
            base: ctx.base(),
            kinds: Kinds::default(),
            additive: ctx.policy.retain == crate::policy::Retain::Additive,
        })
    }

    fn allowed(&self, coordinate: Option<String>) -> bool {
        match (&self.filter, coordinate) {
            (None, _) => true,
            (Some(globs), Some(c)) => globs.iter().any(|g| g.matches(&c)),
            (Some(_), None) => false,
        }
    }

    /// The unit a lookup of `name` in directory `parent` names, if `name` is
    /// file-shaped (every component valid, sidecar names included): `maven-metadata.xml` anywhere below the root, or
    /// `<artifact>-<version>…` inside `<artifact>/<version>/`.
    fn file_unit(&self, parent: &str, name: &str) -> Option<String> {
        let (base, _) = split_sidecar(name);
        let dir: Vec<&str> = parent.split('/').collect();
        let segment_ok = |s: &str| check_name(s).is_ok() && !s.starts_with('.');
        // The longest name the unit's files take (a `.sha512` sidecar) must
        // be representable: every component, and PATH_MAX for the whole.
        if parent.is_empty()
            || dir.len() >= MAX_DEPTH
            || !dir.iter().all(|s| segment_ok(s))
            || !segment_ok(&format!("{base}.sha512"))
            || RelPath::new(format!("{parent}/{base}.sha512")).is_err()
        {
            return None;
        }
        let allowed = if base == METADATA {
            // Artifact metadata (…/artifact/), a SNAPSHOT version's
            // (…/artifact/version/), or a plugin group's (…/group/).
            self.allowed(coordinate(&dir))
                || self.allowed(coordinate(&dir[..dir.len() - 1]))
                || self.filter.as_ref().is_some_and(|globs| {
                    let group = format!("{}:", dir.join("."));
                    globs.iter().any(|g| g.as_str().starts_with(&group))
                })
        } else {
            let [.., artifact, version] = dir.as_slice() else {
                return None;
            };
            let stem = version.strip_suffix("-SNAPSHOT").unwrap_or(version);
            let prefix = format!("{artifact}-{stem}");
            // `-<classifier>` and snapshot stamps may follow; an extension
            // always ends the name (`maven-shared-components` in
            // `org/apache/maven/shared/` is a directory).
            let named = base.strip_prefix(&prefix).is_some_and(|rest| {
                rest.starts_with(['.', '-'])
                    && rest
                        .rsplit_once('.')
                        .is_some_and(|(_, ext)| ext.bytes().any(|c| c.is_ascii_alphabetic()))
            });
            named && self.allowed(coordinate(&dir[..dir.len() - 1]))
        };
        allowed.then(|| format!("{parent}/{base}"))
    }

    /// Fetches the sidecars of `path` (the kinds [`Kinds`] says this
    /// repository has); returns the strongest trusted digest and an entry
    /// per sidecar upstream has.
    async fn sidecars(
        &self,
        path: &str,
        src: &dyn DocSource,
    ) -> Result<(Option<Digest>, Vec<Entry>, usize), SyncError> {
        let ask = self.kinds.to_ask();
        let docs = futures_util::future::join_all(SIDECARS.iter().zip(ask).map(
            |((ext, _), ask)| async move {
                match ask {
                    true => get_optional(src, format!("{path}{ext}")).await.map(Some),
                    false => Ok(None),
                }
            },
        ))
        .await;
        let docs: Vec<_> = docs
            .into_iter()
            .enumerate()
            .map(|(i, doc)| {
                if let Ok(Some(found)) = &doc {
                    self.kinds.found(i, found.is_some());
                }
                doc.map(Option::flatten)
            })
            .collect();
        let mut best = None;
        let mut entries = Vec::new();
        let mut rejected = 0;
        for ((ext, algo), doc) in SIDECARS.iter().zip(docs) {
            let Some(doc) = doc? else { continue };
            let url = format!("{}{path}{ext}", self.base);
            if let Some(algo) = algo {
                match parse_sidecar(*algo, &doc.body) {
                    Some(d) => {
                        best = best.or(Some(d));
                    }
                    None => {
                        tracing::warn!(%url, "skipping a checksum file that holds no {} digest", algo.name());
                        rejected += 1;
                        continue;
                    }
                }
            }
            entries.push(Entry {
                path: unit_path(&format!("{path}{ext}"))?,
                mtime: None,
                body: doc.into_body(),
            });
        }
        Ok((best, entries, rejected))
    }

    async fn metadata_unit(
        &self,
        unit: &str,
        src: &dyn DocSource,
    ) -> Result<Option<UnitOutput>, SyncError> {
        let (doc, sidecars) = tokio::join!(
            get_optional(src, unit.to_string()),
            self.sidecars(unit, src)
        );
        let Some(doc) = doc? else {
            return Ok(None);
        };
        let url = doc.url.clone();
        let bad = |what: String| SyncError::BadMetadata {
            url: url.clone(),
            what,
        };
        check_metadata(&doc.body).map_err(&bad)?;
        let (digest, mut entries, rejected) = sidecars?;
        if let Some(want) = digest {
            let got = hash_as(&want, &doc.body);
            if got != want {
                return Err(bad(format!(
                    "its checksum file promises {want}, the document hashes to {got}; upstream is mid-update or damaged"
                )));
            }
        }
        entries.push(Entry {
            path: unit_path(unit)?,
            mtime: None,
            body: doc.into_body(),
        });
        Ok(Some(UnitOutput {
            entries,
            rejected,
            unchanged: false,
        }))
    }

    async fn file_unit_output(
        &self,
        unit: &str,
        src: &dyn DocSource,
    ) -> Result<Option<UnitOutput>, SyncError> {
        // POMs are small and every client reads them right after the
        // lookup (dependency resolution walks them one by one): fetch the
        // POM with its sidecars, in one round trip instead of two.
        let small = unit.ends_with(".pom");
        let (body, sidecars) = tokio::join!(
            async {
                match small {
                    true => get_optional(src, unit.to_string()).await,
                    false => Ok(None),
                }
            },
            self.sidecars(unit, src)
        );
        let (digest, mut entries, rejected) = sidecars?;
        if entries.is_empty() && self.additive {
            // Upstream has none of its checksum files: the file is gone.
            if let Some(kept) = retained_file(unit, src) {
                return Ok(Some(kept));
            }
        }
        let Some(digest) = digest else {
            if !entries.is_empty() {
                tracing::warn!(url = %format!("{}{unit}", self.base), "not served: upstream gives no SHA-1, SHA-256 or SHA-512 checksum for it");
            }
            return Ok(None);
        };
        let url = format!("{}{unit}", self.base);
        let body = match body? {
            Some(doc) if hash_as(&digest, &doc.body) == digest => doc.into_body(),
            fetched => {
                if fetched.is_some() {
                    // Listed all the same: a read fetches it again and fails
                    // verification (EIO), the rest of the mirror syncs on.
                    tracing::warn!(%url, "does not match its checksum file {digest}; reads will fail until upstream is fixed");
                }
                // Sizes come with the first fetch (invariant 8): Maven metadata has none.
                Body::Remote {
                    url,
                    size: None,
                    digest,
                }
            }
        };
        entries.push(Entry {
            path: unit_path(unit)?,
            mtime: None,
            body,
        });
        Ok(Some(UnitOutput {
            entries,
            rejected,
            unchanged: false,
        }))
    }
}

/// `retain = "additive"`: the file `unit` upstream deleted (with all its
/// checksum files), as the served generation has it, while its bytes are
/// cached (a POM is a stored document, always here), with its checksum
/// files as they were served. `maven-metadata.xml` stays upstream's: a
/// build that names the version exactly still resolves it.
fn retained_file(unit: &str, src: &dyn DocSource) -> Option<UnitOutput> {
    let path = RelPath::new(unit).ok()?;
    let (body, digest) = match src.previous(unit)? {
        Previous::Artifact {
            url,
            size,
            digest,
            cached: true,
        } => (
            Body::Remote {
                url,
                size,
                digest: digest.clone(),
            },
            Some(digest),
        ),
        Previous::Doc(bytes) => (Body::Inline(bytes), None),
        Previous::Artifact { .. } => return None,
    };
    let mut entries: Vec<Entry> = SIDECARS
        .iter()
        .filter_map(|(ext, _)| {
            let at = format!("{unit}{ext}");
            let bytes = src.previous_doc(&at)?;
            Some(Entry {
                path: RelPath::new(at).ok()?,
                mtime: None,
                body: Body::Inline(bytes),
            })
        })
        .collect();
    entries.push(Entry {
        path,
        mtime: None,
        body,
    });
    tracing::info!(
        file = unit,
        "retain: keeping a file upstream deleted, its bytes are cached"
    );
    src.retained(unit, 1, digest.into_iter().collect());
    Some(UnitOutput {
        entries,
        rejected: 0,
        unchanged: false,
    })
}

/// A unit's file as a tree path. [`Maven::file_unit`] admits only units
/// whose every file is representable, so this fails only if that check and
/// the sidecar list drift apart: an error for the unit, never a panic.
fn unit_path(path: &str) -> Result<RelPath, SyncError> {
    RelPath::new(path).map_err(|e| SyncError::BadMetadata {
        url: path.to_string(),
        what: format!("cannot be represented in the tree: {e}"),
    })
}

/// `data` hashed with the algorithm of `like`.
fn hash_as(like: &Digest, data: &[u8]) -> Digest {
    let mut h = crate::digest::Hasher::new(like.algo());
    h.update(data);
    h.finish()
}

/// A `maven-metadata.xml` must at least be a `<metadata>` document (an HTML
/// error page answered with 200 is not).
pub fn check_metadata(body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8 text".to_string())?;
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if !(t.starts_with("<?xml") || t.starts_with("<metadata")) {
        return Err("not an XML document".into());
    }
    if !t.contains("<metadata") || !t.trim_end().ends_with("</metadata>") {
        return Err("not a complete <metadata> document".into());
    }
    Ok(())
}

impl Adapter for Maven {
    fn select<'a>(
        &'a self,
        _src: &'a dyn DocSource,
    ) -> BoxFuture<'a, Result<Selection, SyncError>> {
        // Literal coordinates keep their version list fresh; everything else
        // arrives by lookup and is refreshed with it.
        let seeds = literal_seeds(&self.filter, |c| {
            let (group, artifact) = c.split_once(':')?;
            Some(format!("{}/{artifact}/{METADATA}", group.replace('.', "/")))
        });
        Box::pin(async move { Ok(Selection::Lazy(seeds)) })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        _now: u64,
        _full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(async move {
            let Some((parent, name)) = unit.rsplit_once('/') else {
                return Ok(None);
            };
            if self.file_unit(parent, name).as_deref() != Some(unit) {
                return Ok(None);
            }
            if name == METADATA {
                self.metadata_unit(unit, src).await
            } else {
                self.file_unit_output(unit, src).await
            }
        })
    }

    fn lazy_unit(&self, parent: &str, name: &str) -> Option<String> {
        self.file_unit(parent, name)
    }

    fn lazy_dir(&self, parent: &str, name: &str) -> bool {
        let depth = parent.split('/').filter(|s| !s.is_empty()).count() + 1;
        depth < MAX_DEPTH
            && (parent.is_empty() || RelPath::new(parent).is_ok())
            && check_name(name).is_ok()
            && !name.starts_with('.')
            && split_sidecar(name).0 != METADATA
            && self.file_unit(parent, name).is_none()
            && !looks_like_a_file(name)
    }
}

/// Names that are files in every Maven repository, wherever they appear: a
/// lookup of one that upstream does not have answers ENOENT, not a directory.
fn looks_like_a_file(name: &str) -> bool {
    const EXTS: &[&str] = &[
        ".jar",
        ".pom",
        ".xml",
        ".war",
        ".ear",
        ".aar",
        ".zip",
        ".module",
        ".asc",
        ".sha1",
        ".md5",
        ".sha256",
        ".sha512",
        ".json",
        ".tgz",
        ".gz",
        ".properties",
        ".txt",
        ".html",
    ];
    EXTS.iter().any(|e| name.ends_with(e))
}

#[cfg(test)]
mod tests;
