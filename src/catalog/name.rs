//! Node names as a tree stores them. Long lowercase hexadecimal names
//! (PyPI's 60-digit file directories, by-hash paths) are packed two digits
//! to a byte, which halves the largest part of a PyPI tree's strings; every
//! other name is kept as its UTF-8 bytes.

use std::borrow::Cow;
use std::cmp::Ordering;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Shortest name worth packing (shorter ones would save a few bytes only).
const PACK_MIN: usize = 32;

/// A node's name, borrowed from its tree.
#[derive(Clone, Copy, Debug)]
pub enum Name<'a> {
    Plain(&'a str),
    /// Packed lowercase hex: byte `b` stands for the digits `b >> 4`, `b & 15`.
    Hex(&'a [u8]),
}

impl<'a> Name<'a> {
    /// The name's length in bytes as clients see it.
    pub fn len(self) -> usize {
        match self {
            Name::Plain(s) => s.len(),
            Name::Hex(h) => h.len() * 2,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The name as text: borrowed, or spelled out for a packed one.
    pub fn as_str(self) -> Cow<'a, str> {
        match self {
            Name::Plain(s) => Cow::Borrowed(s),
            Name::Hex(h) => Cow::Owned(digits(h).map(char::from).collect()),
        }
    }

    /// Compares with a name given as bytes (a lookup's), without spelling
    /// a packed name out.
    pub fn cmp_bytes(self, other: &[u8]) -> Ordering {
        match self {
            Name::Plain(s) => s.as_bytes().cmp(other),
            Name::Hex(h) => digits(h).cmp(other.iter().copied()),
        }
    }
}

impl Ord for Name<'_> {
    fn cmp(&self, other: &Name<'_>) -> Ordering {
        match (*self, *other) {
            (Name::Plain(a), b) => b.cmp_bytes(a.as_bytes()).reverse(),
            // Hex digits sort as their values, so packed bytes compare
            // as the digits they stand for.
            (Name::Hex(a), Name::Hex(b)) => a.cmp(b),
            (a @ Name::Hex(_), Name::Plain(b)) => a.cmp_bytes(b.as_bytes()),
        }
    }
}

impl PartialOrd for Name<'_> {
    fn partial_cmp(&self, other: &Name<'_>) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Name<'_> {
    fn eq(&self, other: &Name<'_>) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Name<'_> {}

impl PartialEq<str> for Name<'_> {
    fn eq(&self, other: &str) -> bool {
        self.cmp_bytes(other.as_bytes()) == Ordering::Equal
    }
}

impl PartialEq<&str> for Name<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl std::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

fn digits(packed: &[u8]) -> impl Iterator<Item = u8> + '_ {
    packed
        .iter()
        .flat_map(|&b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
}

/// The packed form of `name`, if it is one to pack: at least 32 lowercase
/// hex digits, an even number of them, and short enough to fit a record.
pub(super) fn pack(name: &str) -> Option<Vec<u8>> {
    let b = name.as_bytes();
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if b.len() < PACK_MIN || b.len() % 2 != 0 || b.len() / 2 > usize::from(u8::MAX) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some((digit(p[0])? << 4) | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H60: &str = "4a8e090d38a3b1527d21ea61c5ad568f2cc7908efceccc30db0176b834e9";

    #[test]
    fn long_lowercase_hex_packs_to_half_and_spells_back() {
        let p = pack(H60).unwrap();
        assert_eq!(p.len(), 30);
        assert_eq!(Name::Hex(&p).as_str(), H60);
        assert_eq!(Name::Hex(&p).len(), 60);
        assert!(Name::Hex(&p) == *H60);
        for keep in [
            "cc",
            &H60[..30],
            &H60[..59],
            &H60.to_uppercase(),
            &format!("{}g", &H60[..59]),
            "index.html",
        ] {
            assert_eq!(pack(keep), None, "{keep}");
        }
    }

    #[test]
    fn packed_and_plain_names_sort_as_their_text() {
        let mut texts = vec![
            H60.to_string(),
            H60.replace('4', "0"),
            format!("{H60}.whl"),
            "f".repeat(64),
            "a".to_string(),
            "0".repeat(32),
            "0".repeat(34),
            "z".to_string(),
            String::new(),
        ];
        texts.sort();
        let packed: Vec<Option<Vec<u8>>> = texts.iter().map(|t| pack(t)).collect();
        let names: Vec<Name> = texts
            .iter()
            .zip(&packed)
            .map(|(t, p)| p.as_deref().map_or(Name::Plain(t), Name::Hex))
            .collect();
        assert!(names.iter().filter(|n| matches!(n, Name::Hex(_))).count() >= 4);
        for (i, a) in names.iter().enumerate() {
            for (j, b) in names.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{a} vs {b}");
                assert_eq!(
                    a.cmp_bytes(texts[j].as_bytes()),
                    i.cmp(&j),
                    "{a} vs {}",
                    texts[j]
                );
            }
        }
    }
}
