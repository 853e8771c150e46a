//! One repository's sync (the layout's unit): its tags, the manifest tree
//! under each, what travels beside them, and the entries that make its
//! part of the tree (see the layout's module head).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use futures_util::StreamExt;

use super::manifest::{Child, Manifest, parse, referrers_index};
use super::names::{ACCEPT, Kind, digest_of, digest_tag, is_tag, parse_digest};
use super::{Oci, retain};
use crate::catalog::{Body, Entry};
use crate::digest::Digest;
use crate::keys::Glob;
use crate::layout::{Doc, DocError, DocRequest, DocSource, SyncError, UnitOutput};
use crate::path::RelPath;
use crate::policy::Retain;

/// Index nesting followed: an index of indexes of manifests, no deeper.
pub(super) const MAX_DEPTH: usize = 2;
/// Manifests under one tag (an index's children and theirs).
pub(super) const MAX_TREE: usize = 1024;
/// Tags resolved at once within a repository.
const CONCURRENCY: usize = 8;
/// Cosign's tag suffixes, then the referrers tag schema's (none).
const DIGEST_TAGS: [&str; 4] = [".sig", ".att", ".sbom", ""];

/// A manifest fetched and checked (or, retained, read back from the
/// served generation and checked).
pub(super) struct Fetched {
    pub(super) digest: Digest,
    pub(super) doc: Doc,
    pub(super) manifest: Manifest,
}

/// Why a tag is not mirrored.
enum Refused {
    /// Gone upstream between its listing and its request.
    Gone,
    /// Fails a check: the URL and what is wrong.
    Bad(String),
}

type Tree = Result<Vec<Fetched>, Refused>;

pub struct Repository<'a> {
    oci: &'a Oci,
    name: &'a str,
    patterns: &'a [Glob],
    src: &'a dyn DocSource,
}

fn bad_metadata(url: &str, what: String) -> SyncError {
    SyncError::BadMetadata {
        url: url.to_string(),
        what,
    }
}

