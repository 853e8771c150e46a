//! The compact index's documents, parsed (and, for a mirror limited by
//! `gems`, written), and the names they put in the tree.
//!
//! ```text
//! versions     created_at: <time>        header lines, then `---`
//!              ---
//!              <gem> <v>[,<v>…] <md5>    <v> is VERSION[-PLATFORM]; `-<v>` yanks one
//! info/<gem>   ---
//!              VERSION[-PLATFORM] DEP:REQ&REQ,DEP:REQ|checksum:<sha256>[,ruby:REQ][,rubygems:REQ]
//! names        ---, then one gem a line
//! ```
//!
//! `/versions` only grows: publishing or yanking appends a line for the gem,
//! whose MD5 (that of its `/info` file now) supersedes the earlier ones, and
//! whose versions add to (or, with `-`, remove from) the earlier ones.
//! Versions never hold `-` (RubyGems writes a prerelease `1.0-rc1` as
//! `1.0.pre.rc1`), so the first `-` after the version starts the platform.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use crate::digest::{Algo, Digest};
use crate::path::check_name;

/// A gem name as RubyGems allows it: letters, digits, `.`, `_`, `-`, not
/// starting with `.` or `-`.
pub fn is_gem_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && check_name(s).is_ok()
}

/// A version as it appears in the index: a digit, then digits, letters and dots.
fn is_version(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.')
}

/// A platform (`java`, `x86_64-linux`, `universal-darwin-22`): starts with
/// a letter; letters, digits, `_`, `.` and `-`.
fn is_platform(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `VERSION[-PLATFORM]` as `/info` and `/versions` write it, checked.
fn split_version(vp: &str) -> Option<(&str, Option<&str>)> {
    match vp.split_once('-') {
        Some((v, p)) => (is_version(v) && is_platform(p)).then_some((v, Some(p))),
        None => is_version(vp).then_some((vp, None)),
    }
}

/// The file stem of a gem version: `<name>-<version>[-<platform>]`, the name
/// of its `.gem` and of its quick spec; `None` if no mirror may create it.
pub fn file_stem(name: &str, version_platform: &str) -> Option<String> {
    split_version(version_platform)?;
    let stem = format!("{name}-{version_platform}");
    (check_name(&format!("{stem}.gemspec.rz")).is_ok()).then_some(stem)
}

/// The gem a file stem (`<name>-<version>[-<platform>]`, from a client's
/// lookup) most likely belongs to: the shortest name whose remainder is a
/// version and platform. Stems are ambiguous (`a-1-2.0` may be gem `a`
/// with platform `2.0`, or `a-1`), and platforms do not start with a digit,
/// so that is `a-1`; a wrong guess only means the lookup finds nothing.
pub fn gem_of_stem(stem: &str) -> Option<&str> {
    stem.match_indices('-').find_map(|(i, _)| {
        let (name, rest) = (&stem[..i], &stem[i + 1..]);
        (is_gem_name(name) && split_version(rest).is_some()).then_some(name)
    })
}

fn name_key(name: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// A gem's current line, merged over everything appended for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GemLine {
    /// `VERSION[-PLATFORM]`, in upstream's order, yanked ones removed.
    pub versions: Vec<String>,
    /// The MD5 (hex) of its `/info` file, from its last line.
    pub md5: String,
}

/// Upstream's `/versions`, parsed.
#[derive(Debug, Default)]
pub struct Versions {
    /// Everything up to and including the `---` line.
    pub header: Vec<u8>,
    /// Each gem's current `/info` MD5, by a hash of its name, sorted. A
    /// full upstream lists some 200,000 gems: 24 bytes each, not a map of
    /// strings.
    md5s: Vec<(u64, [u8; 16])>,
    /// The gems a `gems` filter selects, merged (empty without one).
    pub selected: BTreeMap<String, GemLine>,
    /// Lines that were not `<gem> <versions> <md5>` (skipped).
    pub rejected: usize,
}

impl Versions {
    /// Parses a `/versions` file; `select` picks the gems whose merged
    /// lines to keep.
    pub fn parse(body: &[u8], select: impl Fn(&str) -> bool) -> Result<Versions, String> {
        let text = std::str::from_utf8(body).map_err(|_| "is not UTF-8".to_string())?;
        let mut start = None;
        let mut end = 0;
        for line in text.split_inclusive('\n') {
            end += line.len();
            if line.trim_end() == "---" {
                start = Some(end);
                break;
            }
        }
        let start = start.ok_or("has no `---` line")?;
        let mut v = Versions {
            header: body[..start].to_vec(),
            ..Versions::default()
        };
        let mut md5s: Vec<(u64, [u8; 16], usize)> = Vec::new();
        for (n, line) in text[start..].lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split(' ');
            let (Some(name), Some(list), Some(md5), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                v.rejected += 1;
                continue;
            };
            let raw = crate::digest::decode_hex(md5).filter(|b| b.len() == 16);
            let (true, Some(raw)) = (is_gem_name(name), raw) else {
                v.rejected += 1;
                continue;
            };
            md5s.push((name_key(name), raw.try_into().expect("16 bytes"), n));
            if select(name) {
                let gem = v.selected.entry(name.to_string()).or_default();
                for item in list.split(',').filter(|s| !s.is_empty()) {
                    match item.strip_prefix('-') {
                        Some(yanked) => gem.versions.retain(|x| x != yanked),
                        None if !gem.versions.iter().any(|x| x == item) => {
                            gem.versions.push(item.to_string())
                        }
                        None => {}
                    }
                }
                gem.md5 = md5.to_ascii_lowercase();
            }
        }
        // The last line of each gem holds its current MD5.
        md5s.sort_unstable_by_key(|&(k, _, n)| (k, std::cmp::Reverse(n)));
        md5s.dedup_by_key(|e| e.0);
        v.md5s = md5s.into_iter().map(|(k, m, _)| (k, m)).collect();
        Ok(v)
    }

    /// The current MD5 of `name`'s `/info` file, if it is listed.
    pub fn md5_of(&self, name: &str) -> Option<[u8; 16]> {
        let k = name_key(name);
        self.md5s
            .binary_search_by_key(&k, |e| e.0)
            .ok()
            .map(|i| self.md5s[i].1)
    }

    /// The selected gems that still have a version.
    pub fn selected_names(&self) -> impl Iterator<Item = &str> {
        self.selected
            .iter()
            .filter(|(_, g)| !g.versions.is_empty())
            .map(|(n, _)| n.as_str())
    }

    /// A `/versions` of the selected gems only, one line each (their
    /// merged versions and current MD5), under upstream's header.
    pub fn render_selected(&self) -> Vec<u8> {
        let mut out = self.header.clone();
        for (name, g) in self.selected.iter().filter(|(_, g)| !g.versions.is_empty()) {
            out.extend_from_slice(
                format!("{name} {} {}\n", g.versions.join(","), g.md5).as_bytes(),
            );
        }
        out
    }

    /// A `/names` of the selected gems.
    pub fn render_names(&self) -> Vec<u8> {
        let mut out = b"---\n".to_vec();
        for name in self.selected_names() {
            out.extend_from_slice(name.as_bytes());
            out.push(b'\n');
        }
        out
    }
}

