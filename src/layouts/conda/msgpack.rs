//! The MessagePack that CEP-16 documents use, read and written by hand:
//! maps, arrays, strings, binaries, integers, floats, booleans and nil
//! (extension types are skipped as opaque values).
//!
//! The reader works on a complete buffer (a decompressed shard index or
//! shard, bounded by the layout's `max_document`) and never allocates from
//! a length it reads: every length is checked against the bytes left, and
//! skipping a value counts the values still owed instead of recursing, so a
//! deeply nested or lying document fails cleanly. A value's bytes can be
//! taken as a span and copied as they are into a rewritten document.

use crate::digest::encode_hex;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("msgpack ends inside a value (offset {0})")]
    Truncated(usize),
    #[error("msgpack: expected {what} at offset {at}, found byte 0x{byte:02x}")]
    Unexpected {
        what: &'static str,
        at: usize,
        byte: u8,
    },
    #[error("msgpack: a string at offset {0} is not UTF-8")]
    NotUtf8(usize),
    #[error("msgpack: nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("msgpack: {0} bytes after the document")]
    Trailing(usize),
    #[error("msgpack: a map key repeated before offset {0}")]
    Repeated(usize),
}

/// Nesting that [`Reader::json`] follows (records are three levels deep).
pub const MAX_DEPTH: usize = 32;

/// A cursor over one MessagePack buffer.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// The offset of the next byte.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), Error> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(Error::Trailing(n)),
        }
    }

    fn peek(&self) -> Result<u8, Error> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(Error::Truncated(self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(Error::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64, Error> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |v, b| (v << 8) | u64::from(*b)))
    }

    fn unexpected(&self, what: &'static str) -> Error {
        match self.peek() {
            Ok(byte) => Error::Unexpected {
                what,
                at: self.pos,
                byte,
            },
            Err(e) => e,
        }
    }

    /// A length read from the document, which must fit in what is left
    /// (each element takes at least `per` bytes).
    fn len(&mut self, n: usize, per: usize) -> Result<usize, Error> {
        let at = self.pos;
        let len = usize::try_from(self.be(n)?).unwrap_or(usize::MAX);
        if len.saturating_mul(per) > self.buf.len() - self.pos {
            return Err(Error::Truncated(at));
        }
        Ok(len)
    }

    /// The entry count of a map.
    pub fn map_len(&mut self) -> Result<usize, Error> {
        let b = self.peek()?;
        let n = match b {
            0x80..=0x8f => {
                self.pos += 1;
                usize::from(b & 0x0f)
            }
            0xde | 0xdf => {
                self.pos += 1;
                self.len(if b == 0xde { 2 } else { 4 }, 2)?
            }
            _ => return Err(self.unexpected("a map")),
        };
        if n * 2 > self.buf.len() - self.pos {
            return Err(Error::Truncated(self.pos));
        }
        Ok(n)
    }

    /// A string.
    pub fn str(&mut self) -> Result<&'a str, Error> {
        let b = self.peek()?;
        let n = match b {
            0xa0..=0xbf => {
                self.pos += 1;
                usize::from(b & 0x1f)
            }
            0xd9..=0xdb => {
                self.pos += 1;
                self.len(1 << (b - 0xd9), 1)?
            }
            _ => return Err(self.unexpected("a string")),
        };
        let at = self.pos;
        std::str::from_utf8(self.take(n)?).map_err(|_| Error::NotUtf8(at))
    }

    /// A binary, or `None` (nothing consumed) when the next value is not one.
    pub fn bin(&mut self) -> Result<Option<&'a [u8]>, Error> {
        let b = self.peek()?;
        if !(0xc4..=0xc6).contains(&b) {
            return Ok(None);
        }
        self.pos += 1;
        let n = self.len(1 << (b - 0xc4), 1)?;
        self.take(n).map(Some)
    }

    /// The next value's bytes, skipped.
    pub fn span(&mut self) -> Result<&'a [u8], Error> {
        let start = self.pos;
        // Values still to skip; each takes at least a byte, so owing more
        // than the bytes left is a lie caught before any work.
        let mut owed: usize = 1;
        while owed > 0 {
            owed -= 1;
            let b = self.peek()?;
            self.pos += 1;
            let (skip, more) = match b {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
                0x80..=0x8f => (0, 2 * usize::from(b & 0x0f)),
                0x90..=0x9f => (0, usize::from(b & 0x0f)),
                0xa0..=0xbf => (usize::from(b & 0x1f), 0),
                0xc4..=0xc6 => (self.len(1 << (b - 0xc4), 1)?, 0),
                0xd9..=0xdb => (self.len(1 << (b - 0xd9), 1)?, 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xca | 0xce | 0xd2 => (4, 0),
                0xcb | 0xcf | 0xd3 => (8, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xc7..=0xc9 => (self.len(1 << (b - 0xc7), 1)?.saturating_add(1), 0),
                0xdc => (0, self.len(2, 1)?),
                0xdd => (0, self.len(4, 1)?),
                0xde => (0, self.len(2, 2)?.saturating_mul(2)),
                0xdf => (0, self.len(4, 2)?.saturating_mul(2)),
                0xc1 => {
                    self.pos -= 1;
                    return Err(self.unexpected("a value"));
                }
            };
            self.take(skip)?;
            owed = owed.saturating_add(more);
            if owed > self.buf.len() - self.pos {
                return Err(Error::Truncated(self.pos));
            }
        }
        Ok(&self.buf[start..self.pos])
    }

    /// The next value as JSON (binaries as hex strings), for comparing
    /// documents and in the fuzz target.
    pub fn json(&mut self, depth: usize) -> Result<serde_json::Value, Error> {
        use serde_json::Value;
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep(MAX_DEPTH));
        }
        let b = self.peek()?;
        if let Some(bin) = self.bin()? {
            return Ok(Value::String(encode_hex(bin)));
        }
        Ok(match b {
            0x80..=0x8f | 0xde | 0xdf => {
                let n = self.map_len()?;
                let mut m = serde_json::Map::new();
                for _ in 0..n {
                    let k = self.str()?.to_string();
                    m.insert(k, self.json(depth + 1)?);
                }
                Value::Object(m)
            }
            0x90..=0x9f | 0xdc | 0xdd => {
                self.pos += 1;
                let n = match b {
                    0xdc => self.len(2, 1)?,
                    0xdd => self.len(4, 1)?,
                    _ => usize::from(b & 0x0f),
                };
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(self.json(depth + 1)?);
                }
                Value::Array(v)
            }
            0xa0..=0xbf | 0xd9..=0xdb => Value::String(self.str()?.to_string()),
            0xc0 => {
                self.pos += 1;
                Value::Null
            }
            0xc2 | 0xc3 => {
                self.pos += 1;
                Value::Bool(b == 0xc3)
            }
            0x00..=0x7f => {
                self.pos += 1;
                Value::from(b)
            }
            0xe0..=0xff => {
                self.pos += 1;
                Value::from(b as i8)
            }
            0xcc..=0xcf => {
                self.pos += 1;
                Value::from(self.be(1 << (b - 0xcc))?)
            }
            0xd0..=0xd3 => {
                self.pos += 1;
                let n = 1usize << (b - 0xd0);
                let v = self.be(n)?;
                let shift = 64 - 8 * n as u32;
                Value::from(((v << shift) as i64) >> shift)
            }
            0xca => {
                self.pos += 1;
                let v = f32::from_bits(self.be(4)? as u32);
                serde_json::Number::from_f64(f64::from(v)).map_or(Value::Null, Value::Number)
            }
            0xcb => {
                self.pos += 1;
                let v = f64::from_bits(self.be(8)?);
                serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
            }
            _ => {
                // An extension type: opaque.
                self.span()?;
                Value::Null
            }
        })
    }
}

