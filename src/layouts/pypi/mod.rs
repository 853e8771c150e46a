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

use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::keys::{Glob, Section};
use crate::layout::{
    Adapter, BoxFuture, Capabilities, Sizes, DocError, DocRequest, DocSource, LayoutDef, MirrorContext,
    Selection, SyncError, UnitOutput,
};
use crate::path::{RelPath, check_name};

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
    },
    configure: |ctx, keys| Ok(Box::new(Pypi::from_keys(ctx, keys)?)),
    file_digests: &[],
};

const ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";
const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";

pub struct Pypi {
    filter: Option<Vec<Glob>>,
    cooldown: Option<u64>,
    index_dir: String,
    project_dir: String,
    file_template: String,
}

/// A project page, whichever format it came in.
#[derive(Debug, Default)]
pub struct Project {
    pub last_serial: Option<u64>,
    /// PEP 700 `versions`, when upstream sent them.
    pub versions: Option<Vec<String>>,
    pub files: Vec<File>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Yanked {
    No,
    Yes(String),
}

#[derive(Debug, Clone)]
pub struct File {
    pub filename: String,
    /// Absolute, fragment removed.
    pub url: String,
    pub sha256: Option<Digest>,
    pub requires_python: Option<String>,
    pub yanked: Yanked,
    /// `Some(None)`: upstream has metadata but gave no hash for it.
    pub core_metadata: Option<Option<Digest>>,
    pub size: Option<u64>,
    pub upload_time: Option<String>,
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
    /// Reads `projects` (names or globs; none: lazy) and `cooldown` (hide
    /// files uploaded less than this long ago, and files whose upload time
    /// is unknown).
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Pypi, String> {
        Ok(Pypi {
            filter: keys.globs("projects")?,
            cooldown: keys.duration("cooldown")?.map(|d| d.as_secs()),
            index_dir: ctx.spec.path("index_dir").to_string(),
            project_dir: ctx.spec.path("project_dir").to_string(),
            file_template: ctx.spec.path("file").to_string(),
        })
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
    pub fn project_entries(&self, project: &str, page: &Project, now: u64) -> UnitOutput {
        let dir = self.project_path(project);
        let up = "../".repeat(dir.split('/').count());
        let mut entries = Vec::new();
        let mut kept: Vec<(File, String)> = Vec::new();
        let mut rejected = 0;
        let mut ageless = 0;
        // A filename claimed with two digests: neither claim can be believed.
        let mut digests: std::collections::HashMap<&str, Vec<&Digest>> =
            std::collections::HashMap::new();
        for f in &page.files {
            if let Some(d) = &f.sha256 {
                digests.entry(&f.filename).or_default().push(d);
            }
        }
        for f in &page.files {
            if digests
                .get(f.filename.as_str())
                .is_some_and(|ds| ds.iter().any(|d| Some(*d) != f.sha256.as_ref()))
            {
                tracing::warn!(project, file = %f.filename, "withholding a file listed twice with different digests");
                rejected += 1;
                continue;
            }
            let Some(sha256) = &f.sha256 else {
                tracing::warn!(project, file = %f.filename, url = %f.url, "skipping file without a sha256 digest");
                rejected += 1;
                continue;
            };
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
            let Some(path) = check_name(&f.filename)
                .ok()
                .and_then(|_| self.file_path(&f.url, &f.filename, sha256))
            else {
                tracing::warn!(project, file = %f.filename, "skipping file with an unusable name");
                rejected += 1;
                continue;
            };
            let mtime = uploaded.and_then(|t| u32::try_from(t).ok());
            entries.push(Entry {
                path: path.clone(),
                mtime,
                body: Body::Remote {
                    url: f.url.clone(),
                    size: f.size,
                    digest: sha256.clone(),
                },
            });
            let mut f = f.clone();
            let md_path = RelPath::new(format!("{path}.metadata"));
            match (&f.core_metadata, md_path) {
                (Some(Some(md)), Ok(md_path)) => entries.push(Entry {
                    path: md_path,
                    mtime,
                    body: Body::Remote {
                        url: format!("{}.metadata", f.url),
                        size: None,
                        digest: md.clone(),
                    },
                }),
                (Some(Some(_)), Err(e)) => {
                    // Invariant 9: a name that cannot be represented is left out.
                    tracing::warn!(project, file = %f.filename, "leaving out its core metadata ({path}.metadata): {e}");
                    f.core_metadata = None;
                }
                // Without a hash the metadata cannot be verified: do not advertise it.
                _ => f.core_metadata = None,
            }
            kept.push((f, format!("{up}{path}")));
        }
        if ageless > 0 {
            tracing::warn!(
                project,
                "cooldown: hiding {ageless} file{} with no upload time (or none that parses; PEP 503 HTML pages have none): their age cannot be established",
                if ageless == 1 { "" } else { "s" }
            );
        }
        let all_sized = kept.iter().all(|(f, _)| f.size.is_some());
        let api = if all_sized && page.versions.is_some() {
            "1.1"
        } else {
            "1.0"
        };
        let html = self.render_html(project, api, &kept);
        let json = render_json(project, api, page, &kept);
        for (name, body) in [
            ("index.html", html.clone()),
            ("index.v1_html", html),
            ("index.v1_json", json),
        ] {
            entries.push(Entry {
                path: RelPath::new(format!("{dir}/{name}")).expect("validated project name"),
                mtime: None,
                body: Body::Inline(body.into_bytes()),
            });
        }
        UnitOutput {
            entries,
            rejected,
            unchanged: false,
        }
    }

    fn render_html(&self, project: &str, api: &str, files: &[(File, String)]) -> String {
        let links: Vec<_> = files
            .iter()
            .map(|(f, href)| {
                let mut attrs = Vec::new();
                if let Some(rp) = &f.requires_python {
                    attrs.push(("data-requires-python", rp.clone()));
                }
                if let Some(Some(md)) = &f.core_metadata {
                    let v = format!("sha256={}", md.hex());
                    attrs.push(("data-dist-info-metadata", v.clone()));
                    attrs.push(("data-core-metadata", v));
                }
                if let Yanked::Yes(reason) = &f.yanked {
                    attrs.push(("data-yanked", reason.clone()));
                }
                let sha = f.sha256.as_ref().map(|d| d.hex()).unwrap_or_default();
                html::Link {
                    href: format!("{href}#sha256={sha}"),
                    attrs,
                    text: f.filename.clone(),
                }
            })
            .collect();
        html::page(&format!("Links for {project}"), api, &links)
    }
}

fn render_json(project: &str, api: &str, page: &Project, files: &[(File, String)]) -> String {
    use serde_json::{Map, Value, json};
    let v11 = api == "1.1";
    let files: Vec<Value> = files
        .iter()
        .map(|(f, href)| {
            let mut o = Map::new();
            o.insert("filename".into(), json!(f.filename));
            o.insert("url".into(), json!(href));
            o.insert(
                "hashes".into(),
                json!({"sha256": f.sha256.as_ref().map(|d| d.hex())}),
            );
            if let Some(rp) = &f.requires_python {
                o.insert("requires-python".into(), json!(rp));
            }
            if v11 {
                o.insert("size".into(), json!(f.size));
                if let Some(t) = &f.upload_time {
                    o.insert("upload-time".into(), json!(t));
                }
            }
            o.insert(
                "yanked".into(),
                match &f.yanked {
                    Yanked::No => json!(false),
                    Yanked::Yes(r) if r.is_empty() => json!(true),
                    Yanked::Yes(r) => json!(r),
                },
            );
            let md = match &f.core_metadata {
                Some(Some(d)) => json!({"sha256": d.hex()}),
                _ => json!(false),
            };
            o.insert("core-metadata".into(), md.clone());
            o.insert("dist-info-metadata".into(), md);
            Value::Object(o)
        })
        .collect();
    let mut doc = Map::new();
    let mut meta = Map::new();
    meta.insert("api-version".into(), json!(api));
    if let Some(s) = page.last_serial {
        meta.insert("_last-serial".into(), json!(s));
    }
    doc.insert("meta".into(), Value::Object(meta));
    doc.insert("name".into(), json!(project));
    if v11 {
        doc.insert("versions".into(), json!(page.versions));
    }
    doc.insert("files".into(), Value::Array(files));
    serde_json::to_string(&Value::Object(doc)).expect("JSON values serialize")
}

/// Parses an upstream project page (JSON or HTML by content type).
pub fn parse_project(
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Project, String> {
    let text =
        std::str::from_utf8(body).map_err(|_| "project page is not valid UTF-8".to_string())?;
    let is_json = content_type.map_or_else(
        || text.trim_start().starts_with('{'),
        |t| t.starts_with(JSON_TYPE) || t.starts_with("application/json"),
    );
    if is_json {
        parse_project_json(url, text)
    } else {
        parse_project_html(url, text)
    }
}

fn resolve(base: &reqwest::Url, href: &str) -> Result<(String, Option<String>), String> {
    let mut u = base
        .join(href)
        .map_err(|e| format!("bad file URL `{href}`: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("file URL `{href}` is not http(s)"));
    }
    let frag = u.fragment().map(str::to_string);
    u.set_fragment(None);
    Ok((u.to_string(), frag))
}

fn parse_project_json(url: &str, text: &str) -> Result<Project, String> {
    let base = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let p: json::Project =
        serde_json::from_str(text).map_err(|e| format!("invalid PEP 691 JSON: {e}"))?;
    let mut files = Vec::with_capacity(p.files.len());
    for f in p.files {
        let (abs, _) = match resolve(&base, &f.url) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(url, "skipping file: {e}");
                continue;
            }
        };
        let sha256 = match f
            .hashes
            .get("sha256")
            .map(|h| Digest::from_hex(Algo::Sha256, h))
        {
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                tracing::warn!(url, file = %f.filename, "ignoring bad sha256: {e}");
                None
            }
            None => None,
        };
        let md = f.core_metadata.or(f.dist_info_metadata);
        files.push(File {
            filename: f.filename,
            url: abs,
            sha256,
            requires_python: f.requires_python.filter(|s| !s.is_empty()),
            yanked: match f.yanked {
                Some(serde_json::Value::Bool(true)) => Yanked::Yes(String::new()),
                Some(serde_json::Value::String(r)) => Yanked::Yes(r),
                _ => Yanked::No,
            },
            core_metadata: match md {
                Some(serde_json::Value::Bool(true)) => Some(None),
                Some(serde_json::Value::Object(h)) => Some(
                    h.get("sha256")
                        .and_then(|v| v.as_str())
                        .and_then(|h| Digest::from_hex(Algo::Sha256, h).ok()),
                ),
                _ => None,
            },
            size: f.size,
            upload_time: f.upload_time,
        });
    }
    let last_serial = p
        .meta
        .last_serial
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
    Ok(Project {
        last_serial,
        versions: p.versions,
        files,
    })
}

fn parse_project_html(url: &str, text: &str) -> Result<Project, String> {
    let base = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for a in html::anchors(text) {
        let Some(href) = a.attr("href") else { continue };
        let (abs, frag) = match resolve(&base, href) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(url, "skipping file: {e}");
                continue;
            }
        };
        let sha256 = frag
            .as_deref()
            .and_then(|f| f.strip_prefix("sha256="))
            .and_then(|h| Digest::from_hex(Algo::Sha256, h).ok());
        let md = a
            .attr("data-core-metadata")
            .or(a.attr("data-dist-info-metadata"));
        files.push(File {
            filename: a.text.clone(),
            url: abs,
            sha256,
            requires_python: a
                .attr("data-requires-python")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            yanked: a
                .attr("data-yanked")
                .map_or(Yanked::No, |r| Yanked::Yes(r.to_string())),
            core_metadata: md.map(|v| {
                Digest::parse_tagged(v)
                    .ok()
                    .filter(|d| d.algo() == Algo::Sha256)
            }),
            size: None,
            upload_time: None,
        });
    }
    Ok(Project {
        files,
        ..Project::default()
    })
}

