//! A generation's root: the small file that names everything else.
//!
//! ```text
//! magic "REGFSROT", version u32
//! seq, number, materialized, created          u64 each
//! base, root entries, carried-over entries    16-byte tree hashes (zero: none)
//! unit count u32, then per unit (by name):    in base u8, segment hash [16],
//!                                             name length u16, name
//! trailer                                     SHA-256 of everything before it
//! ```
//!
//! Trees are named by their hash, so a root written after the trees it
//! names can only point at complete files, and a tree unchanged between
//! generations is one file.

use crate::digest::Digest;

const MAGIC: &[u8; 8] = b"REGFSROT";
const VERSION: u32 = 1;

/// The decoded root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootFile {
    pub seq: u64,
    pub number: u64,
    pub materialized: u64,
    pub created: u64,
    pub base: Option<[u8; 16]>,
    pub roots: Option<[u8; 16]>,
    pub carry: Option<[u8; 16]>,
    /// (name, segment, merged into the base), sorted by name.
    pub units: Vec<(String, [u8; 16], bool)>,
}

fn opt(h: Option<[u8; 16]>) -> [u8; 16] {
    h.unwrap_or([0; 16])
}

fn un_opt(h: [u8; 16]) -> Option<[u8; 16]> {
    (h != [0; 16]).then_some(h)
}

impl RootFile {
    pub fn encode(&self) -> Vec<u8> {
        let names: usize = self.units.iter().map(|u| 19 + u.0.len()).sum();
        let mut b = Vec::with_capacity(100 + names);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        for v in [self.seq, self.number, self.materialized, self.created] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for h in [self.base, self.roots, self.carry] {
            b.extend_from_slice(&opt(h));
        }
        b.extend_from_slice(&(self.units.len() as u32).to_le_bytes());
        for (name, seg, in_base) in &self.units {
            b.push(u8::from(*in_base));
            b.extend_from_slice(seg);
            b.extend_from_slice(&(name.len() as u16).to_le_bytes());
            b.extend_from_slice(name.as_bytes());
        }
        let sum = Digest::sha256_of(&b);
        b.extend_from_slice(sum.as_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<RootFile, String> {
        if b.len() < 12 + 32 + 32 + 48 + 4 || &b[..8] != MAGIC {
            return Err("not a regfs catalog root".into());
        }
        let (body, sum) = b.split_at(b.len() - 32);
        if Digest::sha256_of(body).as_bytes() != sum {
            return Err("checksum mismatch (torn or corrupted write)".into());
        }
        let mut r = Reader { b: body, at: 8 };
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!(
                "catalog root version {version} (this regfs reads {VERSION})"
            ));
        }
        let mut root = RootFile {
            seq: r.u64()?,
            number: r.u64()?,
            materialized: r.u64()?,
            created: r.u64()?,
            base: un_opt(r.hash()?),
            roots: un_opt(r.hash()?),
            carry: un_opt(r.hash()?),
            units: Vec::new(),
        };
        let n = r.u32()? as usize;
        root.units.reserve(n.min(body.len() / 19));
        for _ in 0..n {
            let in_base = r.take(1)?[0] != 0;
            let seg = r.hash()?;
            let len = u16::from_le_bytes(r.take(2)?.try_into().unwrap()) as usize;
            let name = std::str::from_utf8(r.take(len)?)
                .map_err(|_| "unit name is not UTF-8".to_string())?;
            if root
                .units
                .last()
                .is_some_and(|l: &(String, _, _)| l.0.as_str() >= name)
            {
                return Err("units not sorted".into());
            }
            root.units.push((name.to_string(), seg, in_base));
        }
        if r.at != body.len() {
            return Err("trailing bytes".into());
        }
        Ok(root)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or_else(|| "truncated".to_string())?;
        self.at += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn hash(&mut self) -> Result<[u8; 16], String> {
        Ok(self.take(16)?.try_into().unwrap())
    }
}
