//! Range requests for documents upstream only appends to (RubyGems'
//! `/versions`, tens of MB, a few lines added between syncs): the bytes past
//! the kept copy are asked for, and the whole is put together and checked.
//!
//! A tail is taken only when the result can be verified: the response must
//! carry a digest of the whole representation (`Repr-Digest: sha-256=:…:`,
//! RFC 9530, or the older `Digest: SHA-256=…`, RFC 3230) and the assembled
//! bytes must match it. Anything else (no digest, a digest that does not
//! match because upstream rewrote the file, a range other than the one
//! asked) is not an error: the caller fetches the whole document instead.

use crate::digest::{Algo, Hasher};

/// `bytes <first>-<last>/<total>` of a 206 response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    pub first: u64,
    pub last: u64,
    pub total: u64,
}

pub fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let r = ContentRange {
        first: first.trim().parse().ok()?,
        last: last.trim().parse().ok()?,
        total: total.trim().parse().ok()?,
    };
    (r.first <= r.last && r.last < r.total).then_some(r)
}

/// The digests a `Repr-Digest` or `Digest` header value gives, of the
/// algorithms we can check (sha-256, sha-512).
pub fn parse_repr_digest(v: &str) -> Vec<(Algo, Vec<u8>)> {
    v.split(',')
        .filter_map(|item| {
            let (algo, value) = item.trim().split_once('=')?;
            let algo = match algo.trim().to_ascii_lowercase().as_str() {
                "sha-256" => Algo::Sha256,
                "sha-512" => Algo::Sha512,
                _ => return None,
            };
            // RFC 9530 wraps the base64 in colons (a byte sequence); RFC 3230 does not.
            let value = value.trim();
            let b64 = value
                .strip_prefix(':')
                .and_then(|v| v.strip_suffix(':'))
                .unwrap_or(value);
            let raw = crate::digest::decode_base64(b64)?;
            (raw.len() == algo.byte_len()).then_some((algo, raw))
        })
        .collect()
}

/// Does `body` match the digests of `header`? `None`: the header gives
/// none we can check.
pub fn matches(header: Option<&str>, body: &[u8]) -> Option<bool> {
    let digests = parse_repr_digest(header?);
    if digests.is_empty() {
        return None;
    }
    Some(digests.iter().all(|(algo, want)| {
        let mut h = Hasher::new(*algo);
        h.update(body);
        h.finish().as_bytes() == want.as_slice()
    }))
}

/// The byte a Range request for a kept copy of `len` bytes starts at: the
/// last one we have, so the answer is never empty and must repeat it.
pub fn start_for(len: usize) -> u64 {
    len.saturating_sub(1) as u64
}

/// The whole document from the kept copy and the tail a 206 answered to
/// `bytes=<start_for(kept.len())>-`, if the tail is that range, repeats the
/// kept copy's last byte, and the result matches the response's digest.
pub fn assemble(
    kept: &[u8],
    tail: &[u8],
    range: Option<&str>,
    digest: Option<&str>,
) -> Option<Vec<u8>> {
    let start = start_for(kept.len());
    let r = parse_content_range(range?)?;
    let fits = !kept.is_empty()
        && r.first == start
        && r.last + 1 == r.total
        && tail.len() as u64 == r.total - r.first
        && tail.first() == kept.last();
    if !fits {
        return None;
    }
    let mut whole = Vec::with_capacity(r.total as usize);
    whole.extend_from_slice(&kept[..start as usize]);
    whole.extend_from_slice(tail);
    matches(digest, &whole)?.then_some(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_b64(data: &[u8]) -> String {
        crate::digest::encode_base64(crate::digest::Digest::sha256_of(data).as_bytes())
    }

    #[test]
    fn content_ranges_and_digest_headers() {
        assert_eq!(
            parse_content_range("bytes 10-19/20"),
            Some(ContentRange {
                first: 10,
                last: 19,
                total: 20
            })
        );
        for bad in [
            "bytes 10-19/*",
            "bytes 19-10/20",
            "bytes 0-20/20",
            "items 0-1/2",
            "bytes x-1/2",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
        let body = b"created_at: x\n---\na 1 0cc175b9c0f1b6a831c399e269772661\n";
        let b64 = sha256_b64(body);
        assert_eq!(matches(Some(&format!("sha-256=:{b64}:")), body), Some(true));
        assert_eq!(
            matches(Some(&format!("SHA-256={b64}")), body),
            Some(true),
            "RFC 3230"
        );
        assert_eq!(
            matches(Some(&format!("md5=:AAAA:, sha-256=:{b64}:")), body),
            Some(true),
            "unknown algorithms are ignored"
        );
        assert_eq!(
            matches(Some(&format!("sha-256=:{b64}:")), b"other"),
            Some(false)
        );
        assert_eq!(matches(Some("md5=:AAAA:"), body), None);
        assert_eq!(matches(Some("sha-256=:AAAA:"), body), None, "wrong length");
        assert_eq!(matches(None, body), None);
    }

    #[test]
    fn a_tail_is_taken_only_if_it_continues_the_kept_copy_and_the_whole_verifies() {
        let kept = b"---\na 1 m1\n";
        let whole = b"---\na 1 m1\nb 2 m2\n";
        let start = start_for(kept.len()) as usize;
        let tail = &whole[start..];
        let range = format!("bytes {start}-{}/{}", whole.len() - 1, whole.len());
        let digest = format!("sha-256=:{}:", sha256_b64(whole));
        assert_eq!(
            assemble(kept, tail, Some(&range), Some(&digest)).as_deref(),
            Some(&whole[..])
        );
        assert_eq!(
            assemble(kept, tail, Some(&range), None),
            None,
            "unverifiable"
        );
        // Upstream rewrote the file: same length of tail, other bytes before it.
        let rewritten = b"---\nz 9 m9\nb 2 m2\n";
        let digest2 = format!("sha-256=:{}:", sha256_b64(rewritten));
        assert_eq!(
            assemble(kept, &rewritten[start..], Some(&range), Some(&digest2)),
            None
        );
        assert_eq!(
            assemble(kept, &tail[1..], Some(&range), Some(&digest)),
            None,
            "a tail that does not repeat the last kept byte"
        );
        let other = format!("bytes 0-{}/{}", whole.len() - 1, whole.len());
        assert_eq!(assemble(kept, whole, Some(&other), Some(&digest)), None);
        assert_eq!(assemble(b"", tail, Some(&range), Some(&digest)), None);
    }
}
