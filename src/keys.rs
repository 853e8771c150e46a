//! The vocabulary of the configuration file, shared by `config` and every
//! layout: a TOML table consumed key by key with errors that name the table,
//! the key and what was expected, and the values keys hold (durations,
//! sizes, name patterns, base URLs).
//!
//! A leaf: it depends on nothing else of regfs, so the config parser and the
//! layouts (which parse their own `[[mirror]]` keys) can both use it without
//! importing each other.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

/// A TOML table being consumed key by key; what is left at
/// [`Section::finish`] are unknown keys, which are errors.
pub struct Section {
    label: String,
    table: toml::Table,
    known: Vec<&'static str>,
    /// Files read through [`Section::file_text`], with a hash of their text.
    files: Vec<(PathBuf, u64)>,
}

impl Section {
    /// `label` names the table in messages (`mirror "pypi" (mirror[0])`).
    pub fn new(label: &str, table: toml::Table) -> Section {
        Section {
            label: label.to_string(),
            table,
            known: Vec::new(),
            files: Vec::new(),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// An error about `key` in this table.
    pub fn error(&self, key: &str, what: impl std::fmt::Display) -> String {
        format!("{}: {key}: {what}", self.label)
    }

    /// Paths under the upstream base named by `key` (`what`: what each is,
    /// `example`: one for the message), each with room for the path `below`
    /// under it (unless empty), none equal to or inside another. Absent: the base itself (`""`).
    pub fn subpaths(
        &mut self,
        key: &'static str,
        what: &str,
        example: &str,
        below: &str,
    ) -> Result<Vec<String>, String> {
        let Some(list) = self.string_or_list(key)? else {
            return Ok(vec![String::new()]);
        };
        if list.is_empty() {
            return Err(self.error(key, format!("give at least one {what} path")));
        }
        let mut paths = Vec::with_capacity(list.len());
        for p in &list {
            let p = p.trim_matches('/');
            let fits =
                below.is_empty() || crate::path::RelPath::new(format!("{p}/{below}")).is_ok();
            if crate::path::RelPath::new(p).is_err() || !fits || p.contains(char::is_whitespace) {
                return Err(self.error(
                    key,
                    format!("\"{p}\" is not a path under the upstream base (e.g. \"{example}\")"),
                ));
            }
            paths.push(p.to_string());
        }
        let nested = |x: &str, y: &str| x == y || y.starts_with(&format!("{x}/"));
        for (i, a) in paths.iter().enumerate() {
            for b in &paths[i + 1..] {
                if nested(a, b) || nested(b, a) {
                    return Err(self.error(
                        key,
                        format!("\"{a}\" and \"{b}\" overlap; give each {what} once, none inside another"),
                    ));
                }
            }
        }
        Ok(paths)
    }

    fn take(&mut self, key: &'static str) -> Option<toml::Value> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.table.remove(key)
    }

    fn expected(&self, key: &str, expected: &str, got: &toml::Value) -> String {
        self.error(key, format!("expected {expected}, got {got}"))
    }

    /// A key that must be present.
    pub fn required<T>(&self, key: &str, v: Option<T>, hint: &str) -> Result<T, String> {
        v.ok_or_else(|| format!("{}: missing key `{key}` ({hint})", self.label))
    }

    pub fn string(&mut self, key: &'static str) -> Result<Option<String>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.expected(key, "a string", &v)),
        }
    }

    pub fn string_or_list(&mut self, key: &'static str) -> Result<Option<Vec<String>>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(vec![s])),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s),
                    v => Err(self.expected(key, "a list of strings", &v)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.expected(key, "a string or a list of strings", &v)),
        }
    }

    /// Name patterns (`"requests"`, `"django*"`).
    pub fn globs(&mut self, key: &'static str) -> Result<Option<Vec<Glob>>, String> {
        let Some(pats) = self.string_or_list(key)? else {
            return Ok(None);
        };
        pats.iter()
            .map(|p| Glob::new(p).map_err(|e| self.error(key, e)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// [`Section::globs`] over names an ecosystem compares case-folded:
    /// each pattern is folded by `fold`, and a pattern without wildcards
    /// that `valid` refuses is an error saying it is not `what`.
    pub fn folded_globs(
        &mut self,
        key: &'static str,
        fold: fn(&str) -> String,
        valid: fn(&str) -> bool,
        what: &str,
    ) -> Result<Option<Vec<Glob>>, String> {
        let Some(pats) = self.string_or_list(key)? else {
            return Ok(None);
        };
        let mut globs = Vec::with_capacity(pats.len());
        for p in &pats {
            let g = Glob::new(&fold(p)).map_err(|e| self.error(key, e))?;
            if g.is_literal() && !valid(g.as_str()) {
                return Err(self.error(key, format!("\"{}\" is not {what}", g.as_str())));
            }
            globs.push(g);
        }
        Ok(Some(globs))
    }

    pub fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(b)),
            Some(v) => Err(self.expected(key, "true or false", &v)),
        }
    }

