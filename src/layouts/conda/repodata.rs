//! `repodata.json` and `current_repodata.json`: read without copying a
//! record, each record checked on its own, and written back with the kept
//! records' bytes exactly as upstream had them (upstream repodata carries
//! hotfixes that a re-index from the packages would lose).
//!
//! A document is an object whose `packages` (`.tar.bz2` files) and
//! `packages.conda` (`.conda` files) map a filename to its record (`name`,
//! `version`, `build`, `depends`, `md5`, `sha256`, `size`, `subdir`,
//! `timestamp`, …); `info` has the `subdir` and, with CEP-15, the
//! `base_url` packages are fetched from. Other members (`removed`,
//! `repodata_version`, …) are copied through. A filename listed twice (in
//! one map or in both) is withheld, whichever claim is true.

use std::collections::HashSet;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::digest::{Algo, Digest};

/// The two maps of package records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `packages`: `.tar.bz2` files.
    TarBz2,
    /// `packages.conda`: `.conda` files.
    Conda,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::TarBz2, Kind::Conda];

    /// The map's key in repodata.json and in shards.
    pub fn key(self) -> &'static str {
        match self {
            Kind::TarBz2 => "packages",
            Kind::Conda => "packages.conda",
        }
    }

    fn ext(self) -> &'static str {
        match self {
            Kind::TarBz2 => ".tar.bz2",
            Kind::Conda => ".conda",
        }
    }
}

/// A top-level member, in document order.
enum Member<'a> {
    Records(Kind),
    Raw(String, &'a RawValue),
}

/// One record as listed, not yet checked.
pub struct Listed<'a> {
    pub kind: Kind,
    pub filename: String,
    pub raw: &'a RawValue,
}

/// A parsed repodata document borrowing from its bytes.
pub struct Repodata<'a> {
    members: Vec<Member<'a>>,
    /// Both maps' records, in document order.
    pub records: Vec<Listed<'a>>,
    /// Filenames listed more than once.
    pub duplicates: HashSet<String>,
}

impl<'a> Repodata<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Repodata<'a>, String> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let doc = de
            .deserialize_map(Top)
            .map_err(|e| format!("not a repodata document: {e}"))?;
        de.end()
            .map_err(|e| format!("not a repodata document: {e}"))?;
        Ok(doc)
    }

    /// A top-level member other than the record maps.
    pub fn member(&self, key: &str) -> Option<&'a RawValue> {
        self.members.iter().find_map(|m| match m {
            Member::Raw(k, v) if k == key => Some(*v),
            _ => None,
        })
    }

    /// The `info` object, if there is one.
    pub fn info(&self) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        match self.member("info") {
            None => Ok(serde_json::Map::new()),
            Some(raw) => serde_json::from_str(raw.get()).map_err(|e| format!("info: {e}")),
        }
    }

    /// `removed`: filenames upstream withdrew (kept for shards).
    pub fn removed(&self) -> Vec<String> {
        self.member("removed")
            .and_then(|r| serde_json::from_str::<Vec<String>>(r.get()).ok())
            .unwrap_or_default()
    }

    /// The document with only the records `keep` selects (by index into
    /// [`Repodata::records`]), and `info` replaced when given.
    pub fn render(&self, keep: &dyn Fn(usize) -> bool, info: Option<&str>) -> Vec<u8> {
        self.render_adding(keep, info, &[])
    }

    /// [`Repodata::render`] with `extra` records (another document's, for
    /// `retain = "additive"`) after each map's own, a map of their kind
    /// added where the document has none, and their filenames left out of
    /// `removed`.
    pub fn render_adding(
        &self,
        keep: &dyn Fn(usize) -> bool,
        info: Option<&str>,
        extra: &[&Listed],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 12);
        out.push(b'{');
        let records = |out: &mut Vec<u8>, kind: Kind| {
            key(out, kind.key());
            out.push(b'{');
            let own = self
                .records
                .iter()
                .enumerate()
                .filter(|(j, r)| r.kind == kind && keep(*j));
            let added = extra.iter().copied().filter(|r| r.kind == kind);
            for (n, r) in own.map(|(_, r)| r).chain(added).enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                key(out, &r.filename);
                out.extend(r.raw.get().as_bytes());
            }
            out.push(b'}');
        };
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match m {
                Member::Raw(k, v) if k == "removed" && !extra.is_empty() => {
                    key(&mut out, k);
                    out.extend(without(v, extra).as_bytes());
                }
                Member::Raw(k, v) => {
                    key(&mut out, k);
                    let v = match info {
                        Some(info) if k == "info" => info,
                        _ => v.get(),
                    };
                    out.extend(v.as_bytes());
                }
                Member::Records(kind) => records(&mut out, *kind),
            }
        }
        for kind in Kind::ALL {
            let missing = !self
                .members
                .iter()
                .any(|m| matches!(m, Member::Records(k) if *k == kind));
            if missing && extra.iter().any(|r| r.kind == kind) {
                if out.len() > 1 {
                    out.push(b',');
                }
                records(&mut out, kind);
            }
        }
        out.push(b'}');
        out
    }
}

