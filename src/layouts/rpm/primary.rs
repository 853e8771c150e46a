//! primary.xml: every package of a repository with its location, size and
//! checksum, read as a stream of [`xml`](super::xml) events; and the rules
//! that turn a `location` into a path under the repository root.
//!
//! ```text
//! <metadata packages="N">
//!   <package type="rpm">
//!     <name>app</name> <arch>x86_64</arch>
//!     <checksum type="sha256" pkgid="YES">hex</checksum>
//!     <size package="6068" installed="…" archive="…"/>
//!     <location xml:base="…" href="Packages/a/app-1.0-1.x86_64.rpm"/>
//!     <format>…</format>            (skipped: never kept)
//!   </package>
//! ```
//!
//! A location is a URL reference relative to the repository, and dnf
//! resolves it as one: `../x.rpm` is fetched from outside the repository.
//! So a location is taken only if it names a path inside the repository
//! root with nothing to interpret: no `..` or `.`, no absolute path, no
//! `%`-escapes, `\`, `?` or `#`, and no URL or `xml:base` that leads
//! anywhere but this repository's own upstream URL.

use super::repomd::{Checksum, trusted};
use super::xml::{Handler, attr, local};
use crate::digest::Digest;
use crate::path::RelPath;

/// Rejections kept with their reason (the rest are only counted).
pub const KEEP_REJECTS: usize = 20;

/// A package as primary.xml lists it, its location resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// Relative to the repository root.
    pub path: String,
    pub size: Option<u64>,
    pub digest: Digest,
}

/// Resolves a location (`href` with an optional `xml:base`) against the
/// repository, whose upstream URLs (each ending with `/`) are `repo_urls`,
/// into a path relative to the repository root.
pub fn resolve(href: &str, base: Option<&str>, repo_urls: &[String]) -> Result<String, String> {
    let under = |url: &str| -> Option<String> {
        repo_urls
            .iter()
            .find_map(|r| url.strip_prefix(r.as_str()))
            .map(str::to_string)
    };
    check_chars(href)?;
    let rel = if has_scheme(href) {
        under(href).ok_or_else(|| format!("{href:?} is a URL outside this repository"))?
    } else if href.starts_with('/') {
        return Err(format!("{href:?} is an absolute path"));
    } else if let Some(b) = base {
        check_chars(b)?;
        let b = if b.ends_with('/') {
            b.to_string()
        } else {
            format!("{b}/")
        };
        let prefix = if has_scheme(&b) {
            under(&b).ok_or_else(|| {
                format!("xml:base {b:?} points outside this repository (at another host or path)")
            })?
        } else if b.starts_with('/') {
            return Err(format!("xml:base {b:?} is an absolute path"));
        } else {
            b
        };
        format!("{prefix}{href}")
    } else {
        href.to_string()
    };
    RelPath::new(rel.as_str()).map_err(|e| e.to_string())?;
    Ok(rel)
}