/// Appends MessagePack to a buffer, always in the shortest form (as
/// rmp-serde, which rattler uses, writes).
pub mod write {
    pub fn map(out: &mut Vec<u8>, n: usize) {
        header(out, n, 0x80, 16, 0xde);
    }

    pub fn array(out: &mut Vec<u8>, n: usize) {
        header(out, n, 0x90, 16, 0xdc);
    }

    fn header(out: &mut Vec<u8>, n: usize, fix: u8, fix_max: usize, marker16: u8) {
        if n < fix_max {
            out.push(fix | n as u8);
        } else if let Ok(n) = u16::try_from(n) {
            out.push(marker16);
            out.extend(n.to_be_bytes());
        } else {
            out.push(marker16 + 1);
            out.extend((n as u32).to_be_bytes());
        }
    }

    pub fn str(out: &mut Vec<u8>, s: &str) {
        let n = s.len();
        if n < 32 {
            out.push(0xa0 | n as u8);
        } else if let Ok(n) = u8::try_from(n) {
            out.extend([0xd9, n]);
        } else if let Ok(n) = u16::try_from(n) {
            out.push(0xda);
            out.extend(n.to_be_bytes());
        } else {
            out.push(0xdb);
            out.extend((n as u32).to_be_bytes());
        }
        out.extend(s.as_bytes());
    }

    pub fn bin(out: &mut Vec<u8>, b: &[u8]) {
        let n = b.len();
        if let Ok(n) = u8::try_from(n) {
            out.extend([0xc4, n]);
        } else if let Ok(n) = u16::try_from(n) {
            out.push(0xc5);
            out.extend(n.to_be_bytes());
        } else {
            out.push(0xc6);
            out.extend((n as u32).to_be_bytes());
        }
        out.extend(b);
    }

