//! Shared test support: the fixture registries (built from real artifacts
//! by `tests/fixtures/<layout>/build.py`, one manifest schema for all), the
//! fixture upstream server, and a real FUSE mount of the `regfs` binary
//! that unmounts on drop.

#![allow(dead_code)]

pub mod upstream;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A fixture registry, built at test time with the ecosystem's own tools by
/// `tests/fixtures/<layout>/build.py`, read through the manifest schema every
/// builder writes (documented in `tests/fixtures/fixturelib.py`).
pub struct Fixture {
    pub layout: String,
    /// Served as the fixture upstream's root.
    pub root: PathBuf,
    pub manifest: Value,
    /// The mirror's upstream base, relative to `root` (`""`, `"debian/"`).
    pub upstream: String,
    /// The layout's own `[[mirror]]` keys for this fixture.
    pub keys: String,
    pub artifacts: Vec<Artifact>,
    /// A mirror path upstream does not have, with `{n}`.
    pub unknown: String,
    /// Upstream requests one lookup of `unknown` may cost.
    pub lookup_requests: usize,
}

/// A file the mirror lists and fetches on first read.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// Mirror-relative path.
    pub path: String,
    /// Request path on the fixture upstream.
    pub upstream: String,
    pub size: u64,
    /// `algo:value` (hex, or Go's base64 for `h1`).
    pub digest: String,
    /// Mirror paths to look up first (what makes it listed).
    pub visit: Vec<String>,
}

impl Artifact {
    /// Do `data` hash to this artifact's digest?
    pub fn matches(&self, data: &[u8]) -> bool {
        let (algo, want) = self.digest.split_once(':').expect("algo:value");
        match algo {
            "h1" => regfs::layouts::go::modzip::hash_zip_from(
                std::io::Cursor::new(data),
                data.len() as u64,
            )
            .is_ok_and(|d| regfs::layouts::go::modzip::format_h1(&d) == self.digest),
            _ => {
                let algo = regfs::digest::Algo::from_name(algo).expect("known algorithm");
                hex_of(algo, data) == want
            }
        }
    }
}

impl Fixture {
    /// The `[[mirror]]` table of a mirror `name` of this fixture over an
    /// upstream serving `root` at `url`, plus `extra` lines.
    pub fn mirror(&self, name: &str, url: &str, extra: &str) -> String {
        format!(
            "[[mirror]]\nname = \"{name}\"\nlayout = \"{}\"\nupstream = \"{url}{}\"\nsync_interval = \"1h\"\n{}\n{extra}\n",
            self.layout,
            self.upstream,
            self.keys
                .replace("{root}", &self.root.display().to_string()),
        )
    }

