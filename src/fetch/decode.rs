//! `Content-Encoding` an upstream applied although regfs asked for
//! `identity`. Documents are decoded before they are parsed; artifacts are
//! checked both as sent and decoded (see `download.rs`), since servers also
//! label a stored `.tgz` or `.gz` file `Content-Encoding: gzip`.

use std::io::{Read, Write};

use super::FetchError;

/// An encoding regfs can undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Encoding {
    Gzip,
    /// HTTP's `deflate` is the zlib format.
    Deflate,
}

impl Encoding {
    /// The encoding a `Content-Encoding` value names; `None` for identity,
    /// none, or one regfs does not decode (the bytes are then taken as sent).
    pub(super) fn of(header: Option<&str>) -> Option<Encoding> {
        match header?.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Encoding::Gzip),
            "deflate" => Some(Encoding::Deflate),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }

    /// A decoder that writes what it decodes to `sink`.
    pub(super) fn writer<W: Write + Send + 'static>(self, sink: W) -> Box<dyn Decoder<W>> {
        match self {
            Encoding::Gzip => Box::new(flate2::write::MultiGzDecoder::new(sink)),
            Encoding::Deflate => Box::new(flate2::write::ZlibDecoder::new(sink)),
        }
    }
}

/// A streaming decoder over a sink.
pub(super) trait Decoder<W>: Write + Send {
    /// Flushes the end of the stream and returns the sink.
    fn finish(self: Box<Self>) -> std::io::Result<W>;
}

impl<W: Write + Send> Decoder<W> for flate2::write::MultiGzDecoder<W> {
    fn finish(self: Box<Self>) -> std::io::Result<W> {
        (*self).finish()
    }
}

impl<W: Write + Send> Decoder<W> for flate2::write::ZlibDecoder<W> {
    fn finish(self: Box<Self>) -> std::io::Result<W> {
        (*self).finish()
    }
}

/// Whether `url` names a file that is itself gzip-compressed, so that a
/// `Content-Encoding: gzip` label describes the file rather than the transfer.
fn is_gzip_file(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.ends_with(".gz") || path.ends_with(".tgz")
}

/// A document's body with its `Content-Encoding` undone, at most `limit` bytes.
pub(super) fn document(
    url: &str,
    header: Option<&str>,
    body: Vec<u8>,
    limit: u64,
) -> Result<Vec<u8>, FetchError> {
    let Some(encoding) = Encoding::of(header) else {
        return Ok(body);
    };
    if is_gzip_file(url) {
        return Ok(body);
    }
    let mut out = Vec::new();
    let reader: Box<dyn Read> = match encoding {
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
    };
    reader
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| FetchError::Decode {
            url: url.into(),
            encoding: encoding.name().into(),
            error: e.to_string(),
        })?;
    if out.len() as u64 > limit {
        return Err(FetchError::TooLarge {
            url: url.into(),
            limit,
        });
    }
    tracing::debug!(url = %super::redact(url), encoding = encoding.name(), "decoded a document upstream compressed although asked not to");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn documents_are_decoded_within_their_limit() {
        let page = b"{\"files\": []}".repeat(100);
        let packed = gzip(&page);
        let url = "http://up.test/simple/a/";
        assert_eq!(
            document(url, Some("gzip"), packed.clone(), 10_000).unwrap(),
            page
        );
        assert_eq!(
            document(url, None, packed.clone(), 10_000).unwrap(),
            packed,
            "no header: taken as sent"
        );
        assert!(matches!(
            document(url, Some("gzip"), packed.clone(), 100),
            Err(FetchError::TooLarge { .. })
        ));
        assert!(matches!(
            document(url, Some("deflate"), packed.clone(), 10_000),
            Err(FetchError::Decode { .. })
        ));
        // A .gz file labelled with its own encoding is the file.
        let gz = "http://up.test/dists/x/Packages.gz";
        assert_eq!(
            document(gz, Some("x-gzip"), packed.clone(), 10_000).unwrap(),
            packed
        );
    }
}
