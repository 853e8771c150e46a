//! Content digests: the trust-chain hashes that metadata promises for an
//! artifact, and the streaming hasher that checks them while bytes arrive.
//!
//! A [`Digest`] is validated at the edge (right algorithm, right length), so
//! everything downstream — store keys, catalog records, verification — can
//! rely on it being well formed.
//!
//! Two algorithms are not proof of anything on their own ([`Algo::is_weak`]):
//! MD5, which some registries give and nothing stronger (checked all the
//! same), and [`Algo::None`], the mark of an artifact metadata gives no
//! digest for. Entries carrying either are listed only by a mirror with
//! `trust_on_first_use`, and their bytes are served only as pinned to a
//! SHA-256 on first use ([`crate::pins`]); the store never keeps an object
//! under either.

pub mod md5;

use std::fmt;

use sha2::Digest as _;

/// Hash algorithms that registries use to pin artifacts, strongest last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algo {
    /// No digest at all: metadata gives none for this artifact. Never
    /// proof; only a pin makes its bytes servable ([`crate::pins`]).
    None,
    /// MD5: checked where a registry gives nothing stronger (CRAN's
    /// `MD5sum`), but never proof on its own ([`Algo::is_weak`]).
    Md5,
    /// Go's `h1:` hash of a module zip's files: not a hash of the bytes, so
    /// it is checked on the complete file by the [`FileDigest`] the Go
    /// layout brings.
    GoH1,
    /// Only where a registry offers nothing stronger (Maven `.sha1` sidecars).
    Sha1,
    Sha256,
    Sha512,
}

impl Algo {
    /// Length of the raw digest in bytes.
    pub const fn byte_len(self) -> usize {
        match self {
            Algo::None => 32,
            Algo::Md5 => 16,
            Algo::GoH1 => 32,
            Algo::Sha1 => 20,
            Algo::Sha256 => 32,
            Algo::Sha512 => 64,
        }
    }

    /// The lowercase name used in URLs fragments, store paths and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Algo::None => "none",
            Algo::Md5 => "md5",
            Algo::GoH1 => "h1",
            Algo::Sha1 => "sha1",
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }

    pub fn from_name(name: &str) -> Option<Algo> {
        match name {
            "md5" => Some(Algo::Md5),
            "sha1" => Some(Algo::Sha1),
            "h1" => Some(Algo::GoH1),
            "sha256" => Some(Algo::Sha256),
            "sha512" => Some(Algo::Sha512),
            _ => None,
        }
    }

    pub(crate) const fn code(self) -> u8 {
        match self {
            Algo::Sha256 => 1,
            Algo::Sha512 => 2,
            Algo::Sha1 => 3,
            Algo::GoH1 => 4,
            Algo::Md5 => 5,
            Algo::None => 6,
        }
    }

    pub(crate) const fn from_code(code: u8) -> Option<Algo> {
        match code {
            1 => Some(Algo::Sha256),
            2 => Some(Algo::Sha512),
            3 => Some(Algo::Sha1),
            4 => Some(Algo::GoH1),
            5 => Some(Algo::Md5),
            6 => Some(Algo::None),
            _ => None,
        }
    }
}

impl Algo {
    /// Not proof that bytes are the ones metadata meant: MD5 (collisions
    /// are cheap) and no digest at all. Served only under
    /// `trust_on_first_use`, as pinned to the SHA-256 of the first download.
    pub const fn is_weak(self) -> bool {
        matches!(self, Algo::None | Algo::Md5)
    }
}

/// A digest of a known algorithm with exactly the algorithm's length.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algo: Algo,
    bytes: Box<[u8]>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("unknown digest algorithm `{0}`")]
    UnknownAlgo(String),
    #[error("{algo} digest must be {expected} hex characters, got {got}")]
    BadLength {
        algo: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("digest is not hexadecimal: `{0}`")]
    NotHex(String),
}

impl Digest {
    /// Parses a hex digest of `algo` (either case).
    pub fn from_hex(algo: Algo, hex: &str) -> Result<Digest, DigestError> {
        if hex.len() != algo.byte_len() * 2 {
            return Err(DigestError::BadLength {
                algo: algo.name(),
                expected: algo.byte_len() * 2,
                got: hex.len(),
            });
        }
        let bytes = decode_hex(hex).ok_or_else(|| DigestError::NotHex(hex.to_string()))?;
        Ok(Digest {
            algo,
            bytes: bytes.into(),
        })
    }

    /// Parses `algo=hex` or `algo:hex` as used in URL fragments and metadata.
    pub fn parse_tagged(s: &str) -> Result<Digest, DigestError> {
        let (name, hex) = s
            .split_once(['=', ':'])
            .ok_or_else(|| DigestError::UnknownAlgo(s.to_string()))?;
        let algo = Algo::from_name(name).ok_or_else(|| DigestError::UnknownAlgo(name.into()))?;
        Digest::from_hex(algo, hex)
    }

    /// Builds a digest from raw bytes; `None` when the length does not fit `algo`.
    pub fn from_bytes(algo: Algo, bytes: &[u8]) -> Option<Digest> {
        (bytes.len() == algo.byte_len()).then(|| Digest {
            algo,
            bytes: bytes.into(),
        })
    }

    /// The mark of an artifact metadata gives no digest for ([`Algo::None`]):
    /// all its entries carry this same value, which nothing ever matches.
    pub fn none() -> Digest {
        Digest {
            algo: Algo::None,
            bytes: vec![0; Algo::None.byte_len()].into(),
        }
    }

