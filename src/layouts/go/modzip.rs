//! Go modules' own digests and names: the `h1:` directory hash that go.sum
//! and the checksum database record (over a module zip's files, or over a
//! lone go.mod), and the case-encoding of module paths in proxy URLs.
//!
//! `h1` is dirhash's Hash1: for each file, sorted by name, the line
//! `<sha256 hex>  <name>\n`; the digest is the SHA-256 of those lines. The
//! zip is read with its own central directory (stored and deflated
//! entries), bounded like the go command bounds module zips.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::digest::{Algo, Digest, Hasher};

/// The go command refuses module zips that unpack to more than this.
pub const MAX_UNZIPPED: u64 = 500 << 20;

/// Module paths in proxy URLs: every uppercase letter becomes `!` and its
/// lowercase. `None` for paths that cannot be encoded (a `!` already).
pub fn escape(path: &str) -> Option<String> {
    if path.contains('!') {
        return None;
    }
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The inverse of [`escape`]; `None` for an invalid encoding (uppercase
/// letters, or `!` not followed by a lowercase letter).
pub fn unescape(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut bang = false;
    for c in escaped.chars() {
        if bang {
            if !c.is_ascii_lowercase() {
                return None;
            }
            out.push(c.to_ascii_uppercase());
            bang = false;
        } else if c == '!' {
            bang = true;
        } else if c.is_ascii_uppercase() {
            return None;
        } else {
            out.push(c);
        }
    }
    (!bang).then_some(out)
}

/// Parses `h1:<base64 of 32 bytes>`.
pub fn parse_h1(s: &str) -> Option<Digest> {
    let b64 = s.strip_prefix("h1:")?;
    Digest::from_bytes(Algo::GoH1, &crate::digest::decode_base64(b64)?)
}

/// `h1:<base64>` of a digest of algorithm [`Algo::GoH1`].
pub fn format_h1(d: &Digest) -> String {
    format!("h1:{}", crate::digest::encode_base64(d.as_bytes()))
}

/// Hash1 over `(name, sha256 of content)` pairs.
fn hash1(mut files: Vec<(String, Digest)>) -> io::Result<Digest> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Hasher::new(Algo::Sha256);
    for (name, sum) in &files {
        if name.contains('\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a file name holds a newline",
            ));
        }
        h.update(format!("{}  {name}\n", sum.hex()).as_bytes());
    }
    let d = h.finish();
    Ok(Digest::from_bytes(Algo::GoH1, d.as_bytes()).expect("32 bytes"))
}

/// The `/go.mod h1:` hash of a go.mod file's content.
pub fn hash_mod(content: &[u8]) -> Digest {
    hash1(vec![("go.mod".into(), Digest::sha256_of(content))]).expect("no newline in go.mod")
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The `h1:` hash of a module zip on disk.
pub fn hash_zip(path: &Path) -> io::Result<Digest> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    hash_zip_from(f, len)
}