fn has_scheme(s: &str) -> bool {
    s.split_once(':').is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && !scheme.contains('/')
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

fn check_chars(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("an empty location".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| matches!(c, '%' | '\\' | '?' | '#') || c.is_control())
    {
        return Err(format!("{s:?} holds {c:?}, which a client would interpret"));
    }
    Ok(())
}

#[derive(Default)]
struct Current {
    name: String,
    checksum: Option<Checksum>,
    size: Option<u64>,
    href: Option<String>,
    base: Option<String>,
}

/// Collects the packages of a primary.xml from its events.
pub struct PrimaryHandler {
    repo_urls: Vec<String>,
    depth: usize,
    cur: Option<Current>,
    /// The text being read: `name` or `checksum`.
    field: Option<(&'static str, String)>,
    pub packages: Vec<Package>,
    /// Packages left out, and the reasons of the first [`KEEP_REJECTS`].
    pub rejected: usize,
    pub reasons: Vec<String>,
    /// Packages whose location carries an `xml:base` (clients fetch those
    /// from that URL rather than from the mirror).
    pub with_base: usize,
}

impl PrimaryHandler {
    pub fn new(repo_urls: Vec<String>) -> PrimaryHandler {
        PrimaryHandler {
            repo_urls,
            depth: 0,
            cur: None,
            field: None,
            packages: Vec::new(),
            rejected: 0,
            reasons: Vec::new(),
            with_base: 0,
        }
    }

    fn reject(&mut self, what: String) {
        self.rejected += 1;
        if self.reasons.len() < KEEP_REJECTS {
            self.reasons.push(what);
        }
    }

    fn package(&mut self, p: Current) {
        let who = if p.name.is_empty() {
            "a package".to_string()
        } else {
            format!("package {:?}", p.name)
        };
        let Some(href) = p.href else {
            return self.reject(format!("{who}: no location"));
        };
        let path = match resolve(&href, p.base.as_deref(), &self.repo_urls) {
            Ok(path) => path,
            Err(e) => return self.reject(format!("{who}: location {e}")),
        };
        if path.split('/').next() == Some("repodata") {
            return self.reject(format!("{who}: location {path:?} is inside repodata/"));
        }
        let digest = match p.checksum.as_ref().map(trusted) {
            Some(Ok(d)) => d,
            Some(Err(e)) => return self.reject(format!("{who} ({path}): {e}")),
            None => return self.reject(format!("{who} ({path}): no checksum")),
        };
        if p.base.is_some() {
            self.with_base += 1;
        }
        self.packages.push(Package {
            path,
            size: p.size,
            digest,
        });
    }

    /// Withholds every package whose path another package claims with
    /// other content (neither can be believed); identical entries collapse.
    pub fn finish(mut self) -> Self {
        self.packages.sort_by(|a, b| a.path.cmp(&b.path));
        let mut out: Vec<Package> = Vec::with_capacity(self.packages.len());
        let mut clash: Option<String> = None;
        for p in std::mem::take(&mut self.packages) {
            if clash.as_deref() == Some(p.path.as_str()) {
                self.rejected += 1;
                continue;
            }
            match out.last() {
                Some(last) if last.path == p.path && *last == p => continue,
                Some(last) if last.path == p.path => {
                    let last = out.pop().expect("just matched");
                    self.reject(format!(
                        "location {:?} listed twice with different checksums ({} and {})",
                        p.path, last.digest, p.digest
                    ));
                    self.rejected += 1;
                    clash = Some(p.path);
                }
                _ => out.push(p),
            }
        }
        self.packages = out;
        self
    }
}

impl Handler for PrimaryHandler {
    fn start(&mut self, name: &str, attrs: &[(String, String)]) {
        self.depth += 1;
        let name = local(name);
        match (self.depth, name) {
            (2, "package") => self.cur = Some(Current::default()),
            (3, _) => {
                let Some(cur) = self.cur.as_mut() else { return };
                match name {
                    "name" => self.field = Some(("name", String::new())),
                    "checksum" => {
                        let kind = attr(attrs, "type").unwrap_or_default().to_string();
                        cur.checksum = Some(Checksum {
                            kind,
                            hex: String::new(),
                        });
                        self.field = Some(("checksum", String::new()));
                    }
                    "size" => cur.size = attr(attrs, "package").and_then(|s| s.trim().parse().ok()),
                    "location" => {
                        cur.href = attr(attrs, "href").map(str::to_string);
                        cur.base = attr(attrs, "xml:base").map(str::to_string);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn end(&mut self, _name: &str) {
        if self.depth == 3 {
            if let (Some((field, text)), Some(cur)) = (self.field.take(), self.cur.as_mut()) {
                match field {
                    "name" => cur.name = text.trim().chars().take(200).collect(),
                    _ => {
                        if let Some(c) = &mut cur.checksum {
                            c.hex = text.trim().to_string();
                        }
                    }
                }
            }
        }
        if self.depth == 2 {
            if let Some(p) = self.cur.take() {
                self.package(p);
            }
        }
        self.depth = self.depth.saturating_sub(1);
    }

    fn text(&mut self, text: &str) {
        if let Some((_, t)) = &mut self.field {
            t.push_str(text);
        }
    }

    fn wants_text(&self) -> bool {
        self.field.is_some()
    }
}
