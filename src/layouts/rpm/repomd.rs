//! repomd.xml (a repository's root: every metadata file with its location,
//! size and checksums) and metalinks (RFC 5854 and the older 3.0 form
//! Fedora's mirror manager serves: a list of mirrors and the hashes
//! repomd.xml must have).
//!
//! Checksums are typed by name. Only sha256 and sha512 are trusted: md5
//! and sha1 (`sha`) prove nothing against a hostile upstream, so a file
//! they alone cover is withheld ([`trusted`]).

use super::xml::{Handler, Reader, XmlError, attr, local};
use crate::digest::{Algo, Digest};

/// A checksum as rpm-md writes it: its type name and hex value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checksum {
    pub kind: String,
    pub hex: String,
}

/// The digest a checksum gives, if it is of a trusted type and well formed.
pub fn trusted(c: &Checksum) -> Result<Digest, String> {
    let algo = match c.kind.to_ascii_lowercase().as_str() {
        "sha256" | "sha-256" => Algo::Sha256,
        "sha512" | "sha-512" => Algo::Sha512,
        "md5" | "sha" | "sha1" | "sha-1" => {
            return Err(format!(
                "only a {} checksum, which regfs does not trust on its own",
                c.kind
            ));
        }
        other => return Err(format!("unsupported checksum type {other:?}")),
    };
    Digest::from_hex(algo, c.hex.trim()).map_err(|e| format!("{} checksum: {e}", c.kind))
}

/// One `<data>` entry of repomd.xml.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Data {
    /// `primary`, `filelists`, `other`, `group`, `updateinfo`, `modules`, …
    pub kind: String,
    pub href: Option<String>,
    /// `xml:base` of the location, if any.
    pub base: Option<String>,
    pub checksum: Option<Checksum>,
    pub open_checksum: Option<Checksum>,
    pub size: Option<u64>,
    pub open_size: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Checksum,
    OpenChecksum,
    Size,
    OpenSize,
}

#[derive(Default)]
struct RepomdHandler {
    depth: usize,
    cur: Option<Data>,
    field: Option<(Field, String, String)>,
    out: Vec<Data>,
    rejects: Vec<String>,
}

impl Handler for RepomdHandler {
    fn start(&mut self, name: &str, attrs: &[(String, String)]) {
        self.depth += 1;
        let name = local(name);
        match (self.depth, name) {
            (2, "data") => {
                self.cur = Some(Data {
                    kind: attr(attrs, "type").unwrap_or_default().to_string(),
                    ..Data::default()
                })
            }
            (3, _) if self.cur.is_some() => {
                let f = match name {
                    "checksum" => Field::Checksum,
                    "open-checksum" => Field::OpenChecksum,
                    "size" => Field::Size,
                    "open-size" => Field::OpenSize,
                    "location" => {
                        let d = self.cur.as_mut().expect("checked above");
                        d.href = attr(attrs, "href").map(str::to_string);
                        d.base = attr(attrs, "xml:base").map(str::to_string);
                        return;
                    }
                    _ => return,
                };
                let kind = attr(attrs, "type").unwrap_or_default().to_string();
                self.field = Some((f, kind, String::new()));
            }
            _ => {}
        }
    }

    fn end(&mut self, _name: &str) {
        if let Some((f, kind, text)) = self.field.take_if(|_| self.depth == 3) {
            let d = self.cur.as_mut().expect("a field is inside <data>");
            let text = text.trim().to_string();
            let number = || text.parse::<u64>().ok();
            match f {
                Field::Checksum => d.checksum = Some(Checksum { kind, hex: text }),
                Field::OpenChecksum => d.open_checksum = Some(Checksum { kind, hex: text }),
                Field::Size => d.size = number(),
                Field::OpenSize => d.open_size = number(),
            }
        }
        if self.depth == 2 {
            if let Some(d) = self.cur.take() {
                if d.kind.is_empty() || self.out.iter().any(|o| o.kind == d.kind) {
                    self.rejects
                        .push(format!("a <data> of type {:?} twice or unnamed", d.kind));
                } else {
                    self.out.push(d);
                }
            }
        }
        self.depth = self.depth.saturating_sub(1);
    }

    fn text(&mut self, text: &str) {
        if let Some((_, _, t)) = &mut self.field {
            t.push_str(text);
        }
    }

    fn wants_text(&self) -> bool {
        self.field.is_some()
    }
}

