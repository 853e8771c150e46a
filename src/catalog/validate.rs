//! The checks a tree's buffer passes before anything reads it, whether it
//! was just written by `format.rs` or loaded from disk: every reference in
//! bounds and the shape lookups rely on (children sorted, unique).

use crate::digest::Algo;

use super::format::{
    FLAG_NAME_HEX, FLAG_URL_EXPLICIT, FLAG_URL_PREFIX, KIND_DIR, KIND_REMOTE, KIND_STORED,
    OFF_DIGEST, OFF_FLAGS, OFF_KIND, OFF_NAME, OFF_NAME_LEN, OFF_PARENT, OFF_PREFIX,
};
use super::tree::Tree;

impl Tree {
    /// Checks every reference inside the buffer so accessors cannot go out
    /// of bounds, and the shape lookups rely on (children sorted, unique).
    pub(super) fn validate(&self) -> Result<(), String> {
        let h = &self.hdr;
        let n = h.node_count;
        let str_ok = |off: u32, len: u32| -> Result<(), String> {
            let (off, len) = (off as usize, len as usize);
            if off + len > h.strings.len() {
                return Err("string out of range".into());
            }
            let at = h.strings.start + off;
            std::str::from_utf8(&self.buf[at..at + len])
                .map(drop)
                .map_err(|_| "string is not UTF-8".to_string())
        };
        str_ok(h.label.0, h.label.1)?;
        for p in 0..h.prefix_count as usize {
            let r = h.prefixes.start + p * 8;
            str_ok(self.u32_at(r), self.u32_at(r + 4))?;
        }
        let mut prev_url = None;
        for u in 0..h.url_count as usize {
            let r = h.urls.start + u * 12;
            let node = self.u32_at(r);
            if node >= n || prev_url.is_some_and(|p| p >= node) {
                return Err("URL table not sorted or out of range".into());
            }
            prev_url = Some(node);
            str_ok(self.u32_at(r + 4), self.u32_at(r + 8))?;
        }
        for id in 0..n {
            let r = self.rec(id);
            let name_len = self.buf[r + OFF_NAME_LEN] as u32;
            let flags = self.buf[r + OFF_FLAGS];
            if flags & FLAG_NAME_HEX == 0 {
                str_ok(self.u32_at(r + OFF_NAME), name_len)?;
            } else if self.u32_at(r + OFF_NAME) as usize + name_len as usize > h.strings.len() {
                return Err("string out of range".into());
            }
            let name = self.name(id);
            if id == 0 {
                if !name.is_empty() || self.buf[r + OFF_KIND] != KIND_DIR {
                    return Err("node 0 is not the root directory".into());
                }
            } else {
                let parent = self.u32_at(r + OFF_PARENT);
                if parent >= id || self.buf[self.rec(parent) + OFF_KIND] != KIND_DIR {
                    return Err(format!("node {id}: parent does not precede it"));
                }
                let (first, count) = self.child_range(parent);
                if id < first || id >= first + count {
                    return Err(format!("node {id}: not among its parent's children"));
                }
                if name.is_empty() || name.as_str().contains('/') {
                    return Err(format!("node {id}: bad name"));
                }
                if id > first && self.name(id - 1) >= name {
                    return Err(format!("node {id}: children not sorted"));
                }
            }
            let flags = flags & !FLAG_NAME_HEX;
            match self.buf[r + OFF_KIND] {
                KIND_DIR => {
                    let (first, count) = self.child_range(id);
                    if u64::from(first) + u64::from(count) > u64::from(n)
                        || (count > 0 && first <= id)
                        || flags != 0
                    {
                        return Err(format!("node {id}: children out of range"));
                    }
                }
                kind @ (KIND_REMOTE | KIND_STORED) => {
                    let at = self.u32_at(r + OFF_DIGEST) as usize;
                    let algo = self
                        .buf
                        .get(h.digests.start + at)
                        .filter(|_| at < h.digests.len())
                        .and_then(|&code| Algo::from_code(code))
                        .ok_or_else(|| format!("node {id}: bad digest"))?;
                    if at + 1 + algo.byte_len() > h.digests.len() {
                        return Err(format!("node {id}: digest out of range"));
                    }
                    let url_ok = match (kind, flags) {
                        (KIND_STORED, 0) => true,
                        (KIND_REMOTE, FLAG_URL_PREFIX) => {
                            u32::from(self.buf[r + OFF_PREFIX]) < h.prefix_count
                        }
                        (KIND_REMOTE, FLAG_URL_EXPLICIT) => self.url_entry(id).is_some(),
                        _ => false,
                    };
                    if !url_ok {
                        return Err(format!("node {id}: bad URL reference"));
                    }
                }
                k => return Err(format!("node {id}: unknown kind {k}")),
            }
        }
        if h.indexed {
            let mut prev = None;
            for i in 0..n as usize {
                let id = self.u32_at(h.inos.start + i * 4);
                if id >= n {
                    return Err("inode index out of range".into());
                }
                let ino = self.ino(id);
                if prev.is_some_and(|p| p >= ino) {
                    return Err(format!("inode index entry {i} not sorted (or a duplicate)"));
                }
                prev = Some(ino);
            }
        }
        Ok(())
    }
}