/// Parses the upstream root listing into normalized project names.
pub fn parse_index(content_type: Option<&str>, body: &[u8]) -> Result<Vec<String>, String> {
    let text =
        std::str::from_utf8(body).map_err(|_| "project listing is not valid UTF-8".to_string())?;
    let is_json = content_type.map_or_else(
        || text.trim_start().starts_with('{'),
        |t| t.starts_with(JSON_TYPE) || t.starts_with("application/json"),
    );
    let names: Vec<String> = if is_json {
        let idx: json::Index =
            serde_json::from_str(text).map_err(|e| format!("invalid PEP 691 JSON: {e}"))?;
        idx.projects
            .into_iter()
            .map(|p| normalize(&p.name))
            .collect()
    } else {
        html::anchors(text)
            .into_iter()
            .map(|a| normalize(&a.text))
            .collect()
    };
    Ok(names.into_iter().filter(|n| is_project_name(n)).collect())
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
            let req = DocRequest {
                path: format!("{}/{unit}/", self.index_dir),
                accept: Some(ACCEPT),
            };
            let doc = match src.get(req).await {
                Ok(doc) => doc,
                Err(DocError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let page = parse_project(&doc.url, doc.content_type.as_deref(), &doc.body).map_err(
                |what| SyncError::BadMetadata {
                    url: doc.url.clone(),
                    what,
                },
            )?;
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
        (self.filter.is_none() && parent == self.index_dir && is_project_name(name))
            .then(|| name.to_string())
    }
}

#[cfg(test)]
mod tests;
