//! The TOML configuration file: global directories and limits plus one
//! `[[mirror]]` table per mirror.
//!
//! Parsing is strict and explains itself: every error names the file, the
//! table (`mirror "pypi"`), the key and what was expected, so an operator can
//! fix a typo at 3 a.m. without reading the source. Unknown keys are errors,
//! never silently ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use crate::layout::LayoutKind;

/// A fully validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (for messages and reloads).
    pub path: PathBuf,
    pub cache_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Evict least recently used artifacts above this many bytes.
    pub cache_max_size: Option<u64>,
    pub fetch: FetchSettings,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub mirrors: Vec<MirrorConfig>,
    /// Upstream logins: from the `credentials` file, and the userinfo taken
    /// out of `upstream` URLs (which then hold none).
    pub credentials: crate::credentials::Credentials,
    /// Things worth a WARN when the configuration is put to use.
    pub warnings: Vec<String>,
}

/// Bounds on upstream requests; together they bound how long a reader waits.
#[derive(Clone, Debug, PartialEq)]
pub struct FetchSettings {
    pub connect_timeout: Duration,
    /// Longest an uncached open (or lazy lookup) waits before failing with EIO.
    pub fetch_timeout: Duration,
    /// A body that delivers no byte for this long counts as stalled.
    pub idle_timeout: Duration,
    /// Attempts per URL on connect errors, timeouts and 5xx (at least 1).
    pub attempts: u32,
    /// Concurrent requests per upstream host.
    pub max_per_host: usize,
    /// The largest artifact downloaded (a body with no known size is cut
    /// off here); `cache_max_size` bounds it too.
    pub max_artifact_size: u64,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            connect_timeout: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(20),
            attempts: 3,
            max_per_host: 16,
            max_artifact_size: 8 << 30,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MirrorConfig {
    /// Directory name under the mount; a single path component.
    pub name: String,
    pub layout: LayoutKind,
    /// Base URLs, tried in order.
    pub upstreams: Vec<Url>,
    /// Which packages to mirror (`projects` for PyPI); `None` = any, materialized on lookup.
    pub filter: Option<Vec<Glob>>,
    /// Hide files uploaded less than this long ago.
    pub cooldown: Option<Duration>,
    pub sync_interval: Duration,
    /// Fetch artifacts when first read, or all of each new generation at once.
    pub download: Download,
    /// Options of `layout = "debian"` mirrors.
    pub debian: Option<DebianOptions>,
    /// Where clients reach this mirror's directory through the exporter
    /// (`http://mirror.example/crates`), for layouts whose documents must
    /// hold absolute URLs (crates' `config.json`). No trailing slash.
    pub public_url: Option<String>,
    /// Where a `layout = "go"` mirror gets its `h1:` hashes.
    pub go: Option<crate::layout::go::Sums>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Download {
    /// On first read (the default).
    OnDemand,
    /// Every artifact of each new generation, in the background, a few at a time.
    Immediate,
}

/// What a Debian mirror carries and how its archive is trusted.
#[derive(Clone, Debug, PartialEq)]
pub struct DebianOptions {
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub architectures: Vec<String>,
    /// Also `Sources` and the source files in `pool/`.
    pub sources: bool,
    /// OpenPGP keyring that must have signed each suite's Release.
    pub keyring: PathBuf,
    /// How long index files of a superseded Release stay reachable by hash.
    pub by_hash_grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

const TOP_KEYS: &[&str] = &[
    "cache_dir",
    "state_dir",
    "cache_max_size",
    "connect_timeout",
    "fetch_timeout",
    "idle_timeout",
    "retries",
    "max_connections_per_host",
    "max_artifact_size",
    "metrics_listen",
    "credentials",
    "mirror",
];
const MIRROR_KEYS: &[&str] = &["name", "layout", "upstream", "cooldown", "sync_interval"];

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        parse_config(path, text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }
}

fn parse_config(path: &Path, text: &str) -> Result<Config, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("not valid TOML: {}", e.to_string().trim_end()))?;
    let mut top = Section::new("top level", table, TOP_KEYS);
    let defaults = FetchSettings::default();
    let fetch = FetchSettings {
        connect_timeout: top
            .duration("connect_timeout")?
            .unwrap_or(defaults.connect_timeout),
        fetch_timeout: top
            .duration("fetch_timeout")?
            .unwrap_or(defaults.fetch_timeout),
        idle_timeout: top
            .duration("idle_timeout")?
            .unwrap_or(defaults.idle_timeout),
        attempts: top
            .count("retries", 0, 20)?
            .map_or(defaults.attempts, |r| r + 1),
        max_per_host: top
            .count("max_connections_per_host", 1, 1024)?
            .map_or(defaults.max_per_host, |n| n as usize),
        max_artifact_size: top
            .size("max_artifact_size")?
            .unwrap_or(defaults.max_artifact_size),
    };
    let credentials_file = top.path("credentials")?;
    let mut config = Config {
        path: path.to_owned(),
        cache_dir: top
            .path("cache_dir")?
            .unwrap_or_else(|| PathBuf::from("/var/cache/regfs")),
        state_dir: top
            .path("state_dir")?
            .unwrap_or_else(|| PathBuf::from("/var/lib/regfs")),
        cache_max_size: top.size("cache_max_size")?,
        metrics_listen: match top.string("metrics_listen")? {
            None => None,
            Some(a) => Some(a.parse().map_err(|_| {
                format!("top level: metrics_listen: expected an address such as \"127.0.0.1:9477\", got \"{a}\"")
            })?),
        },
        fetch,
        mirrors: {
            let tables = top.tables("mirror")?;
            let mut mirrors = Vec::with_capacity(tables.len());
            for (i, t) in tables.into_iter().enumerate() {
                mirrors.push(parse_mirror(i, t)?);
            }
            mirrors
        },
        credentials: crate::credentials::Credentials::default(),
        warnings: Vec::new(),
    };
    top.finish()?;
    check_unique_names(&config.mirrors)?;
    take_credentials(&mut config, credentials_file)?;
    Ok(config)
}