/// A gem version an `/info` file lists with a usable checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoVersion {
    /// `<name>-<version>[-<platform>]`.
    pub stem: String,
    pub sha256: Digest,
}

/// The versions of gem `name`'s `/info` file that can be served, and why
/// each other line cannot.
pub fn parse_info(name: &str, body: &[u8]) -> (Vec<InfoVersion>, Vec<String>) {
    let mut found: BTreeMap<String, Option<Digest>> = BTreeMap::new();
    let mut order = Vec::new();
    let mut dropped = Vec::new();
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines();
    // Header lines (none today) end with `---`.
    if text.lines().any(|l| l == "---") {
        lines.by_ref().find(|l| *l == "---");
    }
    for line in lines.filter(|l| !l.is_empty()) {
        let shown = || {
            line.chars()
                .take(80)
                .collect::<String>()
                .escape_debug()
                .to_string()
        };
        let (vp, rest) = line.split_once(' ').unwrap_or((line, ""));
        let Some(stem) = file_stem(name, vp) else {
            dropped.push(format!(
                "{}: not a version a file may be named after",
                shown()
            ));
            continue;
        };
        let requirements = rest.split_once('|').map_or("", |(_, r)| r);
        let checksum = requirements
            .split(',')
            .find_map(|r| r.strip_prefix("checksum:"))
            .map(|hex| Digest::from_hex(Algo::Sha256, hex));
        let digest = match checksum {
            Some(Ok(d)) => d,
            Some(Err(_)) => {
                dropped.push(format!("{}: checksum is not a SHA-256", shown()));
                continue;
            }
            None => {
                dropped.push(format!("{}: no checksum to verify its .gem by", shown()));
                continue;
            }
        };
        match found.get_mut(&stem) {
            None => {
                order.push(stem.clone());
                found.insert(stem, Some(digest));
            }
            Some(prev) if prev.as_ref() == Some(&digest) => {}
            Some(prev) => {
                if prev.take().is_some() {
                    dropped.push(format!("{stem}: listed twice with different checksums"));
                }
            }
        }
    }
    let kept = order
        .into_iter()
        .filter_map(|stem| {
            let sha256 = found.remove(&stem).flatten()?;
            Some(InfoVersion { stem, sha256 })
        })
        .collect();
    (kept, dropped)
}
