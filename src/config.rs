//! The TOML configuration file: global directories and limits plus one
//! `[[mirror]]` table per mirror.
//!
//! Parsing is strict and explains itself: every error names the file, the
//! table (`mirror "pypi"`), the key and what was expected, so an operator can
//! fix a typo at 3 a.m. without reading the source. Unknown keys are errors,
//! never silently ignored. A `[[mirror]]` table's common keys (`name`,
//! `layout`, `upstream`, `sync_interval`, `download`) are read here; every
//! other key belongs to its layout, which reads it (see `src/layouts.rs`),
//! so a key the layout does not use is an error for that layout.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::keys::Section;
use crate::layout::{Adapter, LayoutDef, LayoutSpec, MirrorContext};

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
    /// How often the status page's plots take a sample.
    pub history_interval: Duration,
    pub mirrors: Vec<MirrorConfig>,
    /// `[store.s3]`: the shared artifact store in a bucket, if any.
    pub shared: Option<crate::store::shared::SharedConfig>,
    /// `role`: what this node does with the shared store's generations.
    pub role: Role,
    /// `follow_interval`: how often a follower looks for a new generation.
    pub follow_interval: Duration,
    /// Upstream logins: from the `credentials` file, and the userinfo taken
    /// out of `upstream` URLs (which then hold none).
    pub credentials: crate::credentials::Credentials,
    /// Things worth a WARN when the configuration is put to use.
    pub warnings: Vec<String>,
}

/// `role`: one node syncing for many (see `mirror/follow.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Syncs upstream and publishes nothing (one node, or nodes sharing
    /// artifacts only).
    #[default]
    Standalone,
    /// Syncs upstream and publishes each generation it serves to the
    /// shared store.
    Syncer,
    /// Never syncs upstream: serves the generations the syncer published.
    Follower,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Syncer => "syncer",
            Role::Follower => "follower",
        }
    }
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

/// One `[[mirror]]` table, validated; its layout has read its own keys and
/// built its adapter.
#[derive(Clone)]
pub struct MirrorConfig {
    /// Directory name under the mount; a single path component.
    pub name: String,
    pub layout: &'static LayoutDef,
    /// Base URLs, tried in order.
    pub upstreams: Vec<Url>,
    pub sync_interval: Duration,
    /// Fetch artifacts when first read, or all of each new generation at once.
    pub download: Download,
    /// List artifacts metadata gives no trusted digest for (MD5 or none),
    /// serving each as pinned to the SHA-256 of its first download
    /// ([`crate::pins`]). Off by default.
    pub trust_on_first_use: bool,
    /// The common policy keys ([`crate::policy`]).
    pub policy: crate::policy::Policy,
    /// The layout's embedded defaults.
    pub spec: Arc<LayoutSpec>,
    pub adapter: Arc<dyn Adapter>,
    /// The table as written and the files its keys named (with a hash of
    /// their text): a reload reopens the mirror when either changed.
    written: (toml::Table, Vec<(PathBuf, u64)>),
}

impl PartialEq for MirrorConfig {
    fn eq(&self, other: &MirrorConfig) -> bool {
        self.written == other.written
    }
}

impl std::fmt::Debug for MirrorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorConfig")
            .field("name", &self.name)
            .field("layout", &self.layout.name)
            .field("upstreams", &self.upstreams.len())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Download {
    /// On first read (the default).
    OnDemand,
    /// Every artifact of each new generation, in the background, a few at a time.
    Immediate,
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
    let mut top = Section::new("top level", table);
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
        history_interval: match top.duration("history_interval")? {
            None => crate::history::EVERY,
            Some(d) if d >= Duration::from_secs(1) => d,
            Some(_) => return Err("top level: history_interval: must be at least 1s".into()),
        },
        metrics_listen: match top.string("metrics_listen")? {
            None => None,
            Some(a) => Some(a.parse().map_err(|_| {
                format!("top level: metrics_listen: expected an address such as \"127.0.0.1:9477\", got \"{a}\"")
            })?),
        },
        shared: parse_store(&mut top)?,
        role: match top.string("role")?.as_deref() {
            None | Some("standalone") => Role::Standalone,
            Some("syncer") => Role::Syncer,
            Some("follower") => Role::Follower,
            Some(other) => {
                return Err(top.error(
                    "role",
                    format!("expected \"standalone\", \"syncer\" or \"follower\", got \"{other}\""),
                ));
            }
        },
        follow_interval: match top.duration("follow_interval")? {
            None => Duration::from_secs(30),
            Some(d) if d >= Duration::from_secs(1) => d,
            Some(_) => return Err("top level: follow_interval: must be at least 1s".into()),
        },
        fetch,
        mirrors: Vec::new(),
        credentials: crate::credentials::Credentials::default(),
        warnings: Vec::new(),
    };
    for (i, t) in top.tables("mirror")?.into_iter().enumerate() {
        let m = parse_mirror(i, t, &mut config.credentials, &mut config.warnings)?;
        config.mirrors.push(m);
    }
    top.finish()?;
    if config.role != Role::Standalone && config.shared.is_none() {
        return Err(format!(
            "top level: role: a {} shares generations through the shared store: add a [store.s3] table (or remove the key)",
            config.role.name()
        ));
    }
    check_unique_names(&config.mirrors)?;
    load_credentials(&mut config, credentials_file)?;
    Ok(config)
}

