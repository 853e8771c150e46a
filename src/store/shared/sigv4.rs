//! AWS Signature Version 4 for the few S3 requests regfs makes: a request's
//! canonical form, the signing key derived from the secret and the date, and
//! the `Authorization` header (path-style URLs, signed payload hash).

use sha2::{Digest as _, Sha256};

/// An access key pair.
#[derive(Clone)]
pub struct Keys {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({}, <secret>)", self.access_key)
    }
}

/// The SHA-256 of the empty payload, hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let (mut inner, mut outer) = (Sha256::new(), Sha256::new());
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Percent-encodes as SigV4 wants: everything but unreserved characters
/// (and `/` when `path`).
pub fn encode(s: &str, path: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if path => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One request to sign.
pub struct Request<'a> {
    pub method: &'a str,
    /// `host[:port]` as sent in `Host`.
    pub host: &'a str,
    /// The encoded path (`/bucket/key`).
    pub path: &'a str,
    /// Query parameters, not encoded.
    pub query: &'a [(&'a str, String)],
    /// Headers to sign besides `host`, `x-amz-date` and
    /// `x-amz-content-sha256` (lowercase names).
    pub headers: &'a [(&'static str, String)],
    /// The payload's SHA-256, hex (or `UNSIGNED-PAYLOAD`).
    pub payload_sha256: &'a str,
}

/// The canonical query string of `query`.
pub fn canonical_query(query: &[(&str, String)]) -> String {
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (encode(k, false), encode(v, false)))
        .collect();
    q.sort();
    q.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The headers to send: `x-amz-date`, `x-amz-content-sha256` and
/// `authorization` for `req`, signed at `amz_date` (`YYYYMMDDTHHMMSSZ`).
pub fn sign(
    keys: &Keys,
    region: &str,
    req: &Request,
    amz_date: &str,
) -> Vec<(&'static str, String)> {
    let mut headers: Vec<(&str, String)> = vec![
        ("host", req.host.to_string()),
        ("x-amz-content-sha256", req.payload_sha256.to_string()),
        ("x-amz-date", amz_date.to_string()),
    ];
    headers.extend(req.headers.iter().map(|(k, v)| (*k, v.trim().to_string())));
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let signed: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    let signed = signed.join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        req.method,
        req.path,
        canonical_query(req.query),
        req.payload_sha256
    );
    let day = &amz_date[..8];
    let scope = format!("{day}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k = hmac(
        format!("AWS4{}", keys.secret_key).as_bytes(),
        day.as_bytes(),
    );
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, b"s3");
    let k = hmac(&k, b"aws4_request");
    let signature = hex(&hmac(&k, to_sign.as_bytes()));
    vec![
        ("x-amz-date", amz_date.to_string()),
        ("x-amz-content-sha256", req.payload_sha256.to_string()),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                keys.access_key
            ),
        ),
    ]
}

/// Now as SigV4 dates it.
pub fn amz_now() -> String {
    crate::timestamp::format_rfc3339(crate::timestamp::now() as i64).replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HMAC-SHA256 test case 2 of RFC 4231.
    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// The GET Object example of the SigV4 documentation for S3
    /// (`examplebucket`, `/test.txt`, range bytes=0-9).
    #[test]
    fn signs_the_documented_get_object_example() {
        let keys = Keys {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        };
        let req = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            query: &[],
            headers: &[("range", "bytes=0-9".into())],
            payload_sha256: EMPTY_SHA256,
        };
        let h = sign(&keys, "us-east-1", &req, "20130524T000000Z");
        assert_eq!(
            h[2].1,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }
}
