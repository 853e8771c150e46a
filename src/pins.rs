//! Trust on first use: the SHA-256 a mirror pinned for each artifact whose
//! metadata gives no digest regfs trusts (MD5, or none at all, see
//! [`Algo::is_weak`]).
//!
//! A mirror with `trust_on_first_use = true` lists such artifacts. The
//! first complete download of one is checked against the weak digest if
//! there is one, hashed with SHA-256, and its pin recorded here durably
//! before any byte of it is served; from then on only bytes of that SHA-256
//! and size are served for the artifact's path, whatever upstream sends
//! later, across evictions and restarts (a changed upstream file is a
//! verification failure). What this protects: the bytes clients got first
//! stay the bytes they get. What it cannot: the first download itself.
//!
//! Pins are keyed by the artifact's path in the mirror, not its upstream
//! URL: the path is what clients name, and a pin keeps holding when the
//! configured upstreams change (another mirror of the same registry must
//! serve the same bytes).
//!
//! ```text
//! <state_dir>/mirrors/<name>/pins
//!   regfs-pins 1
//!   <check> <sha256 hex> <size> <weak digest> <path>     one line per pin
//! ```
//!
//! `<check>` is the first 16 hex digits of the SHA-256 of the rest of its
//! line. A pin is appended and `fsync`ed before the download that made it
//! is served, so a power cut can only leave the last line incomplete (no
//! newline): that pin was never served, and the line is dropped at load
//! with a WARN. Any other damage (a complete line that does not check, two
//! different pins for one path, a foreign header) refuses to load, naming
//! the file and the line: regfs will not guess which bytes were trusted.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use crate::digest::{Algo, Digest};

/// The file's name in the mirror's state directory.
pub const FILE: &str = "pins";

const HEADER: &str = "regfs-pins 1\n";

/// What was trusted on first use for one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub sha256: Digest,
    pub size: u64,
    /// The weak digest metadata gave when the pin was made (MD5, or
    /// [`Digest::none`]); metadata that later promises another is a
    /// verification failure.
    pub weak: Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: line {line}: {what}. The trust-on-first-use pins are damaged and regfs will not guess which bytes were trusted: restore the file from a backup, or delete the damaged line (or the whole file) to pin those artifacts again on their next download"
    )]
    Damaged {
        path: PathBuf,
        line: usize,
        what: String,
    },
    /// A second first download of `path` (a race, or a pin recorded by
    /// another process) brought other bytes than the pin holds.
    #[error("{path}: pinned to {pinned} ({size} bytes) on first use, upstream now sent {actual}")]
    Changed {
        path: String,
        pinned: Digest,
        size: u64,
        actual: Digest,
    },
    #[error("{0}: cannot be pinned: a path with a newline or a control character")]
    BadPath(String),
}

/// One mirror's pins, loaded at start and appended to as artifacts are
/// first downloaded.
pub struct Pins {
    path: PathBuf,
    map: RwLock<HashMap<Box<str>, Pin>>,
    /// The file open for appending, once something was pinned; held while
    /// a pin is written, so pins of one path are decided one at a time.
    file: Mutex<Option<File>>,
}

impl std::fmt::Debug for Pins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pins({})", self.path.display())
    }
}

