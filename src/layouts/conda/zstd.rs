//! zstd for conda's documents, both ways, in pure Rust (`ruzstd`):
//! `repodata.json.zst`, the shard index and shards are decompressed with a
//! bound on the output (a bomb stops there), and the documents a filtered
//! mirror rewrites are compressed again.
//!
//! ruzstd's encoder (its "fastest" level, about zstd's level 1) writes no
//! content size into the frame header; some decoders (Python's
//! `zstandard.decompress`) need one, so [`encode`] adds it.

use std::io::Write;

/// Writes into a `Vec` until `limit` bytes, then refuses.
struct Bounded {
    out: Vec<u8>,
    limit: u64,
    over: bool,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() as u64 + buf.len() as u64 > self.limit {
            self.over = true;
            return Err(std::io::Error::other("size limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every zstd frame of `data` in turn (skippable frames skipped), at most
/// `limit` bytes of output.
pub fn decode(data: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
    let mut sink = Bounded {
        out: Vec::new(),
        limit,
        over: false,
    };
    let mut rest = data;
    if rest.is_empty() {
        return Err("empty, not zstd data".into());
    }
    while !rest.is_empty() {
        match ruzstd::decoding::StreamingDecoder::new(&mut rest) {
            Ok(mut frame) => {
                if let Err(e) = std::io::copy(&mut frame, &mut sink) {
                    if sink.over {
                        return Err(format!("decompresses to more than {limit} bytes"));
                    }
                    return Err(format!("bad zstd data: {e}"));
                }
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
    Ok(sink.out)
}

/// One zstd frame holding `data`, with its content size in the header.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut z =
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest);
    // ruzstd writes magic, a descriptor with no flags (no content size, not
    // single-segment, no checksum, no dictionary), then a window
    // descriptor. Set the content-size flag to "8 bytes" and put the size
    // after the window descriptor. Anything else is left as it is.
    if z.len() >= 6 && z[..4] == [0x28, 0xb5, 0x2f, 0xfd] && z[4] == 0 {
        z[4] = 0xc0;
        z.splice(6..6, (data.len() as u64).to_le_bytes());
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_the_content_size_in_the_header() {
        for data in [Vec::new(), b"{}".to_vec(), b"conda ".repeat(100_000)] {
            let z = encode(&data);
            assert_eq!(z[4] >> 6, 3, "an 8-byte content size");
            assert_eq!(z[6..14], (data.len() as u64).to_le_bytes());
            let mut frame = ruzstd::decoding::FrameDecoder::new();
            frame.init(&z[..]).unwrap();
            assert_eq!(frame.content_size(), data.len() as u64);
            assert_eq!(decode(&z, data.len() as u64).unwrap(), data);
        }
        assert!(
            encode(&b"x".repeat(1 << 20)).len() < 1 << 12,
            "it compresses"
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_junk_is_refused() {
        let z = encode(&vec![b' '; 10 << 20]);
        let e = decode(&z, 1 << 20).unwrap_err();
        assert!(e.contains("more than 1048576 bytes"), "{e}");
        assert!(
            decode(b"{\"info\":{}}", 1 << 20)
                .unwrap_err()
                .contains("bad zstd")
        );
        assert!(
            decode(&z[..z.len() / 2], 20 << 20).is_err(),
            "a truncated frame"
        );
        let mut two = encode(b"ab");
        two.extend([0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 9, 9]); // a skippable frame
        two.extend(encode(b"cd"));
        assert_eq!(decode(&two, 10).unwrap(), b"abcd");
    }
}