    /// The bytes of a file as upstream has it, by its path under the upstream base.
    pub fn bytes(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.root.join(&self.upstream).join(path))
            .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
    }

    /// The Debian fixture's signing keyring.
    pub fn keyring(&self) -> PathBuf {
        self.root.join(self.manifest["keyring"].as_str().unwrap())
    }

    /// (filename, size, sha256) of every .deb in Debian suite `suite`.
    pub fn debs(&self, suite: &str) -> Vec<(String, u64, String)> {
        self.manifest["debs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["suites"].as_array().unwrap().iter().any(|s| s == suite))
            .map(|d| {
                (
                    d["filename"].as_str().unwrap().to_string(),
                    d["size"].as_u64().unwrap(),
                    d["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// Tools each builder needs, for the failure message.
const HINTS: &[(&str, &str)] = &[
    ("pypi", "is the `wheel` package installed?"),
    ("debian", "are dpkg-dev, apt-utils and gpg installed?"),
    ("maven", "is a JDK installed?"),
    ("crates", "is cargo on PATH?"),
    ("npm", "is npm on PATH?"),
    ("oci", "are umoci, skopeo and docker-registry installed?"),
    ("composer", "are composer and php-cli installed?"),
    ("rustup", "is gpg installed?"),
    (
        "cpan",
        "are perl, make, gpg, gpgv and libcpan-checksums-perl installed?",
    ),
];

/// The fixture of `layout`, built once per test binary into the target's
/// temp directory (and reused across runs: the builders cache).
pub fn fixture(layout: &str) -> &'static Fixture {
    static BUILT: std::sync::Mutex<Vec<&'static Fixture>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap();
    if let Some(f) = built.iter().find(|f| f.layout == layout) {
        return f;
    }
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{layout}-fixture"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(layout)
        .join("build.py");
    let st = Command::new("python3")
        .arg(&script)
        .arg(&root)
        .status()
        .expect("python3 runs");
    let hint = HINTS.iter().find(|(l, _)| *l == layout).map_or("", |h| h.1);
    assert!(st.success(), "{} failed ({hint})", script.display());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
    let s = |k: &str| {
        manifest[k]
            .as_str()
            .unwrap_or_else(|| panic!("{layout}: manifest {k}"))
            .to_string()
    };
    let artifacts = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| Artifact {
            path: a["path"].as_str().unwrap().to_string(),
            upstream: a["upstream"].as_str().unwrap().to_string(),
            size: a["size"].as_u64().unwrap(),
            digest: a["digest"].as_str().unwrap().to_string(),
            visit: a["visit"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect(),
        })
        .collect();
    let f: &'static Fixture = Box::leak(Box::new(Fixture {
        layout: layout.to_string(),
        upstream: s("upstream"),
        keys: s("keys"),
        unknown: s("unknown"),
        lookup_requests: manifest["lookup_requests"].as_u64().unwrap() as usize,
        artifacts,
        root,
        manifest,
    }));
    built.push(f);
    f
}

/// A file of the fixture PyPI, as its manifest's `projects` describe it.
#[derive(Clone, Debug)]
pub struct FixtureFile {
    pub project: String,
    pub filename: String,
    pub version: String,
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub upload_time: String,
    pub metadata_path: Option<String>,
    pub metadata_sha256: Option<String>,
}

pub struct PypiFixture {
    pub root: PathBuf,
    pub files: Vec<FixtureFile>,
}

impl PypiFixture {
    pub fn file(&self, filename: &str) -> &FixtureFile {
        self.files
            .iter()
            .find(|f| f.filename == filename)
            .unwrap_or_else(|| panic!("no fixture file {filename}"))
    }

    /// How many objects caching every file takes: the files and their PEP 658 sidecars.
    pub fn objects(&self) -> u64 {
        let sidecars = self.files.iter().filter(|f| f.metadata_path.is_some());
        (self.files.len() + sidecars.count()) as u64
    }
}

/// The fixture PyPI and its files.
pub fn pypi() -> &'static PypiFixture {
    static F: OnceLock<PypiFixture> = OnceLock::new();
    F.get_or_init(|| {
        let fx = fixture("pypi");
        let mut files = Vec::new();
        for (project, list) in fx.manifest["projects"].as_object().unwrap() {
            for f in list.as_array().unwrap() {
                let s = |k: &str| f[k].as_str().map(str::to_string);
                files.push(FixtureFile {
                    project: project.clone(),
                    filename: s("filename").unwrap(),
                    version: s("version").unwrap(),
                    path: s("path").unwrap(),
                    sha256: s("sha256").unwrap(),
                    size: f["size"].as_u64().unwrap(),
                    upload_time: s("upload_time").unwrap(),
                    metadata_path: s("metadata_path"),
                    metadata_sha256: s("metadata_sha256"),
                });
            }
        }
        PypiFixture {
            root: fx.root.clone(),
            files,
        }
    })
}

pub fn debian() -> &'static Fixture {
    fixture("debian")
}

pub fn maven() -> &'static Fixture {
    fixture("maven")
}

pub fn crates() -> &'static Fixture {
    fixture("crates")
}

pub fn npm() -> &'static Fixture {
    fixture("npm")
}

pub fn go() -> &'static Fixture {
    fixture("go")
}

pub fn debian_mirror(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nlayout = \"debian\"\nupstream = \"{upstream}debian/\"\nsync_interval = \"1h\"\n{extra}\n"
    )
}

pub fn maven_mirror(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nlayout = \"maven\"\nupstream = \"{upstream}maven2/\"\nsync_interval = \"1h\"\n{extra}\n"
    )
}