impl Pins {
    /// Loads `dir/pins` (none yet: no pins).
    pub fn load(dir: &Path) -> Result<Pins, PinError> {
        let path = dir.join(FILE);
        let io = |source| PinError::Io {
            path: path.clone(),
            source,
        };
        let mut map = HashMap::new();
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
            Ok(bytes) => {
                let complete = parse(&path, &bytes, &mut map)?;
                if complete < bytes.len() {
                    tracing::warn!(file = %path.display(), bytes = bytes.len() - complete, "dropping an incomplete last pin (a crash while it was written; it was never served, and is pinned again on its next download)");
                    let f = OpenOptions::new().write(true).open(&path).map_err(io)?;
                    f.set_len(complete as u64).map_err(io)?;
                    f.sync_all().map_err(io)?;
                }
            }
        }
        Ok(Pins {
            path,
            map: RwLock::new(map),
            file: Mutex::new(None),
        })
    }

    pub fn get(&self, path: &str) -> Option<Pin> {
        self.map.read().unwrap().get(path).cloned()
    }

    /// What a first download of `path` is known by while in flight
    /// (unique per mirror and path; never a digest of anything).
    pub fn key(&self, path: &str) -> Digest {
        let mut k = self.path.as_os_str().as_encoded_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(path.as_bytes());
        let h = Digest::sha256_of(&k);
        Digest::from_bytes(Algo::None, h.as_bytes()).expect("32 bytes")
    }

    /// How many artifacts are pinned.
    pub fn len(&self) -> usize {
        self.map.read().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `pin` for `path`, durably, unless it is pinned already:
    /// then `pin` must be the same bytes ([`PinError::Changed`] if not).
    pub fn record(&self, path: &str, pin: Pin) -> Result<(), PinError> {
        if path.chars().any(char::is_control) || path.is_empty() {
            return Err(PinError::BadPath(path.to_string()));
        }
        let mut file = self.file.lock().unwrap();
        if let Some(old) = self.get(path) {
            return match old.sha256 == pin.sha256 && old.size == pin.size {
                true => Ok(()),
                false => Err(PinError::Changed {
                    path: path.to_string(),
                    pinned: old.sha256,
                    size: old.size,
                    actual: pin.sha256,
                }),
            };
        }
        let io = |source| PinError::Io {
            path: self.path.clone(),
            source,
        };
        if file.is_none() {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io)?;
            if f.metadata().map_err(io)?.len() == 0 {
                f.write_all(HEADER.as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                crate::durable::sync_dir(self.path.parent().unwrap_or(Path::new(".")))
                    .map_err(io)?;
            }
            *file = Some(f);
        }
        let f = file.as_mut().expect("opened above");
        let body = format!(
            "{} {} {}:{} {path}",
            pin.sha256.hex(),
            pin.size,
            pin.weak.algo().name(),
            pin.weak.hex()
        );
        let line = format!("{} {body}\n", check(&body));
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
        self.map.write().unwrap().insert(path.into(), pin);
        Ok(())
    }
}

fn check(body: &str) -> String {
    Digest::sha256_of(body.as_bytes()).hex()[..16].to_string()
}

