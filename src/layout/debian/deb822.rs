//! Debian control-file parsing: Release (with its checksum lists),
//! Packages and Sources stanzas. Lines are scanned once, without building
//! a map per stanza: a bookworm Packages is 50 MB and 63k stanzas.

use crate::digest::{Algo, Digest};
use crate::path::RelPath;

/// One index file a Release lists under `SHA256:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Relative to `dists/<suite>/`.
    pub path: RelPath,
    pub size: u64,
    pub sha256: Digest,
    /// The SHA512 Release also gives, if any: apt then asks for
    /// `by-hash/SHA512/<hex>` (the content is still checked by SHA256).
    pub sha512: Option<String>,
}

#[derive(Debug, Default)]
pub struct Release {
    pub date: Option<i64>,
    pub valid_until: Option<i64>,
    pub architectures: Vec<String>,
    pub files: Vec<Listed>,
    /// Checksum lines that could not be used (logged by the caller).
    pub rejected: Vec<String>,
}

/// Parses the (already verified) text of a Release file.
pub fn parse_release(text: &str) -> Release {
    let mut r = Release::default();
    let mut section = "";
    let mut sha512: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(cont) = line.strip_prefix(' ') {
            match section {
                "SHA256" => match parse_checksum_line(cont, Algo::Sha256) {
                    Some((sha256, size, name)) => match RelPath::new(name) {
                        Ok(path) => r.files.push(Listed {
                            path,
                            size,
                            sha256,
                            sha512: None,
                        }),
                        Err(e) => r.rejected.push(format!("{name}: {e}")),
                    },
                    None => r.rejected.push(cont.trim().to_string()),
                },
                "SHA512" => {
                    if let Some((d, _, name)) = parse_checksum_line(cont, Algo::Sha512) {
                        sha512.insert(name, d.hex());
                    }
                }
                _ => {}
            }
            continue;
        }
        section = "";
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "SHA256" | "SHA512" => section = key,
            "Date" => r.date = crate::timestamp::parse_rfc2822(value),
            "Valid-Until" => r.valid_until = crate::timestamp::parse_rfc2822(value),
            "Architectures" => {
                r.architectures = value.split_whitespace().map(str::to_string).collect()
            }
            _ => {}
        }
    }
    for f in &mut r.files {
        f.sha512 = sha512.remove(f.path.as_str());
    }
    r
}

/// `<hex> <size> <name>`.
fn parse_checksum_line(line: &str, algo: Algo) -> Option<(Digest, u64, &str)> {
    let mut it = line.split_whitespace();
    let hash = Digest::from_hex(algo, it.next()?).ok()?;
    let size = it.next()?.parse().ok()?;
    let name = it.next()?;
    it.next().is_none().then_some((hash, size, name))
}

/// A file of the pool named by an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolFile {
    pub path: RelPath,
    pub size: u64,
    pub sha256: Digest,
}

/// Scans Packages stanzas for `Filename`, `Size` and `SHA256`.
/// Returns the files and the stanzas rejected (with why).
pub fn parse_packages(text: &str) -> (Vec<PoolFile>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let (mut package, mut filename, mut size, mut sha) = ("", None, None, None);
    let mut flush =
        |package: &str, filename: Option<&str>, size: Option<&str>, sha: Option<&str>| {
            if filename.is_none() && size.is_none() && sha.is_none() {
                return;
            }
            let file = (|| {
                let name = filename.ok_or("no Filename")?;
                let path = RelPath::new(name).map_err(|e| e.to_string())?;
                let size = size
                    .ok_or("no Size")?
                    .parse()
                    .map_err(|_| "bad Size".to_string())?;
                let sha256 = Digest::from_hex(Algo::Sha256, sha.ok_or("no SHA256")?)
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(PoolFile { path, size, sha256 })
            })();
            match file {
                Ok(f) => out.push(f),
                Err(e) => bad.push(format!("package {package:?}: {e}")),
            }
        };
    for line in text.lines() {
        if line.is_empty() {
            flush(package, filename.take(), size.take(), sha.take());
            package = "";
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Package" => package = value,
            "Filename" => filename = Some(value),
            "Size" => size = Some(value),
            "SHA256" => sha = Some(value),
            _ => {}
        }
    }
    flush(package, filename, size, sha);
    (out, bad)
}

/// Scans Sources stanzas: `Directory` plus each `Checksums-Sha256` line.
pub fn parse_sources(text: &str) -> (Vec<PoolFile>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut dir: Option<&str> = None;
    let mut files: Vec<&str> = Vec::new();
    let mut in_sums = false;
    let mut flush = |dir: Option<&str>, files: &mut Vec<&str>| {
        for line in files.drain(..) {
            let Some(d) = dir else {
                bad.push(format!("{line}: stanza has no Directory"));
                continue;
            };
            match parse_checksum_line(line, Algo::Sha256) {
                Some((sha256, size, name)) => match RelPath::new(d).and_then(|p| p.join(name)) {
                    Ok(path) => out.push(PoolFile { path, size, sha256 }),
                    Err(e) => bad.push(format!("{d}/{name}: {e}")),
                },
                None => bad.push(format!("bad checksum line {line:?}")),
            }
        }
    };
    for line in text.lines() {
        if line.is_empty() {
            flush(dir.take(), &mut files);
            in_sums = false;
            continue;
        }
        if let Some(cont) = line.strip_prefix(' ') {
            if in_sums {
                files.push(cont);
            }
            continue;
        }
        in_sums = false;
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "Directory" => dir = Some(value.trim()),
            "Checksums-Sha256" => in_sums = true,
            _ => {}
        }
    }
    flush(dir, &mut files);
    (out, bad)
}