    pub fn path(&mut self, key: &'static str) -> Result<Option<PathBuf>, String> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        if !s.starts_with('/') {
            return Err(self.error(key, format!("expected an absolute path, got \"{s}\"")));
        }
        Ok(Some(PathBuf::from(s)))
    }

    /// The text of the file an absolute-path key names. The file is
    /// remembered, so a reloaded configuration notices when it changed.
    pub fn file_text(&mut self, key: &'static str) -> Result<Option<(PathBuf, String)>, String> {
        let Some(path) = self.path(key)? else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| self.error(key, format!("cannot read {}: {e}", path.display())))?;
        self.files
            .push((path.clone(), fingerprint(text.as_bytes())));
        Ok(Some((path, text)))
    }

    pub fn duration(&mut self, key: &'static str) -> Result<Option<Duration>, String> {
        const WHAT: &str = "a duration such as \"30s\", \"15m\", \"1h\" or \"3d\"";
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if n >= 0 => Ok(Some(Duration::from_secs(n as u64))),
            Some(toml::Value::String(s)) => parse_duration(&s)
                .map(Some)
                .ok_or_else(|| self.error(key, format!("expected {WHAT}, got \"{s}\""))),
            Some(v) => Err(self.expected(key, WHAT, &v)),
        }
    }

    pub fn size(&mut self, key: &'static str) -> Result<Option<u64>, String> {
        const WHAT: &str = "a size such as \"500MiB\", \"50GiB\" or a number of bytes";
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if n > 0 => Ok(Some(n as u64)),
            Some(toml::Value::String(s)) => parse_size(&s)
                .map(Some)
                .ok_or_else(|| self.error(key, format!("expected {WHAT}, got \"{s}\""))),
            Some(v) => Err(self.expected(key, WHAT, &v)),
        }
    }

    pub fn count(&mut self, key: &'static str, min: i64, max: i64) -> Result<Option<u32>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if (min..=max).contains(&n) => Ok(Some(n as u32)),
            Some(v) => Err(self.expected(key, &format!("a whole number from {min} to {max}"), &v)),
        }
    }

    /// A table (`[store]`).
    pub fn table(&mut self, key: &'static str) -> Result<Option<toml::Table>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t)),
            Some(v) => Err(self.expected(key, &format!("a [{key}] table"), &v)),
        }
    }

    /// An array of tables (`[[mirror]]`).
    pub fn tables(&mut self, key: &'static str) -> Result<Vec<toml::Table>, String> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    toml::Value::Table(t) => Ok(t),
                    v => Err(self.expected(key, &format!("[[{key}]] tables"), &v)),
                })
                .collect(),
            Some(v) => Err(self.expected(key, &format!("[[{key}]] tables"), &v)),
        }
    }

    /// Fails on the first key nobody asked for; returns the files read.
    pub fn finish(self) -> Result<Vec<(PathBuf, u64)>, String> {
        match self.table.keys().next() {
            None => Ok(self.files),
            Some(k) => {
                let mut known = self.known.clone();
                known.sort_unstable();
                Err(format!(
                    "{}: unknown key `{k}`; expected one of: {}",
                    self.label,
                    known.join(", ")
                ))
            }
        }
    }
}

/// A cheap, stable fingerprint of a file's text (not a security digest).
fn fingerprint(bytes: &[u8]) -> u64 {
    // FNV-1a.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Parses an http(s) base URL and makes sure it ends with `/` so that joining
/// relative paths keeps its last segment.
pub fn parse_base_url(s: &str) -> Result<Url, String> {
    let mut url = Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("only http:// and https:// upstreams are supported".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a base URL takes no query or fragment".into());
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// Parses `90`, `30s`, `15m`, `1h30m`, `3d`, `2w`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match rest[..unit_len].trim() {
            "" | "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86400,
            "w" => 7 * 86400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs(total))
}

/// Parses `1048576`, `500MB`, `500MiB`, `50GiB`, `1T`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let n: f64 = s[..digits].parse().ok()?;
    let mult: u64 = match s[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        "t" | "tib" => 1 << 40,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    let v = n * mult as f64;
    (v >= 1.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// A shell-style pattern (`*` and `?`) over package names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() || pattern.chars().any(char::is_control) {
            return Err(format!("\"{pattern}\" is not a usable name pattern"));
        }
        Ok(Glob(pattern.to_string()))
    }

    /// True when the pattern has no wildcards (it names one unit).
    pub fn is_literal(&self) -> bool {
        !self.0.contains(['*', '?'])
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard matching with single-star backtracking.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(14 * 86400)));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("12XB"), None);
    }

    #[test]
    fn globs() {
        let g = Glob::new("a*b?c").unwrap();
        assert!(g.matches("ab-c") && g.matches("aXYZbQc") && !g.matches("abc"));
        assert!(Glob::new("*").unwrap().matches(""));
    }

    #[test]
    fn a_section_names_unknown_keys_and_what_it_expected() {
        let t: toml::Table = "a = \"1h\"\nb = 3\nc = true\n".parse().unwrap();
        let mut s = Section::new("mirror \"x\"", t);
        assert_eq!(s.duration("a").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(
            s.string("b").unwrap_err(),
            "mirror \"x\": b: expected a string, got 3"
        );
        let e = s.finish().unwrap_err();
        assert_eq!(
            e, "mirror \"x\": unknown key `c`; expected one of: a, b",
            "the keys asked for are the ones it knows"
        );
    }
}