/// Parses the pins in `bytes` into `map`; returns the length of the
/// complete lines (an incomplete last line is the caller's to drop).
fn parse(path: &Path, bytes: &[u8], map: &mut HashMap<Box<str>, Pin>) -> Result<usize, PinError> {
    let damaged = |line: usize, what: String| PinError::Damaged {
        path: path.to_owned(),
        line,
        what,
    };
    if bytes.is_empty() {
        return Ok(0);
    }
    if !bytes.starts_with(HEADER.as_bytes()) {
        if HEADER.as_bytes().starts_with(bytes) {
            // The header itself was cut short: nothing was pinned yet.
            return Ok(0);
        }
        return Err(damaged(
            1,
            "not a regfs pins file (no `regfs-pins 1` header)".into(),
        ));
    }
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = std::str::from_utf8(&bytes[HEADER.len()..complete])
        .map_err(|e| damaged(0, format!("not UTF-8: {e}")))?;
    for (i, line) in text.lines().enumerate() {
        let n = i + 2;
        let (sum, body) = line
            .split_once(' ')
            .ok_or_else(|| damaged(n, "no checksum".into()))?;
        if check(body) != sum {
            return Err(damaged(
                n,
                format!("checksum {sum} does not match the line"),
            ));
        }
        let mut parts = body.splitn(4, ' ');
        let (Some(sha), Some(size), Some(weak), Some(rel)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(damaged(
                n,
                "expected `<sha256> <size> <weak digest> <path>`".into(),
            ));
        };
        let bad = |what: String| damaged(n, what);
        let sha256 = Digest::from_hex(Algo::Sha256, sha).map_err(|e| bad(e.to_string()))?;
        let size = size
            .parse()
            .map_err(|_| bad(format!("bad size `{size}`")))?;
        let weak = match weak.split_once(':') {
            Some(("none", hex)) => Digest::from_hex(Algo::None, hex)
                .ok()
                .filter(|d| *d == Digest::none()),
            _ => Digest::parse_tagged(weak)
                .ok()
                .filter(|d| d.algo().is_weak()),
        }
        .ok_or_else(|| bad(format!("bad weak digest `{weak}`")))?;
        let pin = Pin { sha256, size, weak };
        if let Some(old) = map.get(rel) {
            if *old != pin {
                return Err(bad(format!("a second, different pin for {rel}")));
            }
        }
        map.insert(rel.into(), pin);
    }
    Ok(complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "regfs-pins-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn pin(data: &[u8]) -> Pin {
        Pin {
            sha256: Digest::sha256_of(data),
            size: data.len() as u64,
            weak: Digest::none(),
        }
    }

    #[test]
    fn pins_survive_a_reload_and_never_change() {
        let dir = tempdir();
        let pins = Pins::load(dir.as_path()).unwrap();
        assert!(pins.is_empty());
        let md5 = Digest::parse_tagged("md5:900150983cd24fb0d6963f7d28e17f72").unwrap();
        let a = Pin {
            weak: md5.clone(),
            ..pin(b"abc")
        };
        pins.record("src/contrib/a_1.0.tar.gz", a.clone()).unwrap();
        pins.record("with space/b.zip", pin(b"b")).unwrap();
        // The same bytes again: fine. Other bytes: refused, pin kept.
        pins.record("src/contrib/a_1.0.tar.gz", a.clone()).unwrap();
        let e = pins
            .record("src/contrib/a_1.0.tar.gz", pin(b"abd"))
            .unwrap_err();
        assert!(matches!(e, PinError::Changed { .. }), "{e}");
        drop(pins);
        let again = Pins::load(dir.as_path()).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again.get("src/contrib/a_1.0.tar.gz"), Some(a));
        assert_eq!(again.get("with space/b.zip"), Some(pin(b"b")));
        assert_eq!(again.get("src/contrib/other"), None);
        assert!(matches!(
            again.record("bad\npath", pin(b"x")),
            Err(PinError::BadPath(_))
        ));
    }

    #[test]
    fn an_incomplete_last_line_is_dropped_and_the_rest_kept() {
        let dir = tempdir();
        let pins = Pins::load(dir.as_path()).unwrap();
        pins.record("a", pin(b"a")).unwrap();
        pins.record("b", pin(b"b")).unwrap();
        drop(pins);
        let file = dir.as_path().join(FILE);
        let full = std::fs::read(&file).unwrap();
        // A crash in the middle of appending the pin of `b`.
        std::fs::write(&file, &full[..full.len() - 7]).unwrap();
        let pins = Pins::load(dir.as_path()).unwrap();
        assert_eq!(pins.get("a"), Some(pin(b"a")));
        assert_eq!(pins.get("b"), None);
        // Truncated to its complete lines: the next pin appends cleanly.
        pins.record("b", pin(b"B")).unwrap();
        drop(pins);
        let pins = Pins::load(dir.as_path()).unwrap();
        assert_eq!(pins.get("b"), Some(pin(b"B")));
        assert_eq!(pins.len(), 2);
        // A header cut short: nothing was pinned.
        std::fs::write(&file, &HEADER.as_bytes()[..5]).unwrap();
        assert!(Pins::load(dir.as_path()).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_line_refuses_to_load_naming_file_and_line() {
        let dir = tempdir();
        let pins = Pins::load(dir.as_path()).unwrap();
        pins.record("a", pin(b"a")).unwrap();
        pins.record("b", pin(b"b")).unwrap();
        drop(pins);
        let file = dir.as_path().join(FILE);
        let text = std::fs::read_to_string(&file).unwrap();
        // One flipped digit of the second pin's SHA-256: a complete line
        // that does not check.
        let lines: Vec<&str> = text.lines().collect();
        let mut bad = lines[2].to_string();
        let at = 20;
        let c = if &bad[at..=at] == "0" { "1" } else { "0" };
        bad.replace_range(at..=at, c);
        std::fs::write(&file, format!("{}\n{}\n{bad}\n", lines[0], lines[1])).unwrap();
        let e = Pins::load(dir.as_path()).unwrap_err().to_string();
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(e.contains("line 3") && e.contains("checksum"), "{e}");
        // Not a pins file at all.
        std::fs::write(&file, "something else\n").unwrap();
        let e = Pins::load(dir.as_path()).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("header"), "{e}");
        // Two different pins of one path, each line well formed.
        let body = |d: &[u8]| {
            let p = pin(d);
            format!("{} {} none:{} a", p.sha256.hex(), p.size, p.weak.hex())
        };
        let (x, y) = (body(b"x"), body(b"y"));
        std::fs::write(
            &file,
            format!("{HEADER}{} {x}\n{} {y}\n", check(&x), check(&y)),
        )
        .unwrap();
        let e = Pins::load(dir.as_path()).unwrap_err().to_string();
        assert!(
            e.contains("line 3") && e.contains("second, different pin"),
            "{e}"
        );
    }
}
