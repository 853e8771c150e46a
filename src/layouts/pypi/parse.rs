//! Reading upstream pages into the model: PEP 691 JSON (borrowing from the
//! page's bytes) or PEP 503 HTML, and the root listing.

use std::borrow::Cow;

use super::{File, JSON_TYPE, Project, Yanked, html, json, normalize};
use crate::digest::{Algo, Digest};

/// Whether a page is JSON, by its content type or (none given) its first byte.
fn is_json(content_type: Option<&str>, text: &str) -> bool {
    content_type.map_or_else(
        || text.trim_start().starts_with('{'),
        |t| t.starts_with(JSON_TYPE) || t.starts_with("application/json"),
    )
}

/// Parses an upstream project page (JSON or HTML by content type); the
/// result borrows from `body`.
pub fn parse_project<'a>(
    url: &str,
    content_type: Option<&str>,
    body: &'a [u8],
) -> Result<Project<'a>, String> {
    let text =
        std::str::from_utf8(body).map_err(|_| "project page is not valid UTF-8".to_string())?;
    if is_json(content_type, text) {
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

fn parse_project_json<'a>(url: &str, text: &'a str) -> Result<Project<'a>, String> {
    let base = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let p: json::Project<'a> =
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
            .sha256
            .as_deref()
            .map(|h| Digest::from_hex(Algo::Sha256, h))
        {
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                tracing::warn!(url, file = %f.filename, "ignoring bad sha256: {e}");
                None
            }
            None => None,
        };
        let md = json::small(f.core_metadata.or(f.dist_info_metadata));
        files.push(File {
            filename: f.filename,
            url: abs,
            sha256,
            requires_python: f.requires_python.filter(|s| !s.is_empty()),
            yanked: match json::small(f.yanked) {
                serde_json::Value::Bool(true) => Yanked::Yes(Cow::Borrowed("")),
                serde_json::Value::String(r) => Yanked::Yes(Cow::Owned(r)),
                _ => Yanked::No,
            },
            core_metadata: match md {
                serde_json::Value::Bool(true) => Some(None),
                serde_json::Value::Object(h) => Some(
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
    let last_serial = match json::small(p.meta.last_serial) {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    Ok(Project {
        last_serial,
        versions: p.versions,
        files,
    })
}

fn parse_project_html(url: &str, text: &str) -> Result<Project<'static>, String> {
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
            url: abs,
            sha256,
            requires_python: a
                .attr("data-requires-python")
                .filter(|s| !s.is_empty())
                .map(|s| Cow::Owned(s.to_string())),
            yanked: a
                .attr("data-yanked")
                .map_or(Yanked::No, |r| Yanked::Yes(Cow::Owned(r.to_string()))),
            core_metadata: md.map(|v| {
                Digest::parse_tagged(v)
                    .ok()
                    .filter(|d| d.algo() == Algo::Sha256)
            }),
            size: None,
            upload_time: None,
            filename: Cow::Owned(a.text),
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
    let names: Vec<String> = if is_json(content_type, text) {
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
    Ok(names
        .into_iter()
        .filter(|n| super::is_project_name(n))
        .collect())
}