/// The `<data>` entries of a repomd.xml, and the entries left out (a type
/// given twice, or none).
pub fn parse_repomd(body: &[u8]) -> Result<(Vec<Data>, Vec<String>), XmlError> {
    let mut h = RepomdHandler::default();
    let mut r = Reader::new();
    r.feed(body, &mut h)?;
    r.finish(&mut h)?;
    Ok((h.out, h.rejects))
}

/// What a metalink says about repomd.xml.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metalink {
    /// Trusted hashes repomd.xml may have (the current one and the
    /// alternates of recent publishes that lagging mirrors still serve).
    pub hashes: Vec<Digest>,
    /// Hashes of types regfs does not trust (reported, never used).
    pub weak: usize,
    /// Mirror URLs of repomd.xml, best first.
    pub urls: Vec<String>,
}

#[derive(Default)]
struct MetalinkHandler {
    /// Element names from the root.
    path: Vec<String>,
    /// Inside `<file name="repomd.xml">`.
    in_file: bool,
    hash: Option<(String, String)>,
    url: Option<(i64, String)>,
    hashes: Vec<Checksum>,
    /// (rank, order seen, URL): lower rank first.
    urls: Vec<(i64, usize, String)>,
}

impl Handler for MetalinkHandler {
    fn start(&mut self, name: &str, attrs: &[(String, String)]) {
        let name = local(name).to_string();
        match name.as_str() {
            "file" => self.in_file = attr(attrs, "name") == Some("repomd.xml"),
            "hash" if self.in_file => {
                let kind = attr(attrs, "type").unwrap_or_default().to_string();
                self.hash = Some((kind, String::new()));
            }
            "url" if self.in_file => {
                // 3.0: preference 1..100, higher first; RFC 5854: priority
                // 1..999999, lower first. Both become a rank, lower first.
                let rank = if let Some(p) = attr(attrs, "priority") {
                    p.trim().parse::<i64>().unwrap_or(999_999)
                } else if let Some(p) = attr(attrs, "preference") {
                    100 - p.trim().parse::<i64>().unwrap_or(0).clamp(0, 100)
                } else {
                    999_999
                };
                self.url = Some((rank, String::new()));
            }
            _ => {}
        }
        self.path.push(name);
    }

    fn end(&mut self, _name: &str) {
        match self.path.pop().as_deref() {
            Some("file") => self.in_file = false,
            Some("hash") => {
                if let Some((kind, hex)) = self.hash.take() {
                    self.hashes.push(Checksum {
                        kind,
                        hex: hex.trim().to_string(),
                    });
                }
            }
            Some("url") => {
                if let Some((rank, url)) = self.url.take() {
                    let n = self.urls.len();
                    self.urls.push((rank, n, url.trim().to_string()));
                }
            }
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        if let Some((_, t)) = &mut self.hash {
            t.push_str(text);
        } else if let Some((_, t)) = &mut self.url {
            t.push_str(text);
        }
    }

    fn wants_text(&self) -> bool {
        self.hash.is_some() || self.url.is_some()
    }
}

/// Parses a metalink (3.0 or RFC 5854) for its `repomd.xml` file.
pub fn parse_metalink(body: &[u8]) -> Result<Metalink, XmlError> {
    let mut h = MetalinkHandler::default();
    let mut r = Reader::new();
    r.feed(body, &mut h)?;
    r.finish(&mut h)?;
    let mut m = Metalink::default();
    for c in &h.hashes {
        match trusted(c) {
            Ok(d) if !m.hashes.contains(&d) => m.hashes.push(d),
            Ok(_) => {}
            Err(_) => m.weak += 1,
        }
    }
    h.urls.sort();
    m.urls = h.urls.into_iter().map(|(_, _, u)| u).collect();
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_and_sha512_are_trusted() {
        let c = |kind: &str, hex: &str| Checksum {
            kind: kind.into(),
            hex: hex.into(),
        };
        let h64 = "ab".repeat(32);
        assert_eq!(trusted(&c("sha256", &h64)).unwrap().algo(), Algo::Sha256);
        assert_eq!(
            trusted(&c("sha512", &"cd".repeat(64))).unwrap().algo(),
            Algo::Sha512
        );
        for weak in ["md5", "sha", "sha1"] {
            let e = trusted(&c(weak, &"ab".repeat(10))).unwrap_err();
            assert!(e.contains("does not trust"), "{e}");
        }
        assert!(trusted(&c("sha256", "abc")).is_err(), "a short digest");
        assert!(trusted(&c("crc32", "abcd")).is_err());
    }
}