/// `[store]`: its one table, `[store.s3]`.
fn parse_store(top: &mut Section) -> Result<Option<crate::store::shared::SharedConfig>, String> {
    let Some(table) = top.table("store")? else {
        return Ok(None);
    };
    let mut store = Section::new("store", table);
    let s3 = store.table("s3")?;
    store.finish()?;
    s3.map(|t| crate::store::shared::SharedConfig::parse(Section::new("store.s3", t)))
        .transpose()
}

/// Loads the credentials file (the `credentials` key, else
/// `$REGFS_CREDENTIALS`).
fn load_credentials(config: &mut Config, file: Option<PathBuf>) -> Result<(), String> {
    let file = file.or_else(|| std::env::var_os("REGFS_CREDENTIALS").map(PathBuf::from));
    if let Some(f) = file {
        config
            .credentials
            .load(&f)
            .map_err(|e| format!("top level: credentials: {e}"))?;
    }
    Ok(())
}

/// Parses one `[[mirror]]`: the keys every mirror has here, the rest by its layout.
fn parse_mirror(
    index: usize,
    table: toml::Table,
    credentials: &mut crate::credentials::Credentials,
    warnings: &mut Vec<String>,
) -> Result<MirrorConfig, String> {
    let label = match table.get("name").and_then(|v| v.as_str()) {
        Some(name) => format!("mirror \"{name}\" (mirror[{index}])"),
        None => format!("mirror[{index}]"),
    };
    let written = table.clone();
    let mut s = Section::new(&label, table);
    let name = s.string("name")?;
    let name = s.required("name", name, "the mirror's directory under the mount")?;
    crate::path::check_name(&name)
        .ok()
        .filter(|_| !name.starts_with('.') && !name.contains('@'))
        .ok_or_else(|| {
            s.error(
                "name",
                format!(
                    "\"{name}\" must be a single directory name not starting with `.` and \
                     without `@` (`<mirror>@<snapshot>` names a snapshot)"
                ),
            )
        })?;
    let layout = s.string("layout")?;
    let layout = s.required(
        "layout",
        layout,
        &format!("one of {}", crate::layouts::names()),
    )?;
    let layout = crate::layouts::find(&layout).ok_or_else(|| {
        s.error(
            "layout",
            format!(
                "unknown layout \"{layout}\"; expected one of {}",
                crate::layouts::names()
            ),
        )
    })?;
    let upstreams = s.string_or_list("upstream")?;
    let upstreams = s.required("upstream", upstreams, "the registry's base URL")?;
    if upstreams.is_empty() {
        return Err(s.error("upstream", "give at least one URL"));
    }
    let upstreams = upstreams
        .iter()
        .map(|u| {
            crate::keys::parse_base_url(u)
                .map_err(|e| s.error("upstream", format!("\"{}\": {e}", crate::redact::redact(u))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A login in an upstream URL is kept for that origin only, before
    // anything (the adapter, a message) sees the URL.
    let mut upstreams = upstreams;
    for u in &mut upstreams {
        if credentials.take_userinfo(u) {
            warnings.push(format!(
                "{label}: upstream {u} has a user and password in its URL: they are sent to that origin only and never shown, but better kept in a credentials file (the `credentials` key), out of this one"
            ));
        }
    }
    let sync_interval = s
        .duration("sync_interval")?
        .unwrap_or(Duration::from_secs(3600));
    if sync_interval < Duration::from_secs(10) {
        return Err(s.error("sync_interval", "must be at least 10s"));
    }
    let download = match s.string("download")?.as_deref() {
        None | Some("on_demand") => Download::OnDemand,
        Some("immediate") => Download::Immediate,
        Some(other) => {
            return Err(s.error(
                "download",
                format!("expected \"on_demand\" or \"immediate\", got \"{other}\""),
            ));
        }
    };
    let trust_on_first_use = s.boolean("trust_on_first_use")?.unwrap_or(false);
    let policy = layout.policy(&mut s)?;
    let spec = LayoutSpec::parse(layout.defaults)
        .map_err(|e| format!("layout {}: embedded defaults: {e}", layout.name))?;
    let ctx = MirrorContext {
        name: &name,
        upstreams: &upstreams,
        spec: &spec,
        trust_on_first_use,
        policy: &policy,
    };
    let adapter = (layout.configure)(&ctx, &mut s)?;
    let files = s.finish()?;
    Ok(MirrorConfig {
        name,
        layout,
        upstreams,
        sync_interval,
        download,
        trust_on_first_use,
        policy,
        spec: Arc::new(spec),
        adapter: Arc::from(adapter),
        written: (written, files),
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
        assert_eq!(m.layout.name, "pypi");
        assert_eq!(m.upstreams[1].as_str(), "https://b.upstream.test/pypi/");
        assert_eq!(m.sync_interval, Duration::from_secs(3600));
        assert_eq!(c.fetch, FetchSettings::default());
    }

    #[test]
    fn role_needs_the_shared_store_and_is_one_of_three() {
        assert_eq!(parse(GOOD).unwrap().role, Role::Standalone);
        let e = parse(&format!("role = \"follower\"\n{GOOD}")).unwrap_err();
        assert!(
            e.contains("role: a follower") && e.contains("[store.s3]"),
            "{e}"
        );
        let e = parse(&format!("role = \"leader\"\n{GOOD}")).unwrap_err();
        assert!(
            e.contains("role: expected \"standalone\", \"syncer\" or \"follower\", got \"leader\""),
            "{e}"
        );
        let s3 = "[store.s3]\nendpoint = \"http://127.0.0.1:7070\"\nbucket = \"regfs\"\n";
        let c = parse(&format!(
            "role = \"follower\"\nfollow_interval = \"5s\"\n{GOOD}\n{s3}"
        ))
        .unwrap();
        assert_eq!(
            (c.role, c.follow_interval),
            (Role::Follower, Duration::from_secs(5))
        );
        let e = parse(&format!(
            "role = \"syncer\"\nfollow_interval = \"0s\"\n{GOOD}\n{s3}"
        ))
        .unwrap_err();
        assert!(e.contains("follow_interval: must be at least 1s"), "{e}");
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
        // `a@b` would shadow snapshot `b` of a mirror `a` at the mount root.
        let e = parse(&GOOD.replace("name = \"pypi\"", "name = \"pypi@v1\"")).unwrap_err();
        assert!(e.contains("without `@`"), "{e}");
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
    fn the_shared_store_table_is_checked_key_by_key() {
        let with = |t: &str| {
            parse(&GOOD.replacen("[[mirror]]", &format!("[store.s3]\n{t}\n[[mirror]]"), 1))
        };
        let c = with("endpoint = \"http://127.0.0.1:7070\"\nbucket = \"regfs\"").unwrap();
        let s = c.shared.unwrap();
        assert_eq!(
            (s.prefix.as_str(), s.region.as_str(), s.part_size),
            ("cas", "us-east-1", 64 << 20)
        );
        let e = with("bucket = \"regfs\"").unwrap_err();
        assert!(e.contains("store.s3: missing key `endpoint`"), "{e}");
        let e = with("endpoint = \"http://h/\"\nbucket = \"regfs\"\nsecret = \"x\"").unwrap_err();
        assert!(e.contains("store.s3: unknown key `secret`"), "{e}");
        let e = with("endpoint = \"http://h/\"\nbucket = \"r\"\npart_size = \"1MiB\"").unwrap_err();
        assert!(
            e.contains("store.s3: part_size: must be at least 5MiB"),
            "{e}"
        );
        let e =
            parse(&GOOD.replacen("[[mirror]]", "[store.gcs]\nx = 1\n[[mirror]]", 1)).unwrap_err();
        assert!(e.contains("store: unknown key `gcs`"), "{e}");
    }

    #[test]
    fn a_key_the_layout_does_not_read_is_an_error_for_that_layout() {
        // `projects` is PyPI's filter, not npm's.
        let npm = "[[mirror]]\nname = \"n\"\nlayout = \"npm\"\nupstream = \"http://x/\"\npublic_url = \"http://m/n\"\n";
        assert!(parse(npm).is_ok());
        let e = parse(&format!("{npm}projects = [\"a\"]\n")).unwrap_err();
        assert!(e.contains("unknown key `projects`"), "{e}");
        assert!(e.contains("packages") && e.contains("public_url"), "{e}");
    }

    #[test]
    fn a_mirror_is_unchanged_for_a_reload_only_if_its_table_and_files_are() {
        let dir = std::env::temp_dir().join(format!("regfs-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sum = dir.join("go.sum");
        std::fs::write(
            &sum,
            "example.com/a v1.0.0 h1:+Jstl00rV5RFTWFTVSXWh1mghNbhPGFleTU2VqFa/08=\n",
        )
        .unwrap();
        let text = format!(
            "[[mirror]]\nname = \"go\"\nlayout = \"go\"\nupstream = \"http://x/\"\ngo_sum = \"{}\"\n",
            sum.display()
        );
        let a = parse(&text).unwrap();
        assert_eq!(a.mirrors[0], parse(&text).unwrap().mirrors[0]);
        std::fs::write(
            &sum,
            "example.com/a v1.0.1 h1:+Jstl00rV5RFTWFTVSXWh1mghNbhPGFleTU2VqFa/08=\n",
        )
        .unwrap();
        assert_ne!(
            a.mirrors[0],
            parse(&text).unwrap().mirrors[0],
            "go.sum changed"
        );
        assert_ne!(
            a.mirrors[0],
            parse(&text.replace("http://x/", "http://y/"))
                .unwrap()
                .mirrors[0]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_packaged_config_parses_with_every_key_it_shows_uncommented() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/regfs.toml"));
        let text = std::fs::read_to_string(path).unwrap();
        let c = Config::parse(path, &text).unwrap();
        assert!(
            c.mirrors.is_empty(),
            "nothing is mirrored until the operator says what"
        );
        let creds = std::env::temp_dir().join(format!("regfs-creds-{}", std::process::id()));
        std::fs::write(&creds, "").unwrap();
        std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        // Every `#key = …` and `# key = …` line, every `# [[mirror]]` and `# [store.s3]`.
        let all: String = text
            .lines()
            .map(|l| {
                let t = l.trim_start_matches(['#', ' ']);
                let key = t.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                });
                if l.starts_with('#') && (key || t == "[[mirror]]" || t == "[store.s3]") {
                    format!("{t}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect::<String>()
            .replace("/etc/regfs/credentials", &creds.display().to_string())
            .replace(
                "/usr/share/keyrings/debian-archive-keyring.gpg",
                "/dev/null",
            )
            .replace("/etc/pki/rpm-gpg/RPM-GPG-KEY-rocky-9", "/dev/null")
            .replace("/etc/regfs/pause.gpg", "/dev/null");
        let c = Config::parse(path, &all).unwrap_or_else(|e| panic!("{e}\n{all}"));
        assert!(c.shared.is_some(), "the example shows [store.s3]");
        let layouts: Vec<&str> = c.mirrors.iter().map(|m| m.layout.name).collect();
        for l in crate::layouts::ALL {
            assert!(
                layouts.contains(&l.name),
                "the example shows a {} mirror",
                l.name
            );
        }
        std::fs::remove_file(&creds).unwrap();
    }

    #[test]
    fn the_shipped_example_config_parses() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/regfs.toml"));
        let c = Config::load(path).unwrap();
        let layouts: Vec<&str> = c.mirrors.iter().map(|m| m.layout.name).collect();
        assert_eq!(layouts, ["pypi", "debian"]);
    }
}
