//! CEP-16 sharded repodata: the shard index and the shards a mirror writes
//! itself.
//!
//! ```text
//! <subdir>/repodata_shards.msgpack.zst   zstd(msgpack {"info": {"subdir", "base_url",
//!                                        "shards_base_url", …}, "shards": {name: <32 bytes>}})
//! <subdir>/shards/<hex>.msgpack.zst      zstd(msgpack {"packages": {…}, "packages.conda": {…},
//!                                        "removed": […]}), hex = sha256 of the file itself
//! ```
//!
//! A shard's name is the SHA-256 of its compressed bytes, so upstream's
//! shards are listed as artifacts and fetched on first read, verified by
//! their names; the index is not content-addressed and is synced. A shard
//! holds every record of one package name, with `md5` and `sha256` as raw
//! bytes. Where a mirror lists fewer records of a name than upstream's
//! shard holds, it writes that shard itself from the records it kept in
//! `repodata.json`, so both agree.

use serde_json::value::RawValue;

use super::msgpack::{self, Reader, write};
use super::repodata::Kind;

/// Record fields CEP-16 keeps as bytes rather than hex strings.
const BIN_KEYS: [&str; 3] = ["md5", "sha256", "legacy_bz2_md5"];

/// A parsed shard index borrowing from its (decompressed) bytes.
pub struct Index<'a> {
    /// Top-level members in document order, `shards` and `info` included.
    top: Vec<(&'a str, &'a [u8])>,
    /// `info`'s members in order.
    info: Vec<(&'a str, &'a [u8])>,
    /// The shards in document order: a name and its hash, or why it is unusable.
    pub shards: Vec<(&'a str, Result<[u8; 32], &'static str>)>,
}

impl<'a> Index<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Index<'a>, String> {
        Index::read(bytes).map_err(|e| e.to_string())
    }

    fn read(bytes: &'a [u8]) -> Result<Index<'a>, msgpack::Error> {
        let mut r = Reader::new(bytes);
        let mut index = Index {
            top: Vec::new(),
            info: Vec::new(),
            shards: Vec::new(),
        };
        for _ in 0..r.map_len()? {
            let key = r.str()?;
            let span = r.span()?;
            if index.top.iter().any(|(k, _)| *k == key) {
                return Err(msgpack::Error::Repeated(r.pos()));
            }
            match key {
                "info" => {
                    let mut i = Reader::new(span);
                    for _ in 0..i.map_len()? {
                        let k = i.str()?;
                        index.info.push((k, i.span()?));
                    }
                }
                "shards" => {
                    let mut s = Reader::new(span);
                    for _ in 0..s.map_len()? {
                        let name = s.str()?;
                        let hash = match s.bin()? {
                            Some(b) => {
                                <[u8; 32]>::try_from(b).map_err(|_| "a hash not 32 bytes long")
                            }
                            None => {
                                s.span()?;
                                Err("a hash that is not binary")
                            }
                        };
                        index.shards.push((name, hash));
                    }
                }
                _ => {}
            }
            index.top.push((key, span));
        }
        r.finish()?;
        Ok(index)
    }

    /// A string member of `info` (`subdir`, `base_url`, `shards_base_url`).
    pub fn info_str(&self, key: &str) -> Option<&'a str> {
        self.info
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| Reader::new(v).str().ok())
    }

    /// The index with `info`'s members in `set` replaced (or added) and the
    /// `shards` given, everything else as upstream wrote it.
    pub fn render(&self, set: &[(&str, &str)], shards: &[(&str, [u8; 32])]) -> Vec<u8> {
        let mut out = Vec::new();
        write::map(&mut out, self.top.len());
        for (key, span) in &self.top {
            write::str(&mut out, key);
            match *key {
                "info" => {
                    let added = set
                        .iter()
                        .filter(|(k, _)| !self.info.iter().any(|(i, _)| i == k));
                    write::map(&mut out, self.info.len() + added.clone().count());
                    for (k, v) in &self.info {
                        write::str(&mut out, k);
                        match set.iter().find(|(s, _)| s == k) {
                            Some((_, new)) => write::str(&mut out, new),
                            None => out.extend(*v),
                        }
                    }
                    for (k, v) in added {
                        write::str(&mut out, k);
                        write::str(&mut out, v);
                    }
                }
                "shards" => {
                    write::map(&mut out, shards.len());
                    for (name, hash) in shards {
                        write::str(&mut out, name);
                        write::bin(&mut out, hash);
                    }
                }
                _ => out.extend(*span),
            }
        }
        out
    }
}

/// One shard (uncompressed) from repodata records: `records` are (map,
/// filename, record) in the order the shard lists them.
pub fn render_shard(
    records: &[(Kind, &str, &RawValue)],
    removed: &[&str],
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    write::map(&mut out, 3);
    for kind in Kind::ALL {
        write::str(&mut out, kind.key());
        let mine: Vec<_> = records.iter().filter(|(k, _, _)| *k == kind).collect();
        write::map(&mut out, mine.len());
        for (_, filename, raw) in mine {
            let v: serde_json::Value =
                serde_json::from_str(raw.get()).map_err(|e| format!("{filename}: {e}"))?;
            write::str(&mut out, filename);
            write::json(&mut out, &v, &BIN_KEYS);
        }
    }
    write::str(&mut out, "removed");
    write::array(&mut out, removed.len());
    for r in removed {
        write::str(&mut out, r);
    }
    Ok(out)
}

/// A shard (uncompressed) as JSON, its digests as hex: what a client reads.
pub fn shard_json(bytes: &[u8]) -> Result<serde_json::Value, msgpack::Error> {
    let mut r = Reader::new(bytes);
    let v = r.json(0)?;
    r.finish()?;
    Ok(v)
}
