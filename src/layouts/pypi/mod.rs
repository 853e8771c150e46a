//! PyPI: the Simple Repository API in bandersnatch's layout.
//!
//! ```text
//! simple/index.html, index.v1_html, index.v1_json     projects in this mirror
//! simple/<project>/index.html, index.v1_html          PEP 503 (+ PEP 658/714 attributes)
//! simple/<project>/index.v1_json                      PEP 691 (+ PEP 700 size, upload-time)
//! packages/<h0>/<h1>/<h2>/<filename>                  the file, verified by its sha256
//! packages/<h0>/<h1>/<h2>/<filename>.metadata         PEP 658 core metadata, where upstream has it
//! ```
//!
//! Upstream project pages are read as PEP 691 JSON when offered, PEP 503
//! HTML otherwise. Pages are rewritten so that every file link is relative
//! (`../../packages/…`) and resolves inside the mirror. A file is listed only
//! if its sha256 is known: nothing unverifiable enters the tree.

mod html;
mod json;
mod parse;
mod render;
mod retain;

use std::borrow::Cow;

pub use parse::{parse_index, parse_project};

use crate::catalog::{Body, Entry};
use crate::digest::Digest;
use crate::keys::{Glob, Section};
use crate::layout::{
    Adapter, BoxFuture, Capabilities, DocError, DocRequest, DocSource, LayoutDef, MirrorContext,
    Selection, Sizes, SyncError, UnitOutput,
};
use crate::path::{RelPath, check_name};
use crate::policy::{Policy, Retain, Scheme};

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "pypi",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: Some("projects"),
        lazy: true,
        // PEP 700 sizes where upstream gives them (JSON); HTML pages have none.
        sizes: Sizes::Sometimes,
        placeholders: false,
        signed: false,
        cooldown: true,
        versions: Some(Scheme::Pep440),
        retain: crate::layout::RetainSupport::Yes,
    },
    configure: |ctx, keys| Ok(Box::new(Pypi::from_keys(ctx, keys)?)),
    file_digests: &[],
};

const ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";
const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";

pub struct Pypi {
    filter: Option<Vec<Glob>>,
    cooldown: Option<u64>,
    /// The version filters (`block`, `prereleases`, `keep_latest`, their
    /// overrides), its cooldown cleared: PyPI's cooldown is per file, by
    /// its upload time, applied above.
    versions: Policy,
    /// `package_types`: the kinds of file served (none: every kind).
    types: Option<Vec<FileKind>>,
    /// `platforms`: globs a wheel's platform tag must match (none: any wheel).
    platforms: Option<Vec<Glob>>,
    index_dir: String,
    project_dir: String,
    file_template: String,
}

/// A project page, whichever format it came in; strings borrow from the
/// upstream page where they can (large pages are 100 MiB).
#[derive(Debug, Default)]
pub struct Project<'a> {
    pub last_serial: Option<u64>,
    /// PEP 700 `versions`, when upstream sent them.
    pub versions: Option<Vec<String>>,
    pub files: Vec<File<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Yanked<'a> {
    No,
    Yes(Cow<'a, str>),
}

#[derive(Debug, Clone)]
pub struct File<'a> {
    pub filename: Cow<'a, str>,
    /// Absolute, fragment removed.
    pub url: String,
    pub sha256: Option<Digest>,
    pub requires_python: Option<Cow<'a, str>>,
    pub yanked: Yanked<'a>,
    /// `Some(None)`: upstream has metadata but gave no hash for it.
    pub core_metadata: Option<Option<Digest>>,
    pub size: Option<u64>,
    pub upload_time: Option<Cow<'a, str>>,
}

/// A file the mirror lists, as its pages show it.
struct Kept<'p, 'a> {
    file: &'p File<'a>,
    /// Its path relative to the project page.
    href: String,
    /// The PEP 658 metadata advertised: only with a hash, under a
    /// representable name.
    metadata: Option<&'p Digest>,
}

