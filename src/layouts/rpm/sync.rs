//! One repository's sync: repomd.xml from upstream (or from the first of a
//! metalink's mirrors whose copy matches the metalink), its signature,
//! primary.xml streamed through the parser and checked against repomd's
//! checksums, and the entries of the tree.

use super::primary::{self, PrimaryHandler};
use super::repomd::{self, Data, trusted};
use super::{ROOT_FILES, Rpm, XmlSink, bad, decompress_into};
use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::layout::{Doc, DocError, DocRequest, DocSource, SyncError, UnitOutput};
use crate::path::RelPath;

/// Where a repository's documents are requested.
enum Origin {
    /// Relative to the configured upstreams (the core falls back across them).
    Configured,
    /// At this absolute repository URL (a metalink mirror that matched).
    Mirror(String),
}

/// A repomd.xml that checked out, with its signature and key if served.
struct Root {
    origin: Origin,
    /// The repository's URL the tree's files are fetched from (ends with `/`).
    url: String,
    repomd: Doc,
    asc: Option<Doc>,
}

impl Rpm {
    fn request(&self, origin: &Origin, prefix: &str, rel: &str) -> String {
        match origin {
            Origin::Configured => format!("{prefix}{rel}"),
            Origin::Mirror(url) => format!("{url}{rel}"),
        }
    }