    pub fn uint(out: &mut Vec<u8>, v: u64) {
        if v < 128 {
            out.push(v as u8);
        } else if let Ok(v) = u8::try_from(v) {
            out.extend([0xcc, v]);
        } else if let Ok(v) = u16::try_from(v) {
            out.push(0xcd);
            out.extend(v.to_be_bytes());
        } else if let Ok(v) = u32::try_from(v) {
            out.push(0xce);
            out.extend(v.to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend(v.to_be_bytes());
        }
    }

    pub fn int(out: &mut Vec<u8>, v: i64) {
        if let Ok(u) = u64::try_from(v) {
            uint(out, u);
        } else if v >= -32 {
            out.push(v as i8 as u8);
        } else if let Ok(v) = i8::try_from(v) {
            out.extend([0xd0, v as u8]);
        } else if let Ok(v) = i16::try_from(v) {
            out.push(0xd1);
            out.extend(v.to_be_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            out.push(0xd2);
            out.extend(v.to_be_bytes());
        } else {
            out.push(0xd3);
            out.extend(v.to_be_bytes());
        }
    }

    pub fn float(out: &mut Vec<u8>, v: f64) {
        out.push(0xcb);
        out.extend(v.to_bits().to_be_bytes());
    }

    /// A JSON value; strings under the keys `bin_keys` names that are hex
    /// digests become binaries (CEP-16 keeps `md5` and `sha256` as bytes).
    pub fn json(out: &mut Vec<u8>, v: &serde_json::Value, bin_keys: &[&str]) {
        use serde_json::Value;
        match v {
            Value::Null => out.push(0xc0),
            Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => uint(out, u),
                (_, Some(i), _) => int(out, i),
                (_, _, f) => float(out, f.unwrap_or(0.0)),
            },
            Value::String(s) => str(out, s),
            Value::Array(items) => {
                array(out, items.len());
                for i in items {
                    json(out, i, &[]);
                }
            }
            Value::Object(m) => {
                map(out, m.len());
                for (k, v) in m {
                    str(out, k);
                    match v.as_str().and_then(crate::digest::decode_hex) {
                        Some(bytes) if bin_keys.contains(&k.as_str()) => bin(out, &bytes),
                        _ => json(out, v, &[]),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(v: &serde_json::Value) -> Vec<u8> {
        let mut out = Vec::new();
        write::json(&mut out, v, &["sha256"]);
        out
    }

    #[test]
    fn values_round_trip_in_the_shortest_form() {
        let v = json!({"a": [0, 127, 128, 255, 65535, 65536, 4294967296u64, -1, -32, -33, -129, -40000, -3000000000i64, 1.5],
                       "s": "x".repeat(40), "long": "y".repeat(300), "n": null, "t": true, "f": false,
                       "sha256": "00ff".repeat(16)});
        let bytes = encode(&v);
        let mut r = Reader::new(&bytes);
        let back = r.json(0).unwrap();
        r.finish().unwrap();
        let mut want = v.clone();
        want["sha256"] = json!("00ff".repeat(16));
        assert_eq!(back, want);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.span().unwrap(), &bytes[..], "a span is the whole value");
        // The shortest forms, as rmp-serde writes them.
        assert_eq!(encode(&json!(127)), [0x7f]);
        assert_eq!(encode(&json!(128)), [0xcc, 0x80]);
        assert_eq!(encode(&json!(-32)), [0xe0]);
        assert_eq!(encode(&json!("ab")), [0xa2, b'a', b'b']);
        assert_eq!(
            encode(&json!({"sha256": "ab"}))[..9],
            [0x81, 0xa6, b's', b'h', b'a', b'2', b'5', b'6', 0xc4]
        );
    }

    #[test]
    fn lying_lengths_and_truncation_fail_without_allocating() {
        // An array claiming 2^32-1 elements, a map claiming 65,535 entries.
        for bad in [
            &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x00][..],
            &[0xde, 0xff, 0xff, 0x01],
            &[0xdb, 0xff, 0xff, 0xff, 0xff],
            &[0xc6, 0, 0, 1, 0, 1],
            &[0x92, 0x01],
        ] {
            assert!(
                matches!(Reader::new(bad).span(), Err(Error::Truncated(_))),
                "{bad:?}"
            );
            assert!(Reader::new(bad).json(0).is_err(), "{bad:?}");
        }
        assert!(matches!(
            Reader::new(&[0xc1]).span(),
            Err(Error::Unexpected { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x81, 0x01, 0x01]).json(0),
            Err(Error::Unexpected {
                what: "a string",
                ..
            })
        ));
        assert_eq!(Reader::new(&[0xa1, 0xff]).str(), Err(Error::NotUtf8(1)));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep: Vec<u8> = std::iter::repeat_n(0x91, 100_000).chain([0xc0]).collect();
        assert_eq!(
            Reader::new(&deep).span().unwrap().len(),
            deep.len(),
            "skipping does not recurse"
        );
        assert_eq!(Reader::new(&deep).json(0), Err(Error::TooDeep(MAX_DEPTH)));
    }
}