/// The `h1:` hash of a module zip of `len` bytes read from `f`.
pub fn hash_zip_from<R: Read + Seek>(mut f: R, len: u64) -> io::Result<Digest> {
    // End of central directory: 22 bytes plus a comment of at most 64 KiB.
    let tail_len = len.min(22 + 65535);
    let mut tail = vec![0u8; tail_len as usize];
    f.seek(SeekFrom::Start(len - tail_len))?;
    f.read_exact(&mut tail)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(&tail, i) == 0x0605_4b50)
        .ok_or_else(|| bad("not a zip file (no end of central directory)"))?;
    let entries = u16_at(&tail, eocd + 10) as usize;
    let cd_size = u32_at(&tail, eocd + 12) as u64;
    let cd_offset = u32_at(&tail, eocd + 16) as u64;
    if entries == 0xffff || cd_offset == 0xffff_ffff || cd_offset + cd_size > len {
        return Err(bad("zip64 or a central directory outside the file"));
    }
    let mut cd = vec![0u8; cd_size as usize];
    f.seek(SeekFrom::Start(cd_offset))?;
    f.read_exact(&mut cd)?;
    let mut files = Vec::with_capacity(entries);
    let mut at = 0usize;
    let mut total = 0u64;
    for _ in 0..entries {
        if at + 46 > cd.len() || u32_at(&cd, at) != 0x0201_4b50 {
            return Err(bad("damaged central directory"));
        }
        let method = u16_at(&cd, at + 10);
        let csize = u32_at(&cd, at + 20) as u64;
        let usize_ = u32_at(&cd, at + 24) as u64;
        let (n, e, c) = (
            u16_at(&cd, at + 28) as usize,
            u16_at(&cd, at + 30) as usize,
            u16_at(&cd, at + 32) as usize,
        );
        let local = u32_at(&cd, at + 42) as u64;
        let name = cd
            .get(at + 46..at + 46 + n)
            .ok_or_else(|| bad("damaged central directory"))?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| bad("a file name is not UTF-8"))?;
        at += 46 + n + e + c;
        total += usize_;
        if total > MAX_UNZIPPED {
            return Err(bad("unpacks to more than 500 MiB"));
        }
        let mut lh = [0u8; 30];
        f.seek(SeekFrom::Start(local))?;
        f.read_exact(&mut lh)?;
        if u32_at(&lh, 0) != 0x0403_4b50 {
            return Err(bad(format!("{name}: no local header")));
        }
        let skip = 30 + u16_at(&lh, 26) as u64 + u16_at(&lh, 28) as u64;
        f.seek(SeekFrom::Start(local + skip))?;
        let data = (&mut f).take(csize);
        let mut h = Hasher::new(Algo::Sha256);
        let mut buf = vec![0u8; 64 << 10];
        let mut got = 0u64;
        let mut feed = |r: &mut dyn Read| -> io::Result<()> {
            loop {
                let k = r.read(&mut buf)?;
                if k == 0 {
                    return Ok(());
                }
                got += k as u64;
                if got > usize_ {
                    return Err(bad(format!("{name}: longer than its directory entry says")));
                }
                h.update(&buf[..k]);
            }
        };
        match method {
            0 => feed(&mut { data })?,
            8 => feed(&mut flate2::read::DeflateDecoder::new(data))?,
            m => return Err(bad(format!("{name}: compression method {m}"))),
        }
        if got != usize_ {
            return Err(bad(format!(
                "{name}: shorter than its directory entry says"
            )));
        }
        files.push((name, h.finish()));
    }
    hash1(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_and_rejects_what_go_rejects() {
        assert_eq!(
            escape("github.com/Azure/azure-sdk").unwrap(),
            "github.com/!azure/azure-sdk"
        );
        assert_eq!(
            unescape("github.com/!azure/azure-sdk").unwrap(),
            "github.com/Azure/azure-sdk"
        );
        assert_eq!(escape("a!b"), None);
        assert_eq!(unescape("github.com/Azure"), None);
        assert_eq!(unescape("x/!"), None);
        assert_eq!(unescape("x/!1"), None);
    }

    #[test]
    fn h1_of_a_go_mod_matches_go_sum() {
        // go.sum of a module whose go.mod is exactly "module example.com/m\n"
        // (computed with the semantics of x/mod's sumdb/dirhash package).
        let d = hash_mod(b"module example.com/m\n");
        let s = format_h1(&d);
        assert_eq!(parse_h1(&s), Some(d));
        let manual = {
            let line = format!(
                "{}  go.mod\n",
                Digest::sha256_of(b"module example.com/m\n").hex()
            );
            Digest::sha256_of(line.as_bytes())
        };
        assert_eq!(
            s,
            format_h1(&Digest::from_bytes(Algo::GoH1, manual.as_bytes()).unwrap())
        );
        assert_eq!(parse_h1("h1:short"), None);
        assert_eq!(parse_h1("h2:AAAA"), None);
    }
}

