//! Shared test support: the fixture PyPI (built from real artifacts by
//! `tests/fixtures/pypi/make_index.py`), the fixture upstream server, and a
//! real FUSE mount of the `regfs` binary that unmounts on drop.

#![allow(dead_code)]

pub mod upstream;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A file of the fixture PyPI, as its manifest describes it.
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

pub struct Fixture {
    pub root: PathBuf,
    pub files: Vec<FixtureFile>,
}

impl Fixture {
    pub fn file(&self, filename: &str) -> &FixtureFile {
        self.files
            .iter()
            .find(|f| f.filename == filename)
            .unwrap_or_else(|| panic!("no fixture file {filename}"))
    }
}

/// Runs a fixture builder from `tests/fixtures/` into the target's temp
/// directory (the builders cache: a complete tree is reused).
fn build_fixture(script: &str, dir: &str, hint: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(script);
    let st = Command::new("python3")
        .arg(&script)
        .arg(&root)
        .status()
        .expect("python3 runs");
    assert!(st.success(), "{} failed ({hint})", script.display());
    root
}

/// The fixture PyPI, built once per test binary (and cached across runs).
pub fn pypi() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = build_fixture(
            "pypi/make_index.py",
            "pypi-fixture",
            "is the `wheel` package installed?",
        );
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
        let mut files = Vec::new();
        for (project, list) in manifest["projects"].as_object().unwrap() {
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
        Fixture { root, files }
    })
}

/// The fixture Debian archive (`tests/fixtures/debian/make_archive.py`):
/// its root directory (served as the upstream root; the archive is under
/// `debian/`) and its manifest.
pub struct DebianFixture {
    pub root: PathBuf,
    pub manifest: Value,
}

impl DebianFixture {
    pub fn keyring(&self) -> PathBuf {
        self.root.join(self.manifest["keyring"].as_str().unwrap())
    }

    /// (filename, size, sha256) of every .deb in `suite`.
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

pub fn debian() -> &'static DebianFixture {
    static F: OnceLock<DebianFixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = build_fixture(
            "debian/make_archive.py",
            "debian-fixture",
            "are dpkg-dev, apt-utils and gpg installed?",
        );
        let manifest =
            serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
        DebianFixture { root, manifest }
    })
}

pub fn debian_mirror(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nlayout = \"debian\"\nupstream = \"{upstream}debian/\"\nsync_interval = \"1h\"\n{extra}\n"
    )
}

/// The fixture Maven repository (`tests/fixtures/maven/make_repo.py`): its
/// root (served as the upstream root; the repository is under `maven2/`)
/// and its manifest (`files`: path → size, sha1).
pub struct MavenFixture {
    pub root: PathBuf,
    pub manifest: Value,
}

impl MavenFixture {
    /// The bytes of a repository file as upstream has them.
    pub fn bytes(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.root.join("maven2").join(path))
            .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
    }
}

pub fn maven() -> &'static MavenFixture {
    static F: OnceLock<MavenFixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = build_fixture("maven/make_repo.py", "maven-fixture", "is a JDK installed?");
        let manifest =
            serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
        MavenFixture { root, manifest }
    })
}

pub fn maven_mirror(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nlayout = \"maven\"\nupstream = \"{upstream}maven2/\"\nsync_interval = \"1h\"\n{extra}\n"
    )
}

/// The fixture crates registry (`tests/fixtures/crates/make_registry.py`):
/// its root (the sparse index is under `index/`, crates under `dl/`) and
/// its manifest (`files`: dl path → sha256, size).
pub struct CratesFixture {
    pub root: PathBuf,
    pub manifest: Value,
}

pub fn crates() -> &'static CratesFixture {
    static F: OnceLock<CratesFixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = build_fixture(
            "crates/make_registry.py",
            "crates-fixture",
            "is cargo on PATH?",
        );
        let manifest =
            serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
        CratesFixture { root, manifest }
    })
}

pub fn crates_mirror(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nlayout = \"crates\"\nupstream = \"{upstream}index/\"\npublic_url = \"http://mirror.example/{name}\"\nsync_interval = \"1h\"\n{extra}\n"
    )
}

/// The fixture npm registry (`tests/fixtures/npm/make_registry.py`): its
/// root (served as the registry root) and its manifest (`files`: tarball
/// path → sha512 hex, size).
pub struct NpmFixture {
    pub root: PathBuf,
    pub manifest: Value,
}

pub fn npm() -> &'static NpmFixture {
    static F: OnceLock<NpmFixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = build_fixture("npm/make_registry.py", "npm-fixture", "is npm on PATH?");
        let manifest =
            serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
        NpmFixture { root, manifest }
    })
}

pub fn npm_mirror(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nlayout = \"npm\"\nupstream = \"{upstream}\"\npublic_url = \"http://mirror.example/{name}\"\nsync_interval = \"1h\"\n{extra}\n"
    )
}

/// The fixture Go module proxy (`tests/fixtures/go/make_proxy.py`): its
/// root (the proxy is under `proxy/`, `go.sum` beside it) and its manifest
/// (`zips`: escaped path → h1, size).
pub struct GoFixture {
    pub root: PathBuf,
    pub manifest: Value,
}

pub fn go() -> &'static GoFixture {
    static F: OnceLock<GoFixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = build_fixture("go/make_proxy.py", "go-fixture", "python3 only");
        let manifest =
            serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
        GoFixture { root, manifest }
    })
}

/// A Go mirror of the fixture proxy; `extra` must name `checksum_db` or `go_sum`.
pub fn go_mirror(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nlayout = \"go\"\nupstream = \"{upstream}proxy/\"\nsync_interval = \"1h\"\n{extra}\n"
    )
}

static N: AtomicUsize = AtomicUsize::new(0);

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