pub fn crates_mirror(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nlayout = \"crates\"\nupstream = \"{upstream}index/\"\npublic_url = \"http://mirror.example/{name}\"\nsync_interval = \"1h\"\n{extra}\n"
    )
}

pub fn npm_mirror(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nlayout = \"npm\"\nupstream = \"{upstream}\"\npublic_url = \"http://mirror.example/{name}\"\nsync_interval = \"1h\"\n{extra}\n"
    )
}

/// A Go mirror of the fixture proxy; `extra` must name `checksum_db` or `go_sum`.
pub fn go_mirror(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nlayout = \"go\"\nupstream = \"{upstream}proxy/\"\nsync_interval = \"1h\"\n{extra}\n"
    )
}

static N: AtomicUsize = AtomicUsize::new(0);

/// A loopback port nothing listens on (as the kernel gave it out just now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "t-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a config with the given `[[mirror]]` body lines under `dir`.
/// Test defaults (short timeouts) unless `globals` sets the key itself.
pub fn config(dir: &Path, globals: &str, mirrors: &str) -> PathBuf {
    let mut text = format!(
        "cache_dir = \"{d}/cache\"\nstate_dir = \"{d}/state\"\n",
        d = dir.display()
    );
    for (key, value) in [
        ("fetch_timeout", "\"10s\""),
        ("idle_timeout", "\"3s\""),
        ("retries", "1"),
    ] {
        if !globals.lines().any(|l| l.trim_start().starts_with(key)) {
            text.push_str(&format!("{key} = {value}\n"));
        }
    }
    text.push_str(&format!("{globals}\n{mirrors}\n"));
    let p = dir.join("regfs.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub fn pypi_mirror(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nlayout = \"pypi\"\nupstream = \"{upstream}\"\nsync_interval = \"1h\"\n{extra}\n"
    )
}

pub fn regfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_regfs"))
}

/// `regfs ARGS… --config CFG`, waited for.
pub fn run(cfg: &Path, args: &[&str]) -> std::process::Output {
    regfs()
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap()
}

/// `regfs ARGS… --config CFG`, which must succeed; what it printed on stdout.
pub fn run_ok(cfg: &Path, args: &[&str]) -> String {
    let out = run(cfg, args);
    assert!(
        out.status.success(),
        "regfs {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The fixture PyPI on a fresh upstream and a mount of it (`extra` goes
/// into the `[[mirror]]` table, `globals` at the top), first sync served.
pub fn pypi_mount(name: &str, globals: &str, extra: &str) -> (upstream::Upstream, Mount) {
    let up = upstream::Upstream::serve(&pypi().root);
    let dir = scratch(name);
    let cfg = config(&dir, globals, &pypi_mirror("pypi", &up.url(), extra));
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    (up, m)
}

pub fn sha256_hex(data: &[u8]) -> String {
    regfs::digest::Digest::sha256_of(data).hex()
}

/// The hex digest of `data` in `algo`.
pub fn hex_of(algo: regfs::digest::Algo, data: &[u8]) -> String {
    let mut h = regfs::digest::Hasher::new(algo);
    h.update(data);
    h.finish().hex()
}

/// The errno reading `p` to the end fails with (`None`: it succeeded).
pub fn errno(p: &Path) -> Option<i32> {
    use std::io::Read;
    std::fs::File::open(p)
        .and_then(|mut f| f.read_to_end(&mut Vec::new()))
        .err()
        .and_then(|e| e.raw_os_error())
}

/// Looks up `paths` (unknown to upstream) from 40 threads while another
/// thread keeps reading the cached file `cached`; each must be ENOENT. Then
/// again, which must ask upstream nothing. Returns the cached reads served
/// during the first storm and the upstream requests it made.
pub fn lookup_storm(
    m: &Mount,
    up: &upstream::Upstream,
    paths: &[String],
    cached: &Path,
) -> (u32, usize) {
    use std::sync::atomic::AtomicBool;
    let want = std::fs::read(cached).unwrap();
    let done = AtomicBool::new(false);
    let storm = |paths: &[String]| {
        std::thread::scope(|s| {
            for chunk in paths.chunks(paths.len().div_ceil(40)) {
                s.spawn(move || {
                    for p in chunk {
                        assert_eq!(errno(&m.path(p)), Some(libc::ENOENT), "{p}");
                    }
                });
            }
        })
    };
    let before = up.total();
    let reads = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0u32;
            while !done.load(Ordering::SeqCst) {
                assert_eq!(
                    std::fs::read(cached).unwrap(),
                    want,
                    "a cached read failed mid-storm"
                );
                reads += 1;
            }
            reads
        });
        storm(paths);
        done.store(true, Ordering::SeqCst);
        reader.join().unwrap()
    });
    let asked = up.total() - before;
    let again = up.total();
    storm(paths);
    assert_eq!(
        up.total(),
        again,
        "the second storm is answered from the negative cache"
    );
    assert!(reads > 0, "the cached reader was served during the storm");
    (reads, asked)
}