    /// The SHA-256 of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        let mut h = Hasher::new(Algo::Sha256);
        h.update(data);
        h.finish()
    }

    pub fn algo(&self) -> Algo {
        self.algo
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn hex(&self) -> String {
        encode_hex(&self.bytes)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo.name(), self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Incremental hasher for one algorithm.
pub enum Hasher {
    /// Algorithms that need the whole file ([`digest_file`]); finishes empty.
    Deferred(Algo),
    /// [`Algo::None`]: hashes nothing, finishes as [`Digest::none`].
    Nothing,
    Md5(Box<md5::Md5>),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algo: Algo) -> Hasher {
        match algo {
            Algo::GoH1 => Hasher::Deferred(algo),
            Algo::None => Hasher::Nothing,
            Algo::Md5 => Hasher::Md5(Box::default()),
            Algo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Deferred(_) | Hasher::Nothing => {}
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            Hasher::Deferred(algo) => Digest {
                algo,
                bytes: vec![0; algo.byte_len()].into(),
            },
            Hasher::Nothing => Digest::none(),
            Hasher::Md5(h) => Digest {
                algo: Algo::Md5,
                bytes: h.finish().to_vec().into(),
            },
            Hasher::Sha1(h) => Digest {
                algo: Algo::Sha1,
                bytes: h.finalize().to_vec().into(),
            },
            Hasher::Sha256(h) => Digest {
                algo: Algo::Sha256,
                bytes: h.finalize().to_vec().into(),
            },
            Hasher::Sha512(h) => Digest {
                algo: Algo::Sha512,
                bytes: h.finalize().to_vec().into(),
            },
        }
    }
}

impl Algo {
    /// True when the digest is a hash of the byte stream (all but `h1`).
    pub const fn streams(self) -> bool {
        !matches!(self, Algo::GoH1)
    }
}

/// A digest computed from a complete file rather than its byte stream
/// (see [`Algo::streams`]): a layout brings it, the store calls it.
#[derive(Clone, Copy, Debug)]
pub struct FileDigest {
    pub algo: Algo,
    pub digest_file: fn(&std::path::Path) -> std::io::Result<Digest>,
}

/// The digest of a file on disk, of the algorithm of `like`; algorithms
/// that do not stream are computed by the matching entry of `file_digests`.
pub fn digest_file(
    path: &std::path::Path,
    like: &Digest,
    file_digests: &[FileDigest],
) -> std::io::Result<Digest> {
    use std::io::Read;
    if !like.algo().streams() {
        let f = file_digests
            .iter()
            .find(|f| f.algo == like.algo())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    format!("no layout computes {} digests", like.algo().name()),
                )
            })?;
        return (f.digest_file)(path);
    }
    let mut f = std::fs::File::open(path)?;
    let mut h = Hasher::new(like.algo());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

pub fn encode_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Encodes standard base64, padded.
pub fn encode_base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            s.push(if i <= c.len() {
                T[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    s
}

/// Decodes standard base64 (with or without `=` padding), as Subresource
/// Integrity strings (`sha512-<base64>`) carry digests.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = hex.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_vector() {
        assert_eq!(
            Digest::sha256_of(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn base64_decodes_sri_digests() {
        assert_eq!(decode_base64("YWJj").unwrap(), b"abc");
        for data in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[0xff; 64]] {
            assert_eq!(decode_base64(&encode_base64(data)).unwrap(), data);
        }
        assert_eq!(encode_base64(b"ab"), "YWI=");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("YQ").unwrap(), b"a");
        assert_eq!(decode_base64(""), Some(Vec::new()));
        assert_eq!(decode_base64("Y"), None);
        assert_eq!(decode_base64("Y!=="), None);
    }

    #[test]
    fn sha1_of_known_vector() {
        let mut h = Hasher::new(Algo::Sha1);
        h.update(b"abc");
        assert_eq!(h.finish().hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert!(Algo::Sha1 < Algo::Sha256 && Algo::Sha256 < Algo::Sha512);
    }

    #[test]
    fn weak_algorithms_are_weakest_and_md5_streams() {
        assert!(Algo::None < Algo::Md5 && Algo::Md5 < Algo::Sha1);
        assert!(Algo::Md5.is_weak() && Algo::None.is_weak() && !Algo::Sha1.is_weak());
        let mut h = Hasher::new(Algo::Md5);
        h.update(b"a");
        h.update(b"bc");
        let d = h.finish();
        assert_eq!(
            d,
            Digest::parse_tagged("md5:900150983cd24fb0d6963f7d28e17f72").unwrap()
        );
        for a in [
            Algo::None,
            Algo::Md5,
            Algo::GoH1,
            Algo::Sha1,
            Algo::Sha256,
            Algo::Sha512,
        ] {
            assert_eq!(Algo::from_code(a.code()), Some(a));
        }
        // Nothing stands for "no digest" in metadata: it is never parsed.
        assert!(Digest::parse_tagged(&format!("none:{}", "00".repeat(32))).is_err());
        assert_eq!(Hasher::new(Algo::None).finish(), Digest::none());
    }

    #[test]
    fn tagged_parse_checks_length_and_hex() {
        let d = Digest::parse_tagged(
            "sha256=BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        )
        .unwrap();
        assert_eq!(d, Digest::sha256_of(b"abc"));
        assert_eq!(
            Digest::parse_tagged("sha256=abcd"),
            Err(DigestError::BadLength {
                algo: "sha256",
                expected: 64,
                got: 4
            })
        );
        assert!(matches!(
            Digest::parse_tagged(&format!("sha256={}", "zz".repeat(32))),
            Err(DigestError::NotHex(_))
        ));
        assert!(matches!(
            Digest::parse_tagged("md4=00"),
            Err(DigestError::UnknownAlgo(_))
        ));
    }
}
