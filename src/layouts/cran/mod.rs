//! CRAN: a repository of R source packages, as R's `install.packages`
//! reads it.
//!
//! ```text
//! src/contrib/PACKAGES           the index (PACKAGES.gz, PACKAGES.rds: the same,
//! src/contrib/PACKAGES.gz        compressed and as an R object, which R reads
//! src/contrib/PACKAGES.rds       first); byte-identical, one unit, so the three
//!                                always swap together
//! src/contrib/<pkg>_<ver>.tar.gz the current version of each package
//! src/contrib/Archive/<pkg>/     older versions, on the first lookup of <pkg>,
//!                                and index.html, a listing of them
//! ```
//!
//! CRAN gives no digest regfs trusts: `PACKAGES` has an `MD5sum` per
//! current tarball, and archived ones have nothing at all. So tarballs are
//! listed only on a mirror with `trust_on_first_use` (the MD5 checked, each
//! served as pinned to the SHA-256 of its first download, see
//! `crate::pins`); without it a sync says so once and the mirror serves
//! the indexes alone. `Archive/<pkg>/` is read from upstream's directory
//! listing (an HTML autoindex: CRAN and its mirrors serve one, and so do
//! nginx's and Apache's): the links named `<pkg>_<version>.tar.gz`. The
//! mirror writes its own (`index.html` in the directory), so that a regfs
//! whose upstream is this one's export finds the same.

mod packages;
#[cfg(test)]
mod tests;

use std::io::Read;

pub use packages::{is_package_name, is_version, parse, parse_listing};

use crate::catalog::{Body, Entry};
use crate::digest::Digest;
use crate::keys::{Glob, Section};
use crate::layout::bad_metadata as bad;
use crate::layout::{
    Adapter, BoxFuture, Capabilities, DocSource, LayoutDef, MirrorContext, Selection, Sizes,
    SyncError, UnitOutput, get_optional, literal_seeds,
};
use crate::path::RelPath;

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "cran",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: Some("packages"),
        lazy: true,
        sizes: Sizes::Fetched,
        placeholders: false,
        signed: false,
        cooldown: false,
        versions: None,
        retain: crate::layout::RetainSupport::No(
            "PACKAGES.rds (an R object) is served as upstream has it, and CRAN keeps every superseded or archived version under src/contrib/Archive/<pkg>/, which the mirror serves",
        ),
    },
    configure: |ctx, keys| Ok(Box::new(Cran::from_keys(ctx, keys)?)),
    file_digests: &[],
};

/// The unit holding the three `PACKAGES` files and the current tarballs.
pub const INDEX: &str = ":index";
pub const CONTRIB: &str = "src/contrib";
pub const ARCHIVE: &str = "src/contrib/Archive";
/// Largest `PACKAGES` inflated from `PACKAGES.gz` to compare (a full CRAN's
/// is a few MB).
const MAX_PACKAGES: u64 = 256 << 20;

pub struct Cran {
    filter: Option<Vec<Glob>>,
    tofu: bool,
    /// The first upstream base (ends with `/`).
    base: String,
}

/// The file each `Archive/<pkg>/` holds beside its tarballs: a listing of
/// them that a web server's `index` answers for the directory (no
/// autoindex, which would stat, and so fetch, every tarball), so that the
/// export is itself an upstream another mirror reads `Archive/<pkg>/` from.
pub const LISTING: &str = "index.html";

/// `Archive/<pkg>/index.html`: a link per tarball, in the form
/// [`parse_listing`] reads (file names are checked package files: nothing
/// in them needs escaping).
fn listing_html(pkg: &str, files: &[String]) -> String {
    let mut html =
        format!("<html><head><title>Index of src/contrib/Archive/{pkg}/</title></head><body>\n");
    for f in files {
        html.push_str(&format!("<a href=\"{f}\">{f}</a>\n"));
    }
    html.push_str("</body></html>\n");
    html
}

fn entry(path: String, body: Body) -> Entry {
    Entry {
        path: RelPath::new(path).expect("checked names"),
        mtime: None,
        body,
    }
}

impl Cran {
    /// Reads `packages` (names or globs; none: every package).
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Cran, String> {
        let filter = keys.globs("packages")?;
        if let Some(g) = filter
            .iter()
            .flatten()
            .find(|g| g.is_literal() && !is_package_name(g.as_str()))
        {
            return Err(keys.error(
                "packages",
                format!("\"{}\" is not an R package name", g.as_str()),
            ));
        }
        Ok(Cran {
            filter,
            tofu: ctx.trust_on_first_use,
            base: ctx.base(),
        })
    }

    fn allowed(&self, pkg: &str) -> bool {
        is_package_name(pkg)
            && self
                .filter
                .as_ref()
                .is_none_or(|globs| globs.iter().any(|g| g.matches(pkg)))
    }

    fn remote(&self, path: String, digest: Digest) -> Entry {
        let url = format!("{}{path}", self.base);
        entry(
            path,
            Body::Remote {
                url,
                size: None,
                digest,
            },
        )
    }