    async fn optional(&self, src: &dyn DocSource, path: String) -> Result<Option<Doc>, SyncError> {
        match src.get(DocRequest { path, accept: None }).await {
            Ok(d) => Ok(Some(d)),
            Err(DocError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks the signature of repomd.xml if a keyring is configured.
    async fn verify(&self, repomd: &Doc, asc: Option<&Doc>) -> Result<(), SyncError> {
        crate::gpgv::check_detached(self.gpg.as_ref(), repomd, asc, "repomd.xml").await
    }

    /// repomd.xml (and its signature) from the configured upstreams.
    /// An unchanged repomd.xml (verified when it was new) is all a sync
    /// that is not `full` asks for.
    async fn configured_root(
        &self,
        src: &dyn DocSource,
        prefix: &str,
        full: bool,
    ) -> Result<Root, SyncError> {
        let path = format!("{prefix}repodata/repomd.xml");
        let repomd = src.get(DocRequest { path, accept: None }).await?;
        let mut asc = None;
        if full || !repomd.unchanged {
            asc = self
                .optional(src, format!("{prefix}repodata/repomd.xml.asc"))
                .await?;
            self.verify(&repomd, asc.as_ref()).await?;
        }
        Ok(Root {
            origin: Origin::Configured,
            url: format!("{}{prefix}", self.bases[0]),
            repomd,
            asc,
        })
    }

    /// repomd.xml from the configured upstreams, then the metalink's
    /// mirrors in its order: the first copy whose hash the metalink lists
    /// (and whose signature verifies, with a keyring) is taken.
    async fn metalink_root(
        &self,
        src: &dyn DocSource,
        link: &str,
        full: bool,
    ) -> Result<Root, SyncError> {
        let doc = src
            .get(DocRequest {
                path: link.to_string(),
                accept: Some("application/metalink+xml, application/metalink4+xml"),
            })
            .await?;
        let m = repomd::parse_metalink(&doc.body).map_err(|e| bad(link, e.to_string()))?;
        if m.hashes.is_empty() {
            return Err(bad(
                link,
                format!(
                    "no sha256 or sha512 hash of repomd.xml ({} weaker ones, which regfs does not trust on their own)",
                    m.weak
                ),
            ));
        }
        let mut mirrors: Vec<String> = Vec::new();
        for u in &m.urls {
            match u
                .strip_suffix("repodata/repomd.xml")
                .filter(|b| b.ends_with('/'))
                .and_then(|b| crate::keys::parse_base_url(b).ok())
            {
                Some(b) if !mirrors.contains(&b.to_string()) => mirrors.push(b.to_string()),
                Some(_) => {}
                None => tracing::debug!(
                    "{link}: skipping mirror URL {u:?} (not http(s) …/repodata/repomd.xml)"
                ),
            }
        }
        *self.learnt.lock().unwrap() = mirrors
            .iter()
            .filter_map(|b| reqwest::Url::parse(b).ok())
            .collect();
        let mut tried = Vec::new();
        let candidates = self
            .bases
            .iter()
            .chain(mirrors.iter().filter(|b| !self.bases.contains(b)));
        for base in candidates {
            let url = format!("{base}repodata/repomd.xml");
            let repomd = match src
                .get(DocRequest {
                    path: url.clone(),
                    accept: None,
                })
                .await
            {
                Ok(d) => d,
                Err(e) => {
                    tried.push(format!("{url}: {e}"));
                    continue;
                }
            };
            let got = [Algo::Sha256, Algo::Sha512].map(|a| {
                let mut h = crate::digest::Hasher::new(a);
                h.update(&repomd.body);
                h.finish()
            });
            if !m.hashes.iter().any(|h| got.contains(h)) {
                tracing::warn!(
                    "{url}: repomd.xml ({}) is not one the metalink {link} lists; trying the next mirror",
                    got[0]
                );
                tried.push(format!("{url}: not the repomd.xml the metalink lists"));
                continue;
            }
            let mut asc = None;
            if full || !repomd.unchanged {
                asc = match self.optional(src, format!("{url}.asc")).await {
                    Ok(a) => a,
                    Err(e) => {
                        tried.push(format!("{url}.asc: {e}"));
                        continue;
                    }
                };
                if let Err(e) = self.verify(&repomd, asc.as_ref()).await {
                    tried.push(e.to_string());
                    continue;
                }
            }
            return Ok(Root {
                origin: Origin::Mirror(base.clone()),
                url: base.clone(),
                repomd,
                asc,
            });
        }
        Err(bad(
            link,
            format!(
                "no mirror served a repomd.xml it lists: {}",
                tried.join("; ")
            ),
        ))
    }

    pub(super) async fn sync_repo(
        &self,
        repo: &str,
        src: &dyn DocSource,
        now: u64,
        full: bool,
    ) -> Result<UnitOutput, SyncError> {
        let prefix = Rpm::prefix(repo);
        let root = match &self.opts.metalink {
            None => self.configured_root(src, &prefix, full).await?,
            Some(link) => self.metalink_root(src, link.as_str(), full).await?,
        };
        // repomd.xml has no Valid-Until: a held one never expires.
        let unit = if repo.is_empty() {
            super::ROOT_UNIT
        } else {
            repo
        };
        self.seen.record(unit, &root.repomd.body, None);
        if root.repomd.unchanged && !full {
            return Ok(UnitOutput {
                entries: Vec::new(),
                rejected: 0,
                unchanged: true,
            });
        }
        let Root {
            origin,
            url: repo_url,
            repomd,
            asc,
        } = root;
        let repomd_url = repomd.url.clone();
        // Every file this sync lists under repodata/ has the sync's time as
        // mtime, repomd.xml's too: carry_over tells current files by it.
        let stamp = u32::try_from(now).ok();
        // Each part is a valid path; together they may still be too long.
        let entry = |rel: &str, body: Body, mtime: Option<u32>| {
            RelPath::new(format!("{prefix}{rel}"))
                .map(|path| Entry { path, mtime, body })
                .map_err(|e| e.to_string())
        };
        let fixed = |rel: &str, body: Body| {
            entry(rel, body, stamp).expect("repos are checked to leave room for repodata/")
        };
        let (data, dropped) =
            repomd::parse_repomd(&repomd.body).map_err(|e| bad(&repomd_url, e.to_string()))?;
        let mut rejected = dropped.len();
        for d in &dropped {
            tracing::warn!("{repomd_url}: skipping {d}");
        }
        let mut entries = vec![fixed("repodata/repomd.xml", repomd.into_body())];
        if let Some(a) = asc {
            entries.push(fixed("repodata/repomd.xml.asc", a.into_body()));
        }
        if let Some(k) = self
            .optional(
                src,
                self.request(&origin, &prefix, "repodata/repomd.xml.key"),
            )
            .await?
        {
            entries.push(fixed("repodata/repomd.xml.key", k.into_body()));
        }
        // Where an absolute location or xml:base may point: this repository upstream.
        let urls: Vec<String> = match &origin {
            Origin::Configured => self.bases.iter().map(|b| format!("{b}{prefix}")).collect(),
            Origin::Mirror(url) => vec![url.clone()],
        };
        let mut primary = None;
        for d in data {
            let fits = |l: Listed| match RelPath::new(format!("{prefix}{}", l.path)) {
                Ok(_) => Ok(l),
                Err(e) => Err(e.to_string()),
            };
            let listed = match listed(&d, &urls).and_then(fits) {
                Ok(l) => l,
                Err(e) if d.kind == "primary" => {
                    return Err(bad(&repomd_url, format!("primary: {e}")));
                }
                Err(e) => {
                    tracing::warn!("{repomd_url}: withholding {}: {e}", d.kind);
                    rejected += 1;
                    continue;
                }
            };
            if d.kind == "primary" {
                primary = Some((d, listed));
            } else {
                let body = Body::Remote {
                    url: format!("{repo_url}{}", listed.path),
                    size: d.size,
                    digest: listed.digest,
                };
                entries.push(entry(&listed.path, body, stamp).expect("checked above"));
            }
        }
        let Some((d, listed)) = primary else {
            return Err(bad(&repomd_url, "lists no primary metadata"));
        };
        let doc = src
            .get(DocRequest {
                path: self.request(&origin, &prefix, &listed.path),
                accept: None,
            })
            .await?;
        let (body, packages) = self.primary(doc, &d, &listed, urls).await?;
        entries.push(entry(&listed.path, body, stamp).expect("checked above"));
        rejected += packages.rejected;
        for p in packages.packages {
            let body = Body::Remote {
                url: format!("{repo_url}{}", p.path),
                size: p.size,
                digest: p.digest,
            };
            match entry(&p.path, body, None) {
                Ok(e) => entries.push(e),
                Err(e) => {
                    tracing::warn!("{repomd_url}: skipping a package: {e}");
                    rejected += 1;
                }
            }
        }
        Ok(UnitOutput {
            entries,
            rejected,
            unchanged: false,
        })
    }

    /// Checks primary.xml against repomd.xml and parses it as it
    /// decompresses; how to serve it, and its packages.
    async fn primary(
        &self,
        doc: Doc,
        d: &Data,
        listed: &Listed,
        urls: Vec<String>,
    ) -> Result<(Body, PrimaryHandler), SyncError> {
        // The checksum of the file as served is what trusts it; a weak or
        // unusable open-checksum only goes unchecked.
        let open = d.open_checksum.as_ref().and_then(|c| trusted(c).ok());
        let open_size = d.open_size;
        let limit = open_size.unwrap_or(self.max_document);
        let (size, digest) = (d.size, listed.digest.clone());
        let (url, stored, body) = (doc.url, doc.stored, doc.body);
        tokio::task::spawn_blocking(move || {
            if let Some(size) = size.filter(|s| *s != body.len() as u64) {
                return Err(bad(
                    &url,
                    format!("size {} does not match repomd.xml ({size})", body.len()),
                ));
            }
            let actual = hash(digest.algo(), &body);
            if actual != digest {
                return Err(bad(
                    &url,
                    format!("digest mismatch: repomd.xml promised {digest}, upstream sent {actual}"),
                ));
            }
            let mut h = PrimaryHandler::new(urls);
            let algo = open.as_ref().map_or(Algo::Sha256, Digest::algo);
            let mut sink = XmlSink::new(&mut h, algo, limit);
            decompress_into(&body, &mut sink).map_err(|e| bad(&url, e.to_string()))?;
            let (got, n) = sink.finish().map_err(|e| bad(&url, e.to_string()))?;
            let what = format!("{url} decompressed");
            if let Some(want) = open.filter(|w| *w != got) {
                return Err(bad(&what, format!("open-checksum mismatch: repomd.xml promised {want}, got {got}")));
            }
            if let Some(want) = open_size.filter(|w| *w != n) {
                return Err(bad(&what, format!("{n} bytes, but repomd.xml gives open-size {want}")));
            }
            let h = h.finish();
            for r in &h.reasons {
                tracing::warn!("{url}: skipping {r}");
            }
            if h.rejected > h.reasons.len() {
                tracing::warn!("{url}: skipped {} packages in all", h.rejected);
            }
            if h.with_base > 0 {
                tracing::warn!(
                    "{url}: {} package locations carry an xml:base: dnf fetches those from that URL, not from this mirror",
                    h.with_base
                );
            }
            // The source keeps documents under their SHA-256.
            let body = match stored {
                Some(digest) => Body::Stored {
                    digest,
                    size: body.len() as u64,
                },
                None => Body::Inline(body),
            };
            Ok((body, h))
        })
        .await
        .map_err(|e| bad(&listed.path, format!("primary task failed: {e}")))?
    }
}

fn hash(algo: Algo, data: &[u8]) -> Digest {
    let mut h = crate::digest::Hasher::new(algo);
    h.update(data);
    h.finish()
}

/// A repodata file as the tree lists it.
pub(super) struct Listed {
    /// Relative to the repository root.
    pub path: String,
    pub digest: Digest,
}

/// Where a repomd.xml entry lives and what it must hash to.
pub(super) fn listed(d: &Data, urls: &[String]) -> Result<Listed, String> {
    let href = d.href.as_deref().ok_or("no location")?;
    let path = primary::resolve(href, d.base.as_deref(), urls)?;
    if ROOT_FILES.iter().any(|f| path == format!("repodata/{f}")) {
        return Err(format!(
            "location {path:?} would replace repomd.xml's own files"
        ));
    }
    let checksum = d.checksum.as_ref().ok_or("no checksum")?;
    let digest = trusted(checksum)?;
    Ok(Listed { path, digest })
}