/// A fresh upstream serving `root`, and a mount of one mirror over it:
/// `mirror_toml(upstream_url)` gives the `[[mirror]]` table, named `name`.
pub fn mount_over(
    test: &str,
    root: &Path,
    name: &str,
    mirror_toml: impl FnOnce(&str) -> String,
) -> (upstream::Upstream, Mount) {
    let up = upstream::Upstream::serve(root);
    let dir = scratch(test);
    let cfg = config(&dir, "", &mirror_toml(&up.url()));
    let m = Mount::start(&dir, &cfg, name);
    m.wait_generation(1);
    (up, m)
}

fn is_mounted(mnt: &Path) -> bool {
    let want = std::fs::canonicalize(mnt).unwrap_or_else(|_| mnt.to_owned());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4).map(Path::new) == Some(want.as_path()))
}

/// A running `regfs mount`; unmounts (SIGTERM) on drop.
pub struct Mount {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub mnt: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Mount {
    /// Mounts and waits until `mirror` (a directory under the mount) appears
    /// and its first sync has been served.
    pub fn start(dir: &Path, config: &Path, mirror: &str) -> Mount {
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let log = dir.join(format!("regfs-{}.log", N.fetch_add(1, Ordering::SeqCst)));
        let child = regfs()
            .args(["mount", "--config"])
            .arg(config)
            .arg(&mnt)
            .env("RUST_LOG", "regfs=debug,info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let m = Mount {
            dir: dir.to_owned(),
            config: config.to_owned(),
            mnt,
            child: Some(child),
            log,
        };
        // The daemon's own word, not the directory: a dead predecessor's
        // stale mount can look present from the kernel's caches.
        m.wait_for(
            || {
                m.log().contains("mounted mountpoint")
                    && is_mounted(&m.mnt)
                    && m.mnt.join(mirror).is_dir()
            },
            "mount to appear",
        );
        m
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_for(&self, mut cond: impl FnMut() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the mirror's generation number to reach `n`.
    pub fn wait_generation(&self, n: u64) {
        self.wait_for(
            || {
                self.status()
                    .iter()
                    .all(|s| s["generation"].as_u64().unwrap_or(0) >= n)
            },
            &format!("generation {n}"),
        );
    }

    /// How many versions `status` says the first mirror retains
    /// (`retain = "additive"`), asserted to be `want`.
    pub fn expect_retained(&self, want: u64) {
        let status = &self.status()[0];
        assert_eq!(status["retained"].as_u64(), Some(want), "{status}");
    }

    /// Evicts every cached artifact (`gc --max-size 1`), then syncs: what
    /// was retained only while cached goes.
    pub fn evict_all_and_sync(&self) {
        run_ok(&self.config, &["gc", "--max-size", "1"]);
        run_ok(&self.config, &["sync"]);
    }

    pub fn status(&self) -> Vec<Value> {
        let out = regfs()
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Stops the daemon with SIGTERM and checks the mount is gone.
    pub fn stop(mut self) -> String {
        self.shutdown();
        self.log()
    }

    fn shutdown(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().unwrap().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
            panic!(
                "regfs left {} mounted after SIGTERM; log:\n{}",
                self.mnt.display(),
                self.log()
            );
        }
    }

    /// Kills the daemon with SIGKILL (a crash); cleans the mount afterwards.
    pub fn crash(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mnt)
            .status();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
            eprintln!("--- regfs log ---\n{}", self.log());
            return;
        }
        self.shutdown();
    }
}