impl<'a> Repository<'a> {
    pub fn new(
        oci: &'a Oci,
        name: &'a str,
        patterns: &'a [Glob],
        src: &'a dyn DocSource,
    ) -> Repository<'a> {
        Repository {
            oci,
            name,
            patterns,
            src,
        }
    }

    /// The repository's entries; `None` when upstream does not know it.
    pub async fn run(&self) -> Result<Option<UnitOutput>, SyncError> {
        let additive = self.oci.retain == Retain::Additive;
        let Some(upstream_tags) = self.tags().await? else {
            if additive {
                // A repository upstream removed is not retained.
                self.src.retained(self.name, 0, Vec::new());
            }
            return Ok(None);
        };
        let mut rejected = upstream_tags.1;
        let upstream_tags = upstream_tags.0;
        let wanted: Vec<String> = upstream_tags
            .iter()
            .filter(|t| self.patterns.iter().any(|g| g.matches(t)))
            .cloned()
            .collect();
        let mut trees = self.resolve_tags(&wanted, &mut rejected).await?;
        if additive {
            let kept =
                retain::removed(self.oci, self.name, self.patterns, self.src, &upstream_tags);
            let blobs: BTreeSet<Digest> = kept
                .values()
                .flatten()
                .flat_map(|f| f.manifest.blobs.iter().map(|b| b.digest.clone()))
                .collect();
            if !kept.is_empty() {
                tracing::info!(
                    repo = self.name,
                    tags = kept.len(),
                    "retain: keeping tags removed upstream whose manifests and blobs are all here"
                );
            }
            self.src
                .retained(self.name, kept.len(), blobs.into_iter().collect());
            trees.extend(kept);
        }
        let mut referrers = BTreeMap::new();
        if self.oci.signatures {
            let subjects: BTreeSet<Digest> =
                trees.values().flatten().map(|f| f.digest.clone()).collect();
            let extra: Vec<String> = subjects
                .iter()
                .flat_map(|d| DIGEST_TAGS.map(|s| digest_tag(d, s)))
                .filter(|t| upstream_tags.contains(t) && !trees.contains_key(t))
                .collect();
            trees.extend(self.resolve_tags(&extra, &mut rejected).await?);
            for d in &subjects {
                let found = self.referrers(d, &trees, &mut rejected).await?;
                referrers.insert(d.clone(), found);
            }
        }
        Ok(Some(self.entries(trees, referrers, rejected)))
    }

    /// Upstream's tags that are tags, and how many names were not.
    async fn tags(&self) -> Result<Option<(BTreeSet<String>, usize)>, SyncError> {
        let req = DocRequest {
            path: format!("v2/{}/tags/list", self.name),
            accept: Some("application/json"),
        };
        let doc = match self.src.get(req).await {
            Ok(doc) => doc,
            Err(DocError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        #[derive(serde::Deserialize)]
        struct Wire {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let wire: Wire = serde_json::from_slice(&doc.body)
            .map_err(|e| bad_metadata(&doc.url, format!("not a tag list: {e}")))?;
        let mut tags = BTreeSet::new();
        let mut bad = 0;
        for t in wire.tags.into_iter().flatten() {
            if is_tag(&t) {
                tags.insert(t);
            } else {
                bad += 1;
                crate::warn_limited!(url = %doc.url, "leaving out tag {t:?}: not a tag name");
            }
        }
        Ok(Some((tags, bad)))
    }

    /// The trees of `tags`, a few at a time; refused tags are logged and
    /// counted, tags gone meanwhile skipped.
    async fn resolve_tags(
        &self,
        tags: &[String],
        rejected: &mut usize,
    ) -> Result<BTreeMap<String, Vec<Fetched>>, SyncError> {
        let results: Vec<(String, Result<Tree, SyncError>)> =
            futures_util::stream::iter(tags.iter().cloned())
                .map(|t| async move {
                    let r = self.tree(&t, None).await;
                    (t, r)
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut out = BTreeMap::new();
        for (tag, r) in results {
            match r? {
                Ok(tree) => {
                    out.insert(tag, tree);
                }
                Err(Refused::Gone) => tracing::debug!(repo = self.name, tag, "tag gone upstream"),
                Err(Refused::Bad(why)) => {
                    *rejected += 1;
                    tracing::warn!(repo = self.name, tag, "leaving out the tag: {why}");
                }
            }
        }
        Ok(out)
    }

    /// The manifest `reference` names and every manifest under it that
    /// the configured platforms admit, breadth first.
    async fn tree(&self, reference: &str, listed: Option<&Child>) -> Result<Tree, SyncError> {
        let root = match self.fetch(reference, listed).await? {
            Ok(f) => f,
            Err(r) => return Ok(Err(r)),
        };
        let mut out = Vec::new();
        let mut seen = HashSet::from([root.digest.clone()]);
        let mut queue = VecDeque::from([(root, 0)]);
        while let Some((f, depth)) = queue.pop_front() {
            if f.manifest.kind.is_index() {
                if depth >= MAX_DEPTH && !f.manifest.children.is_empty() {
                    return Ok(Err(Refused::Bad(format!(
                        "{}: indexes nested deeper than {MAX_DEPTH}",
                        f.doc.url
                    ))));
                }
                for child in &f.manifest.children {
                    if !self.oci.admits(child.platform.as_ref())
                        || !seen.insert(child.digest.clone())
                    {
                        continue;
                    }
                    if seen.len() > MAX_TREE {
                        return Ok(Err(Refused::Bad(format!(
                            "{}: more than {MAX_TREE} manifests under it",
                            f.doc.url
                        ))));
                    }
                    match self.fetch(&child.digest.to_string(), Some(child)).await? {
                        Ok(c) => queue.push_back((c, depth + 1)),
                        Err(Refused::Gone) => {
                            return Ok(Err(Refused::Bad(format!(
                                "{}: lists {}, which upstream does not have",
                                f.doc.url, child.digest
                            ))));
                        }
                        Err(r) => return Ok(Err(r)),
                    }
                }
            }
            out.push(f);
        }
        Ok(Ok(out))
    }

    /// One manifest by tag or digest, checked: against the descriptor that
    /// listed it (digest, size, media type), against upstream's
    /// `Docker-Content-Digest`, and by [`parse`].
    async fn fetch(
        &self,
        reference: &str,
        listed: Option<&Child>,
    ) -> Result<Result<Fetched, Refused>, SyncError> {
        let req = DocRequest {
            path: format!("v2/{}/manifests/{reference}", self.name),
            accept: Some(ACCEPT),
        };
        let doc = match self.src.get(req).await {
            Ok(doc) => doc,
            Err(DocError::NotFound { .. }) => return Ok(Err(Refused::Gone)),
            Err(e) => return Err(e.into()),
        };
        let bad = |why: String| Ok(Err(Refused::Bad(format!("{}: {why}", doc.url))));
        let body = &doc.body;
        let mut digest = match listed {
            Some(c) => {
                if body.len() as u64 != c.size {
                    return bad(format!(
                        "{} bytes, its descriptor says {}",
                        body.len(),
                        c.size
                    ));
                }
                let got = digest_of(c.digest.algo(), body);
                if got != c.digest {
                    return bad(format!("hashes to {got}, its descriptor says {}", c.digest));
                }
                c.digest.clone()
            }
            None => Digest::sha256_of(body),
        };
        if let Some(stated) = &doc.content_digest {
            match parse_digest(stated) {
                // A tag's manifest is known by the digest its registry gives.
                Ok(d) if digest_of(d.algo(), body) == d => {
                    if listed.is_none() {
                        digest = d;
                    }
                }
                Ok(d) => {
                    let got = digest_of(d.algo(), body);
                    return bad(format!(
                        "hashes to {got}, its Docker-Content-Digest says {d}"
                    ));
                }
                Err(e) => return bad(format!("Docker-Content-Digest: {e}")),
            }
        }
        match parse(body, doc.content_type.as_deref(), listed.map(|c| c.kind)) {
            Ok(manifest) => Ok(Ok(Fetched {
                digest,
                doc,
                manifest,
            })),
            Err(why) => bad(why),
        }
    }

    /// The referrers of `subject`: upstream's referrers API, else the tag
    /// schema's index among the trees; each a manifest whose `subject` is
    /// `subject`.
    async fn referrers(
        &self,
        subject: &Digest,
        trees: &BTreeMap<String, Vec<Fetched>>,
        rejected: &mut usize,
    ) -> Result<Vec<Fetched>, SyncError> {
        let req = DocRequest {
            path: format!("v2/{}/referrers/{subject}", self.name),
            accept: Some(Kind::OciIndex.media_type()),
        };
        let listed: Vec<Child> = match self.src.get(req).await {
            Ok(doc) => match parse(&doc.body, doc.content_type.as_deref(), Some(Kind::OciIndex)) {
                Ok(index) => index.children,
                Err(why) => {
                    *rejected += 1;
                    tracing::warn!(url = %doc.url, "ignoring the referrers index: {why}");
                    Vec::new()
                }
            },
            // No referrers API upstream: the tag schema's index, if any.
            Err(DocError::NotFound { .. })
            | Err(DocError::Status {
                status: 400 | 405 | 406,
                ..
            }) => trees
                .get(&digest_tag(subject, ""))
                .and_then(|t| t.first())
                .map(|f| f.manifest.children.clone())
                .unwrap_or_default(),
            Err(e) => return Err(e.into()),
        };
        let mut out: Vec<Fetched> = Vec::new();
        for child in listed {
            if out.iter().any(|f| f.digest == child.digest) {
                continue;
            }
            match self.fetch(&child.digest.to_string(), Some(&child)).await? {
                Ok(f) if f.manifest.subject.as_ref() == Some(subject) => out.push(f),
                Ok(f) => {
                    *rejected += 1;
                    tracing::warn!(url = %f.doc.url, "leaving out a referrer of {subject}: its subject is not {subject}");
                }
                Err(Refused::Gone) => {
                    tracing::debug!(repo = self.name, digest = %child.digest, "referrer gone upstream")
                }
                Err(Refused::Bad(why)) => {
                    *rejected += 1;
                    tracing::warn!(
                        repo = self.name,
                        "leaving out a referrer of {subject}: {why}"
                    );
                }
            }
        }
        Ok(out)
    }

    fn entries(
        &self,
        trees: BTreeMap<String, Vec<Fetched>>,
        referrers: BTreeMap<Digest, Vec<Fetched>>,
        rejected: usize,
    ) -> UnitOutput {
        let repo = format!("v2/{}", self.name);
        let mut files: BTreeMap<String, Body> = BTreeMap::new();
        let mut blobs: HashMap<Digest, u64> = HashMap::new();
        let mut manifest = |f: &Fetched, files: &mut BTreeMap<String, Body>| {
            let file = format!("{}.{}", f.digest, f.manifest.kind.ext());
            files.insert(
                format!("{repo}/manifests/{}/{file}", f.digest),
                body(&f.doc),
            );
            for b in &f.manifest.blobs {
                blobs.insert(b.digest.clone(), b.size);
            }
            file
        };
        for (tag, tree) in &trees {
            for (i, f) in tree.iter().enumerate() {
                let file = manifest(f, &mut files);
                if i == 0 {
                    files.insert(format!("{repo}/manifests/{tag}/{file}"), body(&f.doc));
                }
            }
        }
        for (subject, found) in &referrers {
            for f in found {
                manifest(f, &mut files);
            }
            let listed: Vec<(Kind, Digest, u64, &Manifest)> = found
                .iter()
                .map(|f| {
                    let size = f.doc.body.len() as u64;
                    (f.manifest.kind, f.digest.clone(), size, &f.manifest)
                })
                .collect();
            files.insert(
                format!("{repo}/referrers/{subject}"),
                Body::Inline(referrers_index(&listed)),
            );
        }
        let tags: Vec<&String> = trees.keys().collect();
        let list = serde_json::json!({"name": self.name, "tags": tags});
        files.insert(
            format!("{repo}/tags/list"),
            Body::Inline(serde_json::to_vec(&list).expect("JSON values serialize")),
        );
        let mut entries: Vec<Entry> = files
            .into_iter()
            .map(|(path, body)| Entry {
                path: RelPath::new(path).expect("validated names"),
                mtime: None,
                body,
            })
            .collect();
        for (digest, size) in blobs {
            let path = format!("{repo}/blobs/{digest}");
            entries.push(Entry {
                path: RelPath::new(path.clone()).expect("validated names"),
                mtime: None,
                body: Body::Remote {
                    url: format!("{}{path}", self.oci.base),
                    size: Some(size),
                    digest,
                },
            });
        }
        UnitOutput {
            entries,
            rejected,
            unchanged: false,
        }
    }
}

/// How an entry serves a manifest's bytes: from the metadata store where
/// the sync kept them, else inline.
fn body(doc: &Doc) -> Body {
    let size = doc.body.len() as u64;
    match &doc.stored {
        Some(digest) => Body::Stored {
            digest: digest.clone(),
            size,
        },
        None => Body::Inline(doc.body.clone()),
    }
}
