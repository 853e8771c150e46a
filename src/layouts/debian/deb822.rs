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

/// Which index an [`IndexParser`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKind {
    /// Packages: `Filename`, `Size`, `SHA256` per stanza.
    Packages,
    /// Sources: `Directory` plus each `Checksums-Sha256` line.
    Sources,
}

/// A streaming reader of Packages or Sources: fed decompressed bytes in
/// chunks of any size, it keeps only the current stanza and the files found
/// (a bookworm Packages is 50 MB; it never has to be in memory at once).
pub struct IndexParser {
    kind: IndexKind,
    partial: Vec<u8>,
    package: String,
    filename: Option<String>,
    size: Option<String>,
    sha: Option<String>,
    dir: Option<String>,
    sums: Vec<String>,
    in_sums: bool,
    files: Vec<PoolFile>,
    bad: Vec<String>,
}

impl IndexParser {
    pub fn new(kind: IndexKind) -> IndexParser {
        IndexParser {
            kind,
            partial: Vec::new(),
            package: String::new(),
            filename: None,
            size: None,
            sha: None,
            dir: None,
            sums: Vec::new(),
            in_sums: false,
            files: Vec::new(),
            bad: Vec::new(),
        }
    }

    pub fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.line_bytes(&chunk[..nl]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[..nl]);
                self.line_bytes(&line);
            }
            chunk = &chunk[nl + 1..];
        }
        self.partial.extend_from_slice(chunk);
    }

    /// The files named, and the stanzas rejected (with why).
    pub fn finish(mut self) -> (Vec<PoolFile>, Vec<String>) {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.line_bytes(&rest);
        }
        self.end_stanza();
        (self.files, self.bad)
    }

    fn line_bytes(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match std::str::from_utf8(line) {
            Ok(l) => self.line(l),
            Err(_) => self
                .bad
                .push(format!("package {:?}: a line is not UTF-8", self.package)),
        }
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            self.end_stanza();
            return;
        }
        if let Some(cont) = line.strip_prefix([' ', '\t']) {
            if self.in_sums {
                self.sums.push(cont.to_string());
            }
            return;
        }
        self.in_sums = false;
        let Some((key, value)) = line.split_once(':') else {
            return;
        };
        let value = value.trim();
        match (self.kind, key) {
            (_, "Package") => self.package = value.to_string(),
            (IndexKind::Packages, "Filename") => self.filename = Some(value.to_string()),
            (IndexKind::Packages, "Size") => self.size = Some(value.to_string()),
            (IndexKind::Packages, "SHA256") => self.sha = Some(value.to_string()),
            (IndexKind::Sources, "Directory") => self.dir = Some(value.to_string()),
            (IndexKind::Sources, "Checksums-Sha256") => self.in_sums = true,
            _ => {}
        }
    }

    fn end_stanza(&mut self) {
        let package = std::mem::take(&mut self.package);
        match self.kind {
            IndexKind::Packages => {
                let (filename, size, sha) =
                    (self.filename.take(), self.size.take(), self.sha.take());
                if filename.is_none() && size.is_none() && sha.is_none() {
                    return;
                }
                let file = (|| {
                    let path =
                        RelPath::new(filename.ok_or("no Filename")?).map_err(|e| e.to_string())?;
                    let size = size
                        .ok_or("no Size")?
                        .parse()
                        .map_err(|_| "bad Size".to_string())?;
                    let sha256 = Digest::from_hex(Algo::Sha256, &sha.ok_or("no SHA256")?)
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>(PoolFile { path, size, sha256 })
                })();
                match file {
                    Ok(f) => self.files.push(f),
                    Err(e) => self.bad.push(format!("package {package:?}: {e}")),
                }
            }
            IndexKind::Sources => {
                let dir = self.dir.take();
                self.in_sums = false;
                for line in std::mem::take(&mut self.sums) {
                    let Some(d) = &dir else {
                        self.bad
                            .push(format!("source {package:?}: stanza has no Directory"));
                        continue;
                    };
                    match parse_checksum_line(&line, Algo::Sha256) {
                        Some((sha256, size, name)) => {
                            match RelPath::new(d.as_str()).and_then(|p| p.join(name)) {
                                Ok(path) => self.files.push(PoolFile { path, size, sha256 }),
                                Err(e) => self.bad.push(format!("{d}/{name}: {e}")),
                            }
                        }
                        None => self
                            .bad
                            .push(format!("source {package:?}: bad checksum line {line:?}")),
                    }
                }
            }
        }
    }
}

/// Scans a whole Packages text (see [`IndexParser`]).
pub fn parse_packages(text: &str) -> (Vec<PoolFile>, Vec<String>) {
    let mut p = IndexParser::new(IndexKind::Packages);
    p.feed(text.as_bytes());
    p.finish()
}

/// Scans a whole Sources text (see [`IndexParser`]).
pub fn parse_sources(text: &str) -> (Vec<PoolFile>, Vec<String>) {
    let mut p = IndexParser::new(IndexKind::Sources);
    p.feed(text.as_bytes());
    p.finish()
}
