//! `PACKAGES`, the Debian-control-style index of a CRAN repository's
//! `src/contrib/`: one record per package (blank-line separated), fields
//! `Key: value`, continuation lines indented. What a mirror needs of each
//! record: `Package`, `Version` and `MD5sum` (the only digest CRAN gives);
//! the file itself is served byte-identical.

use crate::digest::{Algo, Digest};

/// One source package `PACKAGES` lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub version: String,
    /// The record's `MD5sum`, if it has one.
    pub md5: Option<Digest>,
}

impl Listed {
    /// Its tarball's name in `src/contrib/`.
    pub fn file(&self) -> String {
        format!("{}_{}.tar.gz", self.name, self.version)
    }
}

/// An R package name: ASCII letters, digits and dots, at least two
/// characters, starting with a letter and not ending with a dot.
pub fn is_package_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b.len() <= 200
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1] != b'.'
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'.')
}

/// An R package version: at least two non-negative integers separated by
/// `.` or `-`.
pub fn is_version(s: &str) -> bool {
    s.len() <= 100
        && s.split(['.', '-']).count() >= 2
        && s.split(['.', '-'])
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

/// `<pkg>_<version>.tar.gz` of package `pkg`: its version.
pub fn version_of_file<'a>(pkg: &str, file: &'a str) -> Option<&'a str> {
    let v = file
        .strip_prefix(pkg)?
        .strip_prefix('_')?
        .strip_suffix(".tar.gz")?;
    is_version(v).then_some(v)
}

/// The packages of a `PACKAGES` file, and one line per record left out.
pub fn parse(text: &str) -> (Vec<Listed>, Vec<String>) {
    let (mut out, mut dropped) = (Vec::new(), Vec::new());
    let text = text.replace("\r\n", "\n");
    for record in text.split("\n\n") {
        if record.trim().is_empty() {
            continue;
        }
        let field = |key: &str| {
            record.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k == key).then(|| v.trim().to_string())
            })
        };
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            dropped.push(format!(
                "a record without Package or Version: {:?}",
                record
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(80)
                    .collect::<String>()
            ));
            continue;
        };
        if !is_package_name(&name) || !is_version(&version) {
            dropped.push(format!(
                "{:?} {:?}: not an R package name and version",
                name.chars().take(80).collect::<String>(),
                version.chars().take(80).collect::<String>()
            ));
            continue;
        }
        let md5 = match field("MD5sum") {
            None => None,
            Some(hex) => match Digest::from_hex(Algo::Md5, &hex) {
                Ok(d) => Some(d),
                Err(e) => {
                    dropped.push(format!("{name} {version}: MD5sum: {e}"));
                    continue;
                }
            },
        };
        out.push(Listed { name, version, md5 });
    }
    (out, dropped)
}

/// The tarballs of package `pkg` an `Archive/<pkg>/` directory listing
/// (an HTML autoindex, as nginx, Apache and CRAN's own servers write)
/// links to: every `href` that names a file of this directory (no `/`)
/// called `<pkg>_<version>.tar.gz`.
pub fn parse_listing(pkg: &str, html: &str) -> Vec<String> {
    let mut files: Vec<String> = html
        .split("href=")
        .skip(1)
        .filter_map(|rest| {
            let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let target = rest[1..].split(quote).next()?;
            let file = target.split(['?', '#']).next()?;
            let file = file.strip_prefix("./").unwrap_or(file);
            (!file.contains('/'))
                .then(|| version_of_file(pkg, file))
                .flatten()
                .map(|_| file.to_string())
        })
        .collect();
    files.sort();
    files.dedup();
    files
}