#[cfg(test)]
mod zip_tests {
    use super::*;
    use std::io::{Cursor, Write};

    /// A zip as Python's zipfile or Go's archive/zip writes it: local
    /// headers, then the central directory, then its end record.
    fn zip(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for (name, data, deflate) in entries {
            let body = if *deflate {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            } else {
                data.to_vec()
            };
            let method: u16 = if *deflate { 8 } else { 0 };
            let offset = out.len() as u32;
            let header = |sig: u32, central: bool| {
                let mut h = Vec::new();
                h.extend_from_slice(&sig.to_le_bytes());
                if central {
                    h.extend_from_slice(&20u16.to_le_bytes());
                }
                h.extend_from_slice(&20u16.to_le_bytes());
                h.extend_from_slice(&0u16.to_le_bytes());
                h.extend_from_slice(&method.to_le_bytes());
                h.extend_from_slice(&[0; 8]); // time, date, crc (not checked by h1)
                h.extend_from_slice(&(body.len() as u32).to_le_bytes());
                h.extend_from_slice(&(data.len() as u32).to_le_bytes());
                h.extend_from_slice(&(name.len() as u16).to_le_bytes());
                h.extend_from_slice(&0u16.to_le_bytes());
                if central {
                    h.extend_from_slice(&[0; 6]); // comment len, disk, internal attrs
                    h.extend_from_slice(&[0; 4]); // external attrs
                    h.extend_from_slice(&offset.to_le_bytes());
                }
                h.extend_from_slice(name.as_bytes());
                h
            };
            out.extend(header(0x0403_4b50, false));
            out.extend(&body);
            cd.extend(header(0x0201_4b50, true));
        }
        let cd_offset = out.len() as u32;
        out.extend(&cd);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    fn h(bytes: &[u8]) -> io::Result<Digest> {
        hash_zip_from(Cursor::new(bytes), bytes.len() as u64)
    }

    #[test]
    fn stored_and_deflated_entries_hash_like_dirhash() {
        let files: [(&str, &[u8]); 2] = [
            ("m@v1.0.0/go.mod", b"module m\n"),
            ("m@v1.0.0/a.go", b"package m\n"),
        ];
        let want = hash1(
            files
                .iter()
                .map(|(n, d)| (n.to_string(), Digest::sha256_of(d)))
                .collect(),
        )
        .unwrap();
        let stored: Vec<_> = files.iter().map(|(n, d)| (*n, *d, false)).collect();
        let deflated: Vec<_> = files.iter().map(|(n, d)| (*n, *d, true)).collect();
        assert_eq!(h(&zip(&stored)).unwrap(), want);
        assert_eq!(
            h(&zip(&deflated)).unwrap(),
            want,
            "order and compression do not matter"
        );
    }

    #[test]
    fn hostile_zips_are_refused_not_trusted() {
        let good = zip(&[("m@v1/go.mod", b"module m\n", true)]);
        assert!(h(b"").is_err() && h(b"not a zip at all").is_err());
        assert!(h(&good[..good.len() - 5]).is_err(), "truncated end record");
        let mut lying = good.clone();
        // Claim one more uncompressed byte than the entry has (central directory's size field).
        let cd = lying.len() - 22 - (46 + "m@v1/go.mod".len());
        lying[cd + 24] += 1;
        assert!(h(&lying).is_err(), "a size that does not match");
        let mut bomb = good.clone();
        bomb[cd + 24..cd + 28].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = h(&bomb).unwrap_err().to_string();
        assert!(err.contains("500 MiB"), "{err}");
        let mut method = good.clone();
        method[cd + 10] = 99;
        assert!(
            h(&method)
                .unwrap_err()
                .to_string()
                .contains("compression method")
        );
        assert!(
            h(&zip(&[("a\nb", b"x", false)])).is_err(),
            "a newline in a name"
        );
    }
}