/// A `removed` array without the filenames of `extra` (as it was if it is
/// not an array).
fn without(removed: &RawValue, extra: &[&Listed]) -> String {
    match serde_json::from_str::<Vec<serde_json::Value>>(removed.get()) {
        Ok(mut v) => {
            v.retain(|f| {
                !f.as_str()
                    .is_some_and(|f| extra.iter().any(|r| r.filename == f))
            });
            serde_json::to_string(&v).expect("JSON values serialize")
        }
        Err(_) => removed.get().to_string(),
    }
}

fn key(out: &mut Vec<u8>, k: &str) {
    serde_json::to_writer(&mut *out, k).expect("a string serializes");
    out.push(b':');
}

struct Top;

impl<'de> Visitor<'de> for Top {
    type Value = Repodata<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut doc = Repodata {
            members: Vec::new(),
            records: Vec::new(),
            duplicates: HashSet::new(),
        };
        let mut keys = HashSet::new();
        let mut filenames = HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !keys.insert(k.clone()) {
                return Err(serde::de::Error::custom(format!("`{k}` appears twice")));
            }
            let kind = Kind::ALL.into_iter().find(|kind| kind.key() == k);
            match kind {
                Some(kind) => {
                    map.next_value_seed(Records {
                        kind,
                        doc: &mut doc,
                        seen: &mut filenames,
                    })?;
                    doc.members.push(Member::Records(kind));
                }
                None => {
                    let v: &'de RawValue = map.next_value()?;
                    doc.members.push(Member::Raw(k, v));
                }
            }
        }
        Ok(doc)
    }
}

/// Collects one record map into the document.
struct Records<'d, 'de> {
    kind: Kind,
    doc: &'d mut Repodata<'de>,
    seen: &'d mut HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for Records<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Records<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "`{}`: an object of records", self.kind.key())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(filename) = map.next_key::<String>()? {
            let raw: &'de RawValue = map.next_value()?;
            if !self.seen.insert(filename.clone()) {
                self.doc.duplicates.insert(filename.clone());
            }
            self.doc.records.push(Listed {
                kind: self.kind,
                filename,
                raw,
            });
        }
        Ok(())
    }
}

/// What a record must give for its file to be listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    /// `version` (`""` when the record gives none: conda's order sorts it
    /// first, and `prereleases = false` drops it).
    pub version: String,
    pub sha256: Digest,
    pub size: Option<u64>,
    /// Unix seconds (records give milliseconds, older ones seconds).
    pub timestamp: Option<u64>,
}

#[derive(Deserialize)]
struct Fields {
    name: Option<String>,
    version: Option<String>,
    sha256: Option<String>,
    size: Option<u64>,
    timestamp: Option<serde_json::Number>,
    subdir: Option<String>,
}

/// conda's rule: a timestamp past 9999-12-31 in seconds is in milliseconds.
pub fn seconds(ts: u64) -> u64 {
    if ts > 253_402_300_799 { ts / 1000 } else { ts }
}

/// A package name as conda writes them (lowercase in practice).
pub fn is_package_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'+' | b'-'))
}

/// The package name a filename (`<name>-<version>-<build>.<ext>`) carries.
pub fn name_of_filename(filename: &str) -> Option<&str> {
    let stem = Kind::ALL
        .iter()
        .find_map(|k| filename.strip_suffix(k.ext()))?;
    let mut parts = stem.rsplitn(3, '-');
    let (_build, _version, name) = (parts.next()?, parts.next()?, parts.next()?);
    Some(name)
}

/// Checks one listed record of subdir `subdir`: its filename must be a
/// plain file name of its map's format, its sha256 given (md5 alone is not
/// trusted) and its subdir, if named, this one.
pub fn check(r: &Listed, subdir: &str) -> Result<Record, String> {
    let f = &r.filename;
    let plain = crate::path::check_name(f).is_ok()
        && !f.starts_with('.')
        && f.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'+' | b'-' | b'!'));
    if !plain {
        return Err("not a plain package file name".into());
    }
    if f.len() <= r.kind.ext().len() || !f.ends_with(r.kind.ext()) {
        return Err(format!(
            "not a {} file, but listed in `{}`",
            r.kind.ext(),
            r.kind.key()
        ));
    }
    let fields: Fields =
        serde_json::from_str(r.raw.get()).map_err(|e| format!("unreadable record: {e}"))?;
    let name = fields
        .name
        .filter(|n| is_package_name(n))
        .ok_or("no usable `name`")?;
    let sha256 = match fields.sha256 {
        None => return Err("no sha256 (md5 alone is not trusted)".into()),
        Some(h) => Digest::from_hex(Algo::Sha256, &h).map_err(|e| format!("sha256: {e}"))?,
    };
    if let Some(s) = fields.subdir.filter(|s| s != subdir) {
        return Err(format!("its subdir is {s:?}, not {subdir:?}"));
    }
    let timestamp = fields
        .timestamp
        .and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)))
        .map(seconds);
    Ok(Record {
        name,
        version: fields.version.unwrap_or_default(),
        sha256,
        size: fields.size,
        timestamp,
    })
}
