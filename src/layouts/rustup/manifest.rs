//! A channel manifest (`manifest-version = "2"`, what rustup reads) parsed
//! into the files a mirror lists: every component archive of the selected
//! targets and profiles, with the sha256 the manifest gives it.
//!
//! ```text
//! [pkg.<name>]                      version = "1.95.0 (… 2026-04-14)"
//! [pkg.<name>.target.<triple>]      available, url + hash (.tar.gz), xz_url + xz_hash,
//!                                   zst_url + zst_hash (each an absolute URL and its sha256)
//! [renames]                         <old name> = { to = "<package>" }
//! [profiles]                        minimal = ["rustc", "cargo", "rust-std", …], default, complete
//! [artifacts.<kind>.target.<triple>] [{ url, hash-sha256 }]   (source tarballs, installers)
//! ```
//!
//! The URLs name upstream's host (rustup replaces it with
//! `RUSTUP_DIST_SERVER`); a mirror keeps only their path, which must lie
//! under `dist/`, and fetches it under its own upstream base. A URL whose
//! path could leave that tree (`..`, `%`-escapes, a query), that would
//! stand where a channel manifest or its sidecars do, or whose hash is not
//! a sha256 leaves its file out, with the reason; the manifest's other
//! files stay listed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::digest::{Algo, Digest};
use crate::path::RelPath;

/// The wire format; fields rustup ignores are ignored here too.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Wire {
    manifest_version: String,
    #[serde(default)]
    pkg: BTreeMap<String, WirePkg>,
    #[serde(default)]
    renames: BTreeMap<String, WireRename>,
    #[serde(default)]
    profiles: BTreeMap<String, Vec<String>>,
    /// Since 2023: files that are no rustup component.
    #[serde(default)]
    artifacts: BTreeMap<String, WireArtifact>,
}

#[derive(Deserialize)]
struct WirePkg {
    #[serde(default)]
    target: BTreeMap<String, WireTarget>,
}

#[derive(Deserialize)]
struct WireTarget {
    #[serde(default)]
    available: bool,
    url: Option<String>,
    hash: Option<String>,
    xz_url: Option<String>,
    xz_hash: Option<String>,
    /// Read by rustup 1.28+ first when present.
    zst_url: Option<String>,
    zst_hash: Option<String>,
}

#[derive(Deserialize)]
struct WireRename {
    to: String,
}

#[derive(Deserialize)]
struct WireArtifact {
    #[serde(default)]
    target: BTreeMap<String, Vec<WireArtifactFile>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct WireArtifactFile {
    url: String,
    hash_sha256: String,
}

/// What a mirror keeps of the manifests it serves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Target triples (packages for target `*` are always kept); `None`: all.
    pub targets: Option<Vec<String>>,
    /// Profiles whose packages are kept (with what `[renames]` maps their
    /// names to); `None`: every package and artifact.
    pub profiles: Option<Vec<String>>,
}

/// A file the manifest lists.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    /// Under the dist server's root (`dist/2026-04-16/rustc-….tar.xz`).
    pub path: RelPath,
    pub digest: Digest,
}

/// The files of one manifest, and what was left out as malformed.
#[derive(Debug, Default)]
pub struct Listing {
    pub files: Vec<Listed>,
    /// Why each malformed file was left out.
    pub rejected: Vec<String>,
    /// Selected profiles this manifest does not define.
    pub missing_profiles: Vec<String>,
}

/// The mirror path of an upstream URL: its path, which must be plain
/// (no `%`, query or fragment) and under `dist/`.
pub fn path_of(url: &str) -> Result<RelPath, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("URL {url:?} is not http(s)"))?;
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| format!("URL {url:?} has no path"))?;
    if host.is_empty() {
        return Err(format!("URL {url:?} has no host"));
    }
    if !path.starts_with("dist/") {
        return Err(format!("URL {url:?} is not under /dist/"));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '+' | '~')))
    {
        return Err(format!("URL {url:?} has {c:?} in its path"));
    }
    let path = RelPath::new(path).map_err(|e| format!("URL {url:?}: {e}"))?;
    if path.file_name().starts_with("channel-rust-") {
        return Err(format!(
            "URL {url:?} would replace a channel's manifest files"
        ));
    }
    Ok(path)
}

fn listed(url: &str, hash: &str) -> Result<Listed, String> {
    let path = path_of(url)?;
    let digest = Digest::from_hex(Algo::Sha256, hash)
        .map_err(|e| format!("{path}: hash {hash:?} is not a sha256 ({e})"))?;
    Ok(Listed { path, digest })
}

/// Parses a manifest's text and lists the files `filter` keeps. Fails only
/// when the document is not a version 2 manifest at all.
pub fn parse(text: &[u8], filter: &Filter) -> Result<Listing, String> {
    let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"))?;
    let wire: Wire = toml::from_str(text)
        .map_err(|e| format!("not a channel manifest: {}", e.to_string().trim_end()))?;
    if wire.manifest_version != "2" {
        return Err(format!(
            "manifest-version is \"{}\"; only \"2\" is known",
            wire.manifest_version
        ));
    }
    let mut out = Listing::default();
    let packages: Option<BTreeSet<&str>> = filter.profiles.as_ref().and_then(|wanted| {
        if wire.profiles.is_empty() {
            // A manifest from before profiles (2019): nothing to select by.
            return None;
        }
        let mut names = BTreeSet::new();
        for p in wanted {
            match wire.profiles.get(p) {
                Some(list) => {
                    for n in list {
                        names.insert(n.as_str());
                        if let Some(r) = wire.renames.get(n) {
                            names.insert(r.to.as_str());
                        }
                    }
                }
                None => out.missing_profiles.push(p.clone()),
            }
        }
        Some(names)
    });
    let target_kept = |t: &str| {
        t == "*"
            || filter
                .targets
                .as_ref()
                .is_none_or(|ts| ts.iter().any(|w| w == t))
    };
    for (name, pkg) in &wire.pkg {
        if packages
            .as_ref()
            .is_some_and(|p| !p.contains(name.as_str()))
        {
            continue;
        }
        for (triple, t) in pkg.target.iter().filter(|(t, _)| target_kept(t)) {
            if !t.available {
                continue;
            }
            let pairs = [
                ("url", &t.url, &t.hash),
                ("xz_url", &t.xz_url, &t.xz_hash),
                ("zst_url", &t.zst_url, &t.zst_hash),
            ];
            let mut any = false;
            for (what, url, hash) in pairs {
                match (url, hash) {
                    (None, None) => {}
                    (Some(url), Some(hash)) => match listed(url, hash) {
                        Ok(l) => {
                            any = true;
                            out.files.push(l);
                        }
                        Err(e) => out
                            .rejected
                            .push(format!("pkg.{name}.target.{triple}: {e}")),
                    },
                    _ => out.rejected.push(format!(
                        "pkg.{name}.target.{triple}: {what} without its hash (or a hash without it)"
                    )),
                }
            }
            if !any && t.url.is_none() && t.xz_url.is_none() && t.zst_url.is_none() {
                out.rejected
                    .push(format!("pkg.{name}.target.{triple}: available, but no url"));
            }
        }
    }
    if packages.is_none() {
        for (kind, a) in &wire.artifacts {
            for (triple, files) in a.target.iter().filter(|(t, _)| target_kept(t)) {
                for f in files {
                    match listed(&f.url, &f.hash_sha256) {
                        Ok(l) => out.files.push(l),
                        Err(e) => out
                            .rejected
                            .push(format!("artifacts.{kind}.target.{triple}: {e}")),
                    }
                }
            }
        }
    }
    Ok(out)
}