    /// The three `PACKAGES` files, checked against each other where they
    /// can be, and (under the policy) the tarballs they list.
    async fn index(&self, src: &dyn DocSource) -> Result<UnitOutput, SyncError> {
        let path = |f: &str| format!("{CONTRIB}/{f}");
        let plain = src
            .get(crate::layout::DocRequest {
                path: path("PACKAGES"),
                accept: None,
            })
            .await?;
        let text = std::str::from_utf8(&plain.body)
            .map_err(|_| bad(&plain.url, "is not UTF-8 text"))?
            .to_string();
        let (listed, dropped) = parse(&text);
        for d in &dropped {
            tracing::warn!(url = %plain.url, "leaving out {d}");
        }
        let mut entries = Vec::new();
        if let Some(gz) = get_optional(src, path("PACKAGES.gz")).await? {
            let mut inflated = Vec::new();
            let ok = flate2::read::GzDecoder::new(&gz.body[..])
                .take(MAX_PACKAGES)
                .read_to_end(&mut inflated)
                .is_ok();
            if !ok || inflated != plain.body {
                return Err(bad(
                    &gz.url,
                    format!(
                        "is not {} compressed: upstream may be part way through an update; the previous index stays served",
                        plain.url
                    ),
                ));
            }
            entries.push(entry(path("PACKAGES.gz"), gz.into_body()));
        }
        if let Some(rds) = get_optional(src, path("PACKAGES.rds")).await? {
            // An R serialization: compressed (gzip, bzip2, xz) or not.
            let b = &rds.body;
            let known = [&b"\x1f\x8b"[..], b"BZh", b"\xfd7zXZ\0", b"X\n", b"RDX"]
                .iter()
                .any(|m| b.starts_with(m));
            if !known {
                return Err(bad(&rds.url, "is not an R serialization (.rds)"));
            }
            entries.push(entry(path("PACKAGES.rds"), rds.into_body()));
        }
        entries.push(entry(path("PACKAGES"), plain.into_body()));
        if !self.tofu {
            tracing::warn!(
                packages = listed.len(),
                "CRAN gives no digest regfs trusts (an MD5 for current packages, nothing for archived ones): no package tarballs are listed, only the PACKAGES files; set trust_on_first_use = true on this mirror to list them, each pinned to the SHA-256 of its first download"
            );
        } else {
            for p in listed.iter().filter(|p| self.allowed(&p.name)) {
                let digest = p.md5.clone().unwrap_or_else(Digest::none);
                entries.push(self.remote(path(&p.file()), digest));
            }
        }
        Ok(UnitOutput {
            entries,
            rejected: dropped.len(),
            unchanged: false,
        })
    }

    /// `Archive/<pkg>/`: the tarballs upstream's listing of it links to.
    async fn archive(
        &self,
        pkg: &str,
        src: &dyn DocSource,
    ) -> Result<Option<UnitOutput>, SyncError> {
        if !self.tofu || !self.allowed(pkg) {
            return Ok(None);
        }
        let Some(doc) = get_optional(src, format!("{ARCHIVE}/{pkg}/")).await? else {
            return Ok(None);
        };
        let html = String::from_utf8_lossy(&doc.body);
        let files = parse_listing(pkg, &html);
        if files.is_empty() {
            return Err(bad(
                &doc.url,
                format!(
                    "links to no {pkg}_<version>.tar.gz: not a directory listing of the package's archived versions"
                ),
            ));
        }
        let listing = listing_html(pkg, &files);
        let mut entries: Vec<Entry> = files
            .into_iter()
            .map(|f| self.remote(format!("{ARCHIVE}/{pkg}/{f}"), Digest::none()))
            .collect();
        entries.push(entry(
            format!("{ARCHIVE}/{pkg}/{LISTING}"),
            Body::Inline(listing.into_bytes()),
        ));
        Ok(Some(UnitOutput {
            entries,
            rejected: 0,
            unchanged: false,
        }))
    }
}

impl Adapter for Cran {
    fn select<'a>(
        &'a self,
        _src: &'a dyn DocSource,
    ) -> BoxFuture<'a, Result<Selection, SyncError>> {
        Box::pin(async move {
            let mut seeds = vec![INDEX.to_string()];
            if self.tofu {
                seeds.extend(literal_seeds(&self.filter, |p| {
                    Some(format!("Archive/{p}"))
                }));
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
            match unit.strip_prefix("Archive/") {
                Some(pkg) => self.archive(pkg, src).await,
                None => Ok(None),
            }
        })
    }

    fn lazy_unit(&self, parent: &str, name: &str) -> Option<String> {
        (parent == ARCHIVE && self.tofu && self.allowed(name)).then(|| format!("Archive/{name}"))
    }

    fn lazy_dir(&self, parent: &str, name: &str) -> bool {
        self.tofu && parent == CONTRIB && name == "Archive"
    }
}
