//! Streaming decompression of repodata (gzip, xz, zstd or none, told by
//! magic bytes) into an XML handler, hashing and counting the decompressed
//! bytes on the way: a primary.xml is never held whole, and a
//! decompression bomb stops at the size repomd.xml gives it (`open-size`)
//! or the layout's `max_document`.

use std::io::Write;

use super::xml::{Handler, Reader, XmlError};
use crate::digest::{Algo, Digest, Hasher};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("decompresses to more than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Xml(#[from] XmlError),
    #[error("{0}")]
    Data(String),
}

/// Where decompressed bytes go: bounded, hashed, parsed.
pub struct XmlSink<'h> {
    reader: Reader,
    handler: &'h mut dyn Handler,
    hasher: Hasher,
    written: u64,
    limit: u64,
    error: Option<DecodeError>,
}

impl<'h> XmlSink<'h> {
    /// Hashes with `algo` (the open-checksum's) and refuses more than `limit` bytes.
    pub fn new(handler: &'h mut dyn Handler, algo: Algo, limit: u64) -> XmlSink<'h> {
        XmlSink {
            reader: Reader::new(),
            handler,
            hasher: Hasher::new(algo),
            written: 0,
            limit,
            error: None,
        }
    }

    /// Ends the document; the digest and size of the decompressed bytes.
    pub fn finish(self) -> Result<(Digest, u64), DecodeError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.reader.finish(self.handler)?;
        Ok((self.hasher.finish(), self.written))
    }
}

impl Write for XmlSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.error.is_some() {
            return Err(std::io::Error::other("stopped"));
        }
        if self.written + buf.len() as u64 > self.limit {
            self.error = Some(DecodeError::TooLarge(self.limit));
            return Err(std::io::Error::other("size limit"));
        }
        self.written += buf.len() as u64;
        self.hasher.update(buf);
        if let Err(e) = self.reader.feed(buf, self.handler) {
            self.error = Some(e.into());
            return Err(std::io::Error::other("malformed"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const GZIP: &[u8] = &[0x1f, 0x8b];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const BZIP2: &[u8] = b"BZh";

/// Decompresses `data` by its magic into `sink`; the sink's own error (size,
/// XML) wins over the decompressor's report of it.
pub fn decompress_into(data: &[u8], sink: &mut XmlSink) -> Result<(), DecodeError> {
    let result = if data.starts_with(GZIP) {
        std::io::copy(&mut flate2::read::MultiGzDecoder::new(data), sink)
            .map(drop)
            .map_err(|e| format!("bad gzip data: {e}"))
    } else if data.starts_with(XZ) {
        lzma_rs::xz_decompress(&mut std::io::BufReader::new(data), sink)
            .map_err(|e| format!("bad xz data: {e}"))
    } else if data.starts_with(ZSTD) {
        zstd_into(data, sink)
    } else if data.starts_with(BZIP2) {
        Err("bzip2-compressed; regfs reads gzip, xz and zstd repodata".to_string())
    } else {
        sink.write_all(data).map_err(|e| e.to_string())
    };
    if let Some(e) = sink.error.take() {
        return Err(e);
    }
    result.map_err(DecodeError::Data)
}

/// Every zstd frame of `data` in turn (skippable frames skipped).
fn zstd_into(data: &[u8], sink: &mut XmlSink) -> Result<(), String> {
    use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
    let mut rest = data;
    while !rest.is_empty() {
        match ruzstd::decoding::StreamingDecoder::new(&mut rest) {
            Ok(mut frame) => {
                std::io::copy(&mut frame, sink).map_err(|e| format!("bad zstd data: {e}"))?;
            }
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => {
                let n = usize::try_from(length).unwrap_or(usize::MAX);
                rest = rest.get(n..).ok_or("a truncated skippable zstd frame")?;
            }
            Err(e) => return Err(format!("bad zstd data: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Count(usize);
    impl Handler for Count {
        fn start(&mut self, _: &str, _: &[(String, String)]) {
            self.0 += 1;
        }
        fn end(&mut self, _: &str) {}
    }

    fn run(data: &[u8], limit: u64) -> Result<(usize, u64), DecodeError> {
        let mut h = Count::default();
        let mut sink = XmlSink::new(&mut h, Algo::Sha256, limit);
        decompress_into(data, &mut sink)?;
        let (_, n) = sink.finish()?;
        Ok((h.0, n))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let mut doc = b"<a>".to_vec();
        doc.extend(std::iter::repeat_n(b' ', 10 << 20));
        doc.extend(b"</a>");
        let gz = gzip(&doc);
        assert!(gz.len() < 100_000);
        let e = run(&gz, 1 << 20).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge(_)), "{e}");
        assert_eq!(run(&gz, 11 << 20).unwrap(), (1, doc.len() as u64));
    }

    #[test]
    fn plain_and_concatenated_gzip_parse_and_bzip2_is_refused() {
        assert_eq!(run(b"<a><b/></a>", 100).unwrap().0, 2);
        let mut two = gzip(b"<a><b/>");
        two.extend(gzip(b"<c/></a>"));
        assert_eq!(run(&two, 100).unwrap().0, 3);
        let e = run(b"BZh91AY&SY", 100).unwrap_err();
        assert!(e.to_string().contains("bzip2"), "{e}");
        assert!(run(&gzip(b"<a><b>"), 100).is_err(), "a truncated document");
    }
}