/// PEP 503 normalization: lowercase, runs of `-`, `_`, `.` become `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The version a distribution's filename holds: a wheel's or egg's second
/// `-` field, an sdist's stem after the project's name (legacy sdists keep
/// `-` in the name, hence the match against `project`, normalized).
pub fn file_version<'f>(project: &str, filename: &'f str) -> Option<&'f str> {
    let binary = [".whl", ".egg"]
        .iter()
        .find_map(|e| filename.strip_suffix(e));
    let version = if let Some(stem) = binary {
        stem.split('-').nth(1)?
    } else {
        let stem = [".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip"]
            .iter()
            .find_map(|e| filename.strip_suffix(e))?;
        let at = stem
            .match_indices('-')
            .map(|(i, _)| i)
            .find(|&i| normalize(&stem[..i]) == project)?;
        &stem[at + 1..]
    };
    (!version.is_empty()).then_some(version)
}

/// What kind of distribution a file is, by its name (`package_types`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    Wheel,
    Sdist,
    Egg,
    /// Installers and other formats (`.exe`, `.msi`, `.rpm`, `.dmg`, …).
    Other,
}

impl FileKind {
    const NAMES: [(&'static str, FileKind); 4] = [
        ("wheel", FileKind::Wheel),
        ("sdist", FileKind::Sdist),
        ("egg", FileKind::Egg),
        ("other", FileKind::Other),
    ];

    fn of(filename: &str) -> FileKind {
        const SDIST: [&str; 6] = [".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tar"];
        let lower = filename.to_ascii_lowercase();
        if lower.ends_with(".whl") {
            FileKind::Wheel
        } else if lower.ends_with(".egg") {
            FileKind::Egg
        } else if SDIST.iter().any(|e| lower.ends_with(e)) {
            FileKind::Sdist
        } else {
            FileKind::Other
        }
    }
}

/// A wheel's platform tags (the last `-` field, `.`-separated when
/// compressed: `manylinux_2_17_x86_64.manylinux2014_x86_64`).
fn wheel_platforms(filename: &str) -> impl Iterator<Item = &str> {
    let stem = &filename[..filename.len().saturating_sub(4)];
    stem.rsplit('-').next().unwrap_or("").split('.')
}

/// A normalized, valid project name.
fn is_project_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl Pypi {
    /// Reads `projects` (names or globs; none: lazy); the common `cooldown`
    /// hides files uploaded less than that long ago, and files whose upload
    /// time is unknown; the version filters apply to the version in each
    /// file's name (see [`file_version`]).
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Pypi, String> {
        let types = keys
            .string_or_list("package_types")?
            .map(|names| {
                names
                    .iter()
                    .map(|n| {
                        FileKind::NAMES
                            .iter()
                            .find(|(name, _)| name == n)
                            .map(|&(_, k)| k)
                            .ok_or_else(|| {
                                keys.error(
                                    "package_types",
                                    format!("\"{n}\" is not one of \"wheel\", \"sdist\", \"egg\", \"other\""),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let platforms = keys.globs("platforms")?;
        if platforms.is_some()
            && types
                .as_ref()
                .is_some_and(|t| !t.contains(&FileKind::Wheel))
        {
            return Err(keys.error(
                "platforms",
                "filters wheels, but package_types serves none: add \"wheel\" or drop platforms",
            ));
        }
        Ok(Pypi {
            filter: keys.globs("projects")?,
            cooldown: ctx.policy.cooldown,
            versions: Policy {
                cooldown: None,
                ..ctx.policy.clone()
            },
            types,
            platforms,
            index_dir: ctx.spec.path("index_dir").to_string(),
            project_dir: ctx.spec.path("project_dir").to_string(),
            file_template: ctx.spec.path("file").to_string(),
        })
    }

    /// Whether `package_types` and `platforms` let this file through.
    fn serves_kind(&self, filename: &str) -> bool {
        let kind = FileKind::of(filename);
        if self.types.as_ref().is_some_and(|t| !t.contains(&kind)) {
            return false;
        }
        match (&self.platforms, kind) {
            (Some(globs), FileKind::Wheel) => {
                wheel_platforms(filename).any(|p| globs.iter().any(|g| g.matches(p)))
            }
            _ => true,
        }
    }

    fn project_path(&self, project: &str) -> String {
        self.project_dir.replace("{project}", project)
    }

    /// Where a file lives in the tree: upstream's `packages/xx/yy/<60 hex>/` path
    /// when its URL has one, else the same shape from the sha256.
    fn file_path(&self, url: &str, filename: &str, sha256: &Digest) -> Option<RelPath> {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let segs: Vec<&str> = path.rsplit('/').take(5).collect();
        let hexish = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_hexdigit());
        let (h0, h1, h2) = if segs.len() == 5
            && segs[4] == "packages"
            && hexish(segs[3], 2)
            && hexish(segs[2], 2)
            && hexish(segs[1], 60)
        {
            (
                segs[3].to_string(),
                segs[2].to_string(),
                segs[1].to_string(),
            )
        } else {
            let hex = sha256.hex();
            (
                hex[0..2].to_string(),
                hex[2..4].to_string(),
                hex[4..].to_string(),
            )
        };
        let p = self
            .file_template
            .replace("{h0}", &h0)
            .replace("{h1}", &h1)
            .replace("{h2}", &h2)
            .replace("{filename}", filename);
        RelPath::new(p).ok()
    }

    /// Turns a parsed project page into tree entries and the rewritten pages.
    pub fn project_entries(&self, project: &str, page: &Project<'_>, now: u64) -> UnitOutput {
        let dir = self.project_path(project);
        let up = "../".repeat(dir.split('/').count());
        let mut entries = Vec::with_capacity(2 * page.files.len() + 3);
        let mut kept: Vec<Kept> = Vec::with_capacity(page.files.len());
        let mut rejected = 0;
        let mut ageless = 0;
        let policy = self.versions.unit(project);
        let filtering = self.versions.filters_versions();
        // Files that pass the digest checks, the cooldown and the block and
        // pre-release filters, with the version their name holds.
        let mut passed: Vec<(&File, &Digest, Option<i64>, Option<&str>)> =
            Vec::with_capacity(page.files.len());
        let mut versionless = 0;
        // A filename claimed with two digests: neither claim can be believed.
        let mut digests: std::collections::HashMap<&str, &Digest> =
            std::collections::HashMap::with_capacity(page.files.len());
        let mut disputed = std::collections::HashSet::new();
        for f in &page.files {
            if let Some(d) = &f.sha256 {
                if *digests.entry(&f.filename).or_insert(d) != d {
                    disputed.insert(&*f.filename);
                }
            }
        }
        for f in &page.files {
            if disputed.contains(&*f.filename) {
                tracing::warn!(project, file = %f.filename, "withholding a file listed twice with different digests");
                rejected += 1;
                continue;
            }
            let Some(sha256) = &f.sha256 else {
                tracing::warn!(project, file = %f.filename, url = %f.url, "skipping file without a sha256 digest");
                rejected += 1;
                continue;
            };
            if !self.serves_kind(&f.filename) {
                tracing::debug!(project, file = %f.filename, "not a package type or platform this mirror serves");
                continue;
            }
            let uploaded = f
                .upload_time
                .as_deref()
                .and_then(crate::timestamp::parse_rfc3339)
                .filter(|&t| t > 0);
            if let Some(cool) = self.cooldown {
                // A file whose age cannot be established is hidden: a
                // cooldown vouches for the age of what it serves.
                match uploaded {
                    None => {
                        ageless += 1;
                        continue;
                    }
                    Some(t) if (t as u64).saturating_add(cool) > now => {
                        tracing::debug!(project, file = %f.filename, "hidden by cooldown");
                        continue;
                    }
                    Some(_) => {}
                }
            }
            let version = file_version(project, &f.filename);
            match version {
                Some(v) => {
                    if let Some(why) = policy.hides(Scheme::Pep440, v, None, now) {
                        tracing::debug!(project, file = %f.filename, "hidden by the policy ({why:?})");
                        continue;
                    }
                }
                None => versionless += 1,
            }
            passed.push((f, sha256, uploaded, version));
        }
        if filtering && versionless > 0 {
            tracing::warn!(
                project,
                "keeping {versionless} file{} whose name holds no version the policy can read (block, prereleases and keep_latest do not apply to them)",
                if versionless == 1 { "" } else { "s" }
            );
        }
        let latest = policy.latest(Scheme::Pep440, passed.iter().filter_map(|p| p.3));
        for (f, sha256, uploaded, version) in passed {
            if version.is_some_and(|v| !latest.contains(v)) {
                tracing::debug!(project, file = %f.filename, "hidden by keep_latest");
                continue;
            }
            let Some(path) = check_name(&f.filename)
                .ok()
                .and_then(|_| self.file_path(&f.url, &f.filename, sha256))
            else {
                tracing::warn!(project, file = %f.filename, "skipping file with an unusable name");
                rejected += 1;
                continue;
            };
            let mtime = uploaded.and_then(|t| u32::try_from(t).ok());
            let mut metadata = None;
            if let Some(Some(md)) = &f.core_metadata {
                // Without a hash the metadata cannot be verified: it is not
                // advertised (above); invariant 9: nor under a name that
                // cannot be represented.
                match RelPath::new(format!("{path}.metadata")) {
                    Ok(md_path) => {
                        entries.push(Entry {
                            path: md_path,
                            mtime,
                            body: Body::Remote {
                                url: format!("{}.metadata", f.url),
                                size: None,
                                digest: md.clone(),
                            },
                        });
                        metadata = Some(md);
                    }
                    Err(e) => {
                        tracing::warn!(project, file = %f.filename, "leaving out its core metadata ({path}.metadata): {e}")
                    }
                }
            }
            let href = format!("{up}{path}");
            entries.push(Entry {
                path,
                mtime,
                body: Body::Remote {
                    url: f.url.clone(),
                    size: f.size,
                    digest: sha256.clone(),
                },
            });
            kept.push(Kept {
                file: f,
                href,
                metadata,
            });
        }
        if ageless > 0 {
            tracing::warn!(
                project,
                "cooldown: hiding {ageless} file{} with no upload time (or none that parses; PEP 503 HTML pages have none): their age cannot be established",
                if ageless == 1 { "" } else { "s" }
            );
        }
        let all_sized = kept.iter().all(|k| k.file.size.is_some());
        let api = if all_sized && page.versions.is_some() {
            "1.1"
        } else {
            "1.0"
        };
        // PEP 700 `versions` under a version filter: those with a file served.
        let served: Option<Vec<String>> = page.versions.as_ref().filter(|_| filtering).map(|vs| {
            vs.iter()
                .filter(|v| latest.iter().any(|l| Scheme::Pep440.cmp(v, l).is_eq()))
                .cloned()
                .collect()
        });
        let json = render::json(project, api, page, served.as_deref(), &kept);
        let html = render::html(project, api, &kept).into_bytes();
        drop(kept);
        let page_entry = |name: &str, body| Entry {
            path: RelPath::new(format!("{dir}/{name}")).expect("validated project name"),
            mtime: None,
            body,
        };
        // index.v1_html is the same bytes as index.html: one copy, kept
        // once in the metadata store and served under both names.
        let same = Body::Stored {
            digest: Digest::sha256_of(&html),
            size: html.len() as u64,
        };
        entries.push(page_entry("index.v1_json", Body::Inline(json)));
        entries.push(page_entry("index.html", Body::Inline(html)));
        entries.push(page_entry("index.v1_html", same));
        UnitOutput {
            entries,
            rejected,
            unchanged: false,
        }
    }
}

impl Adapter for Pypi {
    fn select<'a>(&'a self, src: &'a dyn DocSource) -> BoxFuture<'a, Result<Selection, SyncError>> {
        Box::pin(async move {
            let Some(filter) = &self.filter else {
                return Ok(Selection::Lazy(Vec::new()));
            };
            let mut units: Vec<String> = filter
                .iter()
                .filter(|g| g.is_literal())
                .map(|g| normalize(g.as_str()))
                .collect();
            if filter.iter().any(|g| !g.is_literal()) {
                let req = DocRequest {
                    path: format!("{}/", self.index_dir),
                    accept: Some(ACCEPT),
                };
                let doc = src.get(req).await?;
                let names =
                    parse_index(doc.content_type.as_deref(), &doc.body).map_err(|what| {
                        SyncError::BadMetadata {
                            url: doc.url.clone(),
                            what,
                        }
                    })?;
                let globs: Vec<Glob> = filter
                    .iter()
                    .filter(|g| !g.is_literal())
                    .map(|g| Glob::new(&normalize(g.as_str())).unwrap_or_else(|_| g.clone()))
                    .collect();
                units.extend(
                    names
                        .into_iter()
                        .filter(|n| globs.iter().any(|g| g.matches(n))),
                );
            }
            units.retain(|u| {
                let ok = is_project_name(u);
                if self.versions.unit(u).blocked() {
                    return false;
                }
                if !ok {
                    tracing::warn!(project = %u, "ignoring invalid project name in the filter");
                }
                ok
            });
            units.sort();
            units.dedup();
            Ok(Selection::Units(units))
        })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        now: u64,
        _full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(async move {
            if self.versions.unit(unit).blocked() {
                return Ok(None);
            }
            let req = DocRequest {
                path: format!("{}/{unit}/", self.index_dir),
                accept: Some(ACCEPT),
            };
            let doc = match src.get(req).await {
                Ok(doc) => doc,
                Err(DocError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let mut page = parse_project(&doc.url, doc.content_type.as_deref(), &doc.body)
                .map_err(|what| SyncError::BadMetadata {
                    url: doc.url.clone(),
                    what,
                })?;
            let dir = self.project_path(unit);
            let served = match self.versions.retain {
                Retain::Additive => src.previous_doc(&format!("{dir}/index.v1_json")),
                Retain::Mirror => None,
            };
            if self.versions.retain == Retain::Additive {
                let old = served
                    .as_deref()
                    .and_then(|b| retain::parse_served(&dir, b));
                let kept = old
                    .map(|old| retain::merge(unit, &mut page, &old, src))
                    .unwrap_or_default();
                src.retained(unit, kept.versions, kept.artifacts);
            }
            Ok(Some(self.project_entries(unit, &page, now)))
        })
    }

    fn changes_with_time(&self) -> bool {
        self.cooldown.is_some()
    }

    fn root_entries(&self, units: &[String]) -> Vec<Entry> {
        let links: Vec<_> = units
            .iter()
            .map(|u| html::Link {
                href: format!("{u}/"),
                attrs: Vec::new(),
                text: u.clone(),
            })
            .collect();
        let html = html::page("Simple index", "1.0", &links);
        let json = serde_json::json!({
            "meta": {"api-version": "1.0"},
            "projects": units.iter().map(|u| serde_json::json!({"name": u})).collect::<Vec<_>>(),
        })
        .to_string();
        [
            ("index.html", html.clone()),
            ("index.v1_html", html),
            ("index.v1_json", json),
        ]
        .into_iter()
        .map(|(name, body)| Entry {
            path: RelPath::new(format!("{}/{name}", self.index_dir)).expect("static path"),
            mtime: None,
            body: Body::Inline(body.into_bytes()),
        })
        .collect()
    }

    fn is_root_entry(&self, path: &str) -> bool {
        path.strip_prefix(&self.index_dir)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|name| matches!(name, "index.html" | "index.v1_html" | "index.v1_json"))
    }

    fn lazy_unit(&self, parent: &str, name: &str) -> Option<String> {
        (self.filter.is_none()
            && parent == self.index_dir
            && is_project_name(name)
            && !self.versions.unit(name).blocked())
        .then(|| name.to_string())
    }
}

#[cfg(test)]
mod tests;