/// Loads the credentials file (the `credentials` key, else
/// `$REGFS_CREDENTIALS`) and takes any userinfo out of the upstream URLs.
fn take_credentials(config: &mut Config, file: Option<PathBuf>) -> Result<(), String> {
    let file = file.or_else(|| std::env::var_os("REGFS_CREDENTIALS").map(PathBuf::from));
    if let Some(f) = file {
        config
            .credentials
            .load(&f)
            .map_err(|e| format!("top level: credentials: {e}"))?;
    }
    for m in &mut config.mirrors {
        for u in &mut m.upstreams {
            if config.credentials.take_userinfo(u) {
                config.warnings.push(format!(
                    "mirror \"{}\": upstream {u} has a user and password in its URL: they are sent to that origin only and never shown, but better kept in a credentials file (the `credentials` key), out of this one",
                    m.name
                ));
            }
        }
    }
    Ok(())
}

fn parse_mirror(index: usize, table: toml::Table) -> Result<MirrorConfig, String> {
    let label = match table.get("name").and_then(|v| v.as_str()) {
        Some(name) => format!("mirror \"{name}\" (mirror[{index}])"),
        None => format!("mirror[{index}]"),
    };
    let layout_name = table
        .get("layout")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let layout = match layout_name.as_deref() {
        None => {
            return Err(format!(
                "{label}: missing key `layout` (one of {})",
                LayoutKind::names()
            ));
        }
        Some(name) => LayoutKind::from_name(name).ok_or_else(|| {
            format!(
                "{label}: layout: unknown layout \"{name}\"; expected one of {}",
                LayoutKind::names()
            )
        })?,
    };
    let mut keys = MIRROR_KEYS.to_vec();
    keys.extend(layout_keys(layout));
    let mut s = Section::new(&label, table, &keys);
    let name = s
        .string("name")?
        .ok_or_else(|| format!("{label}: missing key `name`"))?;
    crate::path::check_name(&name)
        .ok()
        .filter(|_| !name.starts_with('.'))
        .ok_or_else(|| {
            format!(
                "{label}: name: \"{name}\" must be a single directory name not starting with `.`"
            )
        })?;
    s.string("layout")?;
    let upstreams = s
        .string_or_list("upstream")?
        .ok_or_else(|| format!("{label}: missing key `upstream` (the registry's base URL)"))?;
    if upstreams.is_empty() {
        return Err(format!("{label}: upstream: give at least one URL"));
    }
    let upstreams = upstreams
        .iter()
        .map(|u| {
            parse_base_url(u)
                .map_err(|e| format!("{label}: upstream: \"{}\": {e}", crate::redact::redact(u)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let filter = match layout.spec().filter_key {
        Some(key) => s
            .string_or_list(key)?
            .map(|pats| {
                pats.iter()
                    .map(|p| Glob::new(p).map_err(|e| format!("{label}: {key}: {e}")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?,
        None => None,
    };
    if let (LayoutKind::Maven, Some(globs)) = (layout, &filter) {
        if let Some(g) = globs.iter().find(|g| {
            g.as_str().split_once(':').is_none_or(|(group, artifact)| {
                group.is_empty() || artifact.is_empty() || artifact.contains(':')
            })
        }) {
            return Err(format!(
                "{label}: artifacts: \"{}\" is not a coordinate; write \"groupId:artifactId\" (globs allowed, e.g. \"org.apache.commons:*\")",
                g.as_str()
            ));
        }
    }
    let takes_url = layout_keys(layout).contains(&"public_url");
    let public_url = match takes_url
        .then(|| s.string("public_url"))
        .transpose()?
        .flatten()
    {
        Some(u) => Some(
            parse_base_url(&u)
                .map_err(|e| format!("{label}: public_url: \"{u}\": {e}"))?
                .as_str()
                .trim_end_matches('/')
                .to_string(),
        ),
        None if takes_url => {
            return Err(format!(
                "{label}: missing key `public_url` (where clients reach this mirror through your exporter, e.g. \"http://mirror.example/{name}\"; the documents clients read must hold absolute URLs)"
            ));
        }
        None => None,
    };
    let go = match layout {
        LayoutKind::Go => Some(parse_go(&label, &mut s)?),
        _ => None,
    };
    let debian = match layout {
        LayoutKind::Debian => Some(parse_debian(&label, &mut s)?),
        _ => None,
    };
    let mirror = MirrorConfig {
        name,
        layout,
        upstreams,
        filter,
        cooldown: s.duration("cooldown")?,
        sync_interval: s
            .duration("sync_interval")?
            .unwrap_or(Duration::from_secs(3600)),
        download: match s.string("download")?.as_deref() {
            None | Some("on_demand") => Download::OnDemand,
            Some("immediate") => Download::Immediate,
            Some(other) => {
                return Err(format!(
                    "{label}: download: expected \"on_demand\" or \"immediate\", got \"{other}\""
                ));
            }
        },
        debian,
        public_url,
        go,
    };
    if mirror.sync_interval < Duration::from_secs(10) {
        return Err(format!("{label}: sync_interval: must be at least 10s"));
    }
    s.finish()?;
    Ok(mirror)
}

/// Keys a `[[mirror]]` of this layout may have beyond the common ones.
fn layout_keys(layout: LayoutKind) -> &'static [&'static str] {
    match layout {
        LayoutKind::Pypi => &["projects"],
        LayoutKind::Maven => &["artifacts"],
        LayoutKind::Crates => &["crates", "public_url"],
        LayoutKind::Npm => &["packages", "public_url"],
        LayoutKind::Go => &["modules", "checksum_db", "go_sum"],
        LayoutKind::Debian => &[
            "suites",
            "components",
            "architectures",
            "sources",
            "keyring",
            "by_hash_grace",
        ],
    }
}

fn parse_go(label: &str, s: &mut Section) -> Result<crate::layout::go::Sums, String> {
    use crate::layout::go::Sums;
    match (s.string("checksum_db")?, s.string("go_sum")?) {
        (Some(db), None) => {
            // GOSUMDB's form is `name[+key] [url]`: the name is what the proxy serves under sumdb/.
            let name = db.split(['+', ' ']).next().unwrap_or_default().to_string();
            if name.is_empty() || crate::path::check_name(&name).is_err() || name.starts_with('.') {
                return Err(format!(
                    "{label}: checksum_db: \"{db}\" is not a checksum database name (as in GOSUMDB)"
                ));
            }
            Ok(Sums::Database(name))
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{label}: go_sum: cannot read \"{path}\": {e}"))?;
            crate::layout::go::parse_go_sum(&text)
                .map(Sums::File)
                .map_err(|e| format!("{label}: go_sum: \"{path}\": {e}"))
        }
        (Some(_), Some(_)) => Err(format!(
            "{label}: give either `checksum_db` or `go_sum`, not both"
        )),
        (None, None) => Err(format!(
            "{label}: missing key `checksum_db` (the checksum database the upstream proxy passes through, as in GOSUMDB) or `go_sum` (a go.sum file whose hashes to trust): a Go module mirror verifies every module against one"
        )),
    }
}

fn parse_debian(label: &str, s: &mut Section) -> Result<DebianOptions, String> {
    let names = |key: &str, v: Vec<String>, allow_slash: bool| -> Result<Vec<String>, String> {
        for n in &v {
            let ok = if allow_slash {
                crate::path::RelPath::new(n.as_str()).is_ok()
            } else {
                crate::path::check_name(n).is_ok()
            };
            if !ok || n.contains(char::is_whitespace) {
                return Err(format!("{label}: {key}: \"{n}\" is not a usable name"));
            }
        }
        Ok(v)
    };
    let suites = s.string_or_list("suites")?.ok_or_else(|| {
        format!("{label}: missing key `suites` (e.g. [\"bookworm\", \"bookworm-updates\"])")
    })?;
    if suites.is_empty() {
        return Err(format!("{label}: suites: give at least one suite"));
    }
    let keyring = s
        .path("keyring")?
        .ok_or_else(|| format!("{label}: missing key `keyring` (the archive's OpenPGP keyring, e.g. /usr/share/keyrings/debian-archive-keyring.gpg)"))?;
    if let Err(e) = std::fs::File::open(&keyring) {
        return Err(format!(
            "{label}: keyring: cannot read {}: {e} (install the archive's keyring package or point at its key)",
            keyring.display()
        ));
    }
    Ok(DebianOptions {
        suites: names("suites", suites, true)?,
        components: names(
            "components",
            s.string_or_list("components")?
                .unwrap_or_else(|| vec!["main".into()]),
            true,
        )?,
        architectures: names(
            "architectures",
            s.string_or_list("architectures")?
                .unwrap_or_else(|| vec!["amd64".into(), "all".into()]),
            false,
        )?,
        sources: s.boolean("sources")?.unwrap_or(false),
        keyring,
        by_hash_grace: s
            .duration("by_hash_grace")?
            .unwrap_or(Duration::from_secs(86400)),
    })
}

fn check_unique_names(mirrors: &[MirrorConfig]) -> Result<(), String> {
    for (i, m) in mirrors.iter().enumerate() {
        if let Some(j) = mirrors[..i].iter().position(|o| o.name == m.name) {
            return Err(format!(
                "mirror[{i}]: name: \"{}\" is already used by mirror[{j}]; names must be unique",
                m.name
            ));
        }
    }
    Ok(())
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

/// A TOML table being consumed key by key; leftovers are unknown keys.
struct Section {
    label: String,
    table: toml::Table,
    known: Vec<&'static str>,
}

impl Section {
    fn new(label: &str, table: toml::Table, known: &[&'static str]) -> Section {
        Section {
            label: label.to_string(),
            table,
            known: known.to_vec(),
        }
    }

    fn err(&self, key: &str, expected: &str, got: &toml::Value) -> String {
        format!("{}: {key}: expected {expected}, got {got}", self.label)
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(key, "a string", &v)),
        }
    }

    fn string_or_list(&mut self, key: &str) -> Result<Option<Vec<String>>, String> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(vec![s])),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s),
                    v => Err(self.err(key, "a list of strings", &v)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.err(key, "a string or a list of strings", &v)),
        }
    }

    fn boolean(&mut self, key: &str) -> Result<Option<bool>, String> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(b)),
            Some(v) => Err(self.err(key, "true or false", &v)),
        }
    }

    fn path(&mut self, key: &str) -> Result<Option<PathBuf>, String> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        if !s.starts_with('/') {
            return Err(format!(
                "{}: {key}: expected an absolute path, got \"{s}\"",
                self.label
            ));
        }
        Ok(Some(PathBuf::from(s)))
    }

    fn duration(&mut self, key: &str) -> Result<Option<Duration>, String> {
        const WHAT: &str = "a duration such as \"30s\", \"15m\", \"1h\" or \"3d\"";
        match self.table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if n >= 0 => Ok(Some(Duration::from_secs(n as u64))),
            Some(toml::Value::String(s)) => parse_duration(&s)
                .map(Some)
                .ok_or_else(|| format!("{}: {key}: expected {WHAT}, got \"{s}\"", self.label)),
            Some(v) => Err(self.err(key, WHAT, &v)),
        }
    }

    fn size(&mut self, key: &str) -> Result<Option<u64>, String> {
        const WHAT: &str = "a size such as \"500MiB\", \"50GiB\" or a number of bytes";
        match self.table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if n > 0 => Ok(Some(n as u64)),
            Some(toml::Value::String(s)) => parse_size(&s)
                .map(Some)
                .ok_or_else(|| format!("{}: {key}: expected {WHAT}, got \"{s}\"", self.label)),
            Some(v) => Err(self.err(key, WHAT, &v)),
        }
    }

    fn count(&mut self, key: &str, min: i64, max: i64) -> Result<Option<u32>, String> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if (min..=max).contains(&n) => Ok(Some(n as u32)),
            Some(v) => Err(self.err(key, &format!("a whole number from {min} to {max}"), &v)),
        }
    }

    fn tables(&mut self, key: &str) -> Result<Vec<toml::Table>, String> {
        match self.table.remove(key) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    toml::Value::Table(t) => Ok(t),
                    v => Err(self.err(key, "[[mirror]] tables", &v)),
                })
                .collect(),
            Some(v) => Err(self.err(key, "[[mirror]] tables", &v)),
        }
    }

    fn finish(self) -> Result<(), String> {
        match self.table.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!(
                "{}: unknown key `{k}`; expected one of: {}",
                self.label,
                self.known.join(", ")
            )),
        }
    }
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

    /// True when the pattern has wildcards and so needs the upstream listing.
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

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("/etc/regfs.toml"), text).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
        cache_dir = "/var/cache/regfs"
        state_dir = "/var/lib/regfs"
        cache_max_size = "50GiB"

        [[mirror]]
        name = "pypi"
        layout = "pypi"
        upstream = ["https://a.upstream.test/", "https://b.upstream.test/pypi"]
        projects = ["requests", "django*"]
        cooldown = "3d"
        sync_interval = "1h"
    "#;

    #[test]
    fn parses_the_documented_example() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.cache_max_size, Some(50 << 30));
        let m = &c.mirrors[0];
        assert_eq!(m.name, "pypi");
        assert_eq!(m.layout, LayoutKind::Pypi);
        assert_eq!(m.upstreams[1].as_str(), "https://b.upstream.test/pypi/");
        assert_eq!(m.cooldown, Some(Duration::from_secs(3 * 86400)));
        let f = m.filter.as_ref().unwrap();
        assert!(f[0].is_literal() && !f[1].is_literal());
        assert!(f[1].matches("django-rest") && !f[1].matches("flask"));
        assert_eq!(c.fetch, FetchSettings::default());
    }

    #[test]
    fn errors_name_file_table_key_and_expectation() {
        let e = parse(&GOOD.replace("\"1h\"", "\"1 hour\"")).unwrap_err();
        assert!(
            e.starts_with(
                "/etc/regfs.toml: mirror \"pypi\" (mirror[0]): sync_interval: expected a duration"
            ),
            "{e}"
        );
        let e = parse(&GOOD.replace("cooldown", "cooldwn")).unwrap_err();
        assert!(e.contains("unknown key `cooldwn`"), "{e}");
        let e = parse(&GOOD.replace("layout = \"pypi\"", "layout = \"cpan2\"")).unwrap_err();
        assert!(e.contains("layout: unknown layout \"cpan2\""), "{e}");
        let e = parse(&GOOD.replace("\"50GiB\"", "\"lots\"")).unwrap_err();
        assert!(
            e.contains("top level: cache_max_size: expected a size"),
            "{e}"
        );
        let e = parse(&GOOD.replace("https://a.upstream.test/", "ftp://x/")).unwrap_err();
        assert!(e.contains("upstream: \"ftp://x/\": only http"), "{e}");
        let e = parse(&GOOD.replace("name = \"pypi\"", "name = \"../x\"")).unwrap_err();
        assert!(
            e.contains("name: \"../x\" must be a single directory name"),
            "{e}"
        );
        let e = parse("cache_dir = [").unwrap_err();
        assert!(e.starts_with("/etc/regfs.toml: not valid TOML"), "{e}");
        let dup = format!(
            "{GOOD}\n[[mirror]]\nname = \"pypi\"\nlayout = \"pypi\"\nupstream = \"http://x/\"\n"
        );
        assert!(
            parse(&dup)
                .unwrap_err()
                .contains("already used by mirror[0]")
        );
    }

    #[test]
    fn the_shipped_example_config_parses() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/regfs.toml"));
        let c = Config::load(path).unwrap();
        assert_eq!(c.mirrors.len(), 2);
        assert_eq!(
            c.mirrors[1].debian.as_ref().unwrap().suites,
            ["bookworm", "bookworm-updates"]
        );
    }

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
}
