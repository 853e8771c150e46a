//! Three regfs nodes (three real mounts, each with its own cache_dir) share
//! one bucket on a real S3 server: versitygw on 127.0.0.1 with its posix
//! backend in a scratch directory (installed by `scripts/deps`). The
//! upstream is the fixture PyPI, counting requests.

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::upstream::Upstream;
use support::{Mount, config, pypi, pypi_mirror, scratch, sha256_hex};

const ALL: &str = r#"projects = ["alpha", "Beta_Pkg", "gamma"]"#;

/// versitygw: `$VERSITYGW`, else where `scripts/deps` installs it, else `$PATH`.
fn versitygw() -> PathBuf {
    if let Some(p) = std::env::var_os("VERSITYGW") {
        return p.into();
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/versitygw");
    if local.exists() {
        return local;
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("versitygw"))
            .find(|p| p.exists())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "versitygw is missing: these tests need a real S3 server. Run scripts/deps (it installs versitygw into target/tools/bin), or set VERSITYGW=/path/to/versitygw"
        )
    })
}

/// A versitygw serving bucket `regfs` from `root`.
struct Gateway {
    root: PathBuf,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Gateway {
    fn start(dir: &Path) -> Gateway {
        let root = dir.join("gw");
        std::fs::create_dir_all(root.join("regfs")).unwrap();
        let port = support::free_port();
        let mut g = Gateway {
            root,
            port,
            child: None,
            log: dir.join("versitygw.log"),
        };
        g.resume();
        g
    }

    /// (Re)starts the server on the same port and directory.
    fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(versitygw())
            .args([
                "--access",
                "regfs-test",
                "--secret",
                "regfs-test-secret",
                "--quiet",
            ])
            .arg("--port")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("posix")
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", versitygw().display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "versitygw did not listen on port {}: {}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The `[store.s3]` table for a node, its credentials in `dir`.
    fn globals(&self, dir: &Path, extra: &str) -> String {
        let creds = dir.join("s3.env");
        std::fs::write(
            &creds,
            "AWS_ACCESS_KEY_ID=regfs-test\nAWS_SECRET_ACCESS_KEY=regfs-test-secret\n",
        )
        .unwrap();
        format!(
            "[store.s3]\nendpoint = \"http://127.0.0.1:{}\"\nbucket = \"regfs\"\nprefix = \"cas\"\ncredentials = \"{}\"\n{extra}\n",
            self.port,
            creds.display()
        )
    }

    /// Where the posix backend keeps the object of SHA-256 `hex`.
    fn object(&self, hex: &str) -> PathBuf {
        self.root.join("regfs/cas/sha256").join(&hex[..2]).join(hex)
    }

    /// Every object file under the prefix.
    fn objects(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root.join("regfs/cas"), &mut out);
        out
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One bucket, one upstream, three nodes.
struct Cluster {
    up: Upstream,
    gw: Gateway,
    nodes: Vec<Mount>,
}

fn cluster(name: &str, n: usize, extra: &str) -> Cluster {
    cluster_of(&pypi().root, name, n, extra)
}

fn cluster_of(root: &Path, name: &str, n: usize, extra: &str) -> Cluster {
    let up = Upstream::serve(root);
    let base = scratch(name);
    let gw = Gateway::start(&base);
    let nodes = (0..n)
        .map(|i| node(&up, &gw, &base.join(format!("node{i}")), extra))
        .collect();
    Cluster { up, gw, nodes }
}

fn node(up: &Upstream, gw: &Gateway, dir: &Path, extra: &str) -> Mount {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = config(
        dir,
        &gw.globals(dir, extra),
        &pypi_mirror("pypi", &up.url(), ALL),
    );
    let m = Mount::start(dir, &cfg, "pypi");
    m.wait_generation(1);
    m
}

fn read(m: &Mount, path: &str) -> Vec<u8> {
    std::fs::read(m.path(&format!("pypi/{path}"))).unwrap()
}

/// Waits until the bucket holds `f`'s object with exactly its bytes.
fn wait_uploaded(m: &Mount, gw: &Gateway, f: &support::FixtureFile) {
    let obj = gw.object(&f.sha256);
    m.wait_for(
        || std::fs::read(&obj).is_ok_and(|b| sha256_hex(&b) == f.sha256),
        &format!("{} to be uploaded to the bucket", f.filename),
    );
}

#[test]
fn an_artifact_fetched_through_one_node_is_served_by_the_others_from_the_bucket() {
    let c = cluster("s3-share", 3, "");
    let f = pypi().file("alpha-2.0-py3-none-any.whl");
    assert_eq!(sha256_hex(&read(&c.nodes[0], &f.path)), f.sha256);
    assert_eq!(c.up.hits(&f.path), 1);
    wait_uploaded(&c.nodes[0], &c.gw, f);
    for n in &c.nodes[1..] {
        assert_eq!(sha256_hex(&read(n, &f.path)), f.sha256);
        assert!(
            n.log().contains("read from the shared store"),
            "{}",
            n.log()
        );
    }
    assert_eq!(c.up.hits(&f.path), 1, "B and C made no upstream request");
    // The large wheel too: B and C read it from the bucket.
    let g = pypi().file("gamma-0.1-py3-none-any.whl");
    assert_eq!(sha256_hex(&read(&c.nodes[1], &g.path)), g.sha256);
    wait_uploaded(&c.nodes[1], &c.gw, g);
    assert_eq!(sha256_hex(&read(&c.nodes[2], &g.path)), g.sha256);
    assert_eq!(sha256_hex(&read(&c.nodes[0], &g.path)), g.sha256);
    assert_eq!(c.up.hits(&g.path), 1);
}

#[test]
fn thirty_concurrent_cold_readers_on_three_nodes_leave_one_complete_object() {
    let c = cluster("s3-storm", 3, "");
    let f = pypi().file("gamma-0.2-py3-none-any.whl");
    let paths: Vec<PathBuf> = (0..30)
        .map(|i| c.nodes[i % 3].path(&format!("pypi/{}", f.path)))
        .collect();
    let readers: Vec<_> = paths
        .into_iter()
        .map(|p| std::thread::spawn(move || std::fs::read(p).unwrap()))
        .collect();
    for r in readers {
        assert_eq!(sha256_hex(&r.join().unwrap()), f.sha256);
    }
    let hits = c.up.hits(&f.path);
    assert!(
        (1..=3).contains(&hits),
        "one download per node at most, got {hits}"
    );
    wait_uploaded(&c.nodes[0], &c.gw, f);
    // Let every node's upload finish (each ends created or refused).
    for n in &c.nodes {
        n.wait_for(
            || {
                n.log().contains("uploaded to the shared store")
                    || n.log().contains("read from the shared store")
            },
            "the node's upload to end",
        );
    }
    let objects = c.gw.objects();
    assert_eq!(objects, [c.gw.object(&f.sha256)], "exactly one object");
    assert_eq!(sha256_hex(&std::fs::read(&objects[0]).unwrap()), f.sha256);
}

#[test]
fn an_object_corrupted_in_the_bucket_is_never_served_and_is_repaired() {
    let c = cluster("s3-corrupt", 3, "");
    let f = pypi().file("Beta_Pkg-0.1-py3-none-any.whl");
    assert_eq!(sha256_hex(&read(&c.nodes[0], &f.path)), f.sha256);
    wait_uploaded(&c.nodes[0], &c.gw, f);
    // Behind regfs's back: same size, other bytes.
    let obj = c.gw.object(&f.sha256);
    let mut bad = std::fs::read(&obj).unwrap();
    bad[100] ^= 0xff;
    std::fs::write(&obj, &bad).unwrap();

    let data = read(&c.nodes[1], &f.path);
    assert_eq!(
        sha256_hex(&data),
        f.sha256,
        "node B served the corrupt object"
    );
    assert_eq!(c.up.hits(&f.path), 2, "B refetched it from upstream");
    let log = c.nodes[1].log();
    assert!(
        log.contains("shared store object")
            && log.contains(&format!("cas/sha256/{}/{}", &f.sha256[..2], f.sha256))
            && log.contains("corrupt"),
        "{log}"
    );
    wait_uploaded(&c.nodes[1], &c.gw, f);
    assert_eq!(sha256_hex(&read(&c.nodes[2], &f.path)), f.sha256);
    assert_eq!(
        c.up.hits(&f.path),
        2,
        "C read the repaired object from the bucket"
    );
}

#[test]
fn a_stopped_bucket_degrades_to_local_and_upstream_and_recovers() {
    let mut c = cluster("s3-down", 2, "");
    let fx = pypi();
    let (x, y, z) = (
        fx.file("alpha-1.0.tar.gz"),
        fx.file("alpha-2.0.tar.gz"),
        fx.file("alpha-1.0-py3-none-any.whl"),
    );
    let a = &c.nodes[0];
    assert_eq!(sha256_hex(&read(a, &x.path)), x.sha256);
    wait_uploaded(a, &c.gw, x);
    c.gw.stop();
    // Cached locally: served; not cached: from upstream.
    assert_eq!(sha256_hex(&read(a, &x.path)), x.sha256);
    assert_eq!(sha256_hex(&read(a, &y.path)), y.sha256);
    assert_eq!(sha256_hex(&read(a, &z.path)), z.sha256);
    assert_eq!(
        (c.up.hits(&x.path), c.up.hits(&y.path), c.up.hits(&z.path)),
        (1, 1, 1)
    );
    let log = a.log();
    assert_eq!(
        log.matches("shared store unavailable").count(),
        1,
        "one WARN for the outage: {log}"
    );
    c.gw.resume();
    // After the retry pause the bucket is used again.
    std::thread::sleep(Duration::from_secs(11));
    let b = &c.nodes[1];
    let w = fx.file("alpha-2.0-py3-none-any.whl");
    assert_eq!(sha256_hex(&read(a, &w.path)), w.sha256);
    a.wait_for(
        || a.log().contains("shared store is back"),
        "the bucket to be used again",
    );
    wait_uploaded(a, &c.gw, w);
    assert_eq!(sha256_hex(&read(b, &w.path)), w.sha256);
    assert_eq!(c.up.hits(&w.path), 1, "B read it from the recovered bucket");
}

/// `GET /metrics` of the node listening on `port`.
fn scrape(port: u16) -> String {
    let out = Command::new("curl")
        .args(["-fsS", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assert_metrics(port: u16, lines: &[String]) {
    let text = scrape(port);
    for l in lines {
        assert!(text.contains(l.as_str()), "missing {l:?} in:\n{text}");
    }
}

#[test]
fn the_buckets_hits_misses_uploads_corrupt_objects_and_outages_are_metrics() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let base = scratch("s3-metrics");
    let mut gw = Gateway::start(&base);
    let ports = [support::free_port(), support::free_port()];
    let nodes: Vec<Mount> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let dir = base.join(format!("node{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let globals = format!(
                "metrics_listen = \"127.0.0.1:{port}\"\n{}",
                gw.globals(&dir, "")
            );
            let m = Mount::start(
                &dir,
                &config(&dir, &globals, &pypi_mirror("pypi", &up.url(), ALL)),
                "pypi",
            );
            m.wait_generation(1);
            m
        })
        .collect();
    let (a, b) = (&nodes[0], &nodes[1]);
    let f = fx.file("alpha-2.0-py3-none-any.whl");
    assert_eq!(sha256_hex(&read(a, &f.path)), f.sha256);
    wait_uploaded(a, &gw, f);
    a.wait_for(
        || scrape(ports[0]).contains("regfs_shared_store_uploads_total{result=\"created\"} 1"),
        "A's upload to be counted",
    );
    assert_metrics(
        ports[0],
        &[
            "regfs_shared_store_reads_total{result=\"miss\"} 1".into(),
            "regfs_shared_store_reads_total{result=\"hit\"} 0".into(),
            format!("regfs_shared_store_uploaded_bytes_total {}", f.size),
            "regfs_shared_store_up 1".into(),
        ],
    );
    assert_eq!(sha256_hex(&read(b, &f.path)), f.sha256);
    assert_metrics(
        ports[1],
        &[
            "regfs_shared_store_reads_total{result=\"hit\"} 1".into(),
            "regfs_shared_store_reads_total{result=\"miss\"} 0".into(),
            format!("regfs_shared_store_read_bytes_total {}", f.size),
            "regfs_shared_store_uploads_total{result=\"created\"} 0".into(),
        ],
    );
    // Corrupted behind regfs's back: counted, not served.
    let g = fx.file("Beta_Pkg-0.1-py3-none-any.whl");
    assert_eq!(sha256_hex(&read(a, &g.path)), g.sha256);
    wait_uploaded(a, &gw, g);
    let obj = gw.object(&g.sha256);
    let mut bad = std::fs::read(&obj).unwrap();
    bad[100] ^= 0xff;
    std::fs::write(&obj, &bad).unwrap();
    assert_eq!(sha256_hex(&read(b, &g.path)), g.sha256);
    assert_metrics(
        ports[1],
        &["regfs_shared_store_reads_total{result=\"corrupt\"} 1".into()],
    );
    // Stopped: the node says so until the bucket answers again.
    gw.stop();
    let h = fx.file("alpha-1.0.tar.gz");
    assert_eq!(sha256_hex(&read(b, &h.path)), h.sha256);
    let text = scrape(ports[1]);
    assert!(text.contains("regfs_shared_store_up 0"), "{text}");
    assert!(
        !text.contains("regfs_shared_store_errors_total 0"),
        "{text}"
    );
}

/// The fixture PyPI built with wheels over 5MiB (two parts of 5MiB),
/// and its first large wheel.
fn big_fixture() -> (PathBuf, support::FixtureFile) {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pypi-big-fixture");
    let st = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pypi/build.py"))
        .arg(&root)
        .env("REGFS_PYPI_BIG_MIB", "6")
        .status()
        .unwrap();
    assert!(st.success(), "tests/fixtures/pypi/build.py failed");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
    let g = &m["projects"]["gamma"][0];
    let s = |k: &str| g[k].as_str().unwrap().to_string();
    let f = support::FixtureFile {
        project: "gamma".into(),
        filename: s("filename"),
        version: s("version"),
        path: s("path"),
        sha256: s("sha256"),
        size: g["size"].as_u64().unwrap(),
        upload_time: s("upload_time"),
        metadata_path: None,
        metadata_sha256: None,
    };
    assert!(
        f.size > 5 << 20,
        "{}: {} bytes, too small for two parts",
        f.filename,
        f.size
    );
    (root, f)
}

#[test]
fn kill_9_during_a_multipart_upload_leaves_no_object_and_a_later_read_completes() {
    let (root, f) = big_fixture();
    let mut c = cluster_of(&root, "s3-kill", 1, "part_size = \"5MiB\"");
    let f = &f;
    let a = c.nodes.remove(0);
    // Parts are uploaded sequentially after the local commit: stop the
    // node as soon as the server has the first part, then kill it.
    let multipart = c.gw.root.join("regfs/.sgwtmp/multipart");
    let reader = {
        let p = a.path(&format!("pypi/{}", f.path));
        std::thread::spawn(move || std::fs::read(p).unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let has_part = || {
        fn any_file(d: &Path) -> bool {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    let p = e.path();
                    if p.is_dir() { any_file(&p) } else { true }
                })
        }
        any_file(&multipart)
    };
    while !has_part() {
        assert!(
            Instant::now() < deadline,
            "no multipart upload began; log:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    unsafe { libc::kill(a.pid() as i32, libc::SIGKILL) };
    let _ = reader.join();
    let log_a = a.log();
    a.crash();
    assert!(
        !c.gw.object(&f.sha256).exists(),
        "a partial upload became visible; log:\n{log_a}"
    );
    // A later read (a fresh node) completes and uploads the whole object.
    let dir = c.gw.root.parent().unwrap().join("node-late");
    let b = node(&c.up, &c.gw, &dir, "part_size = \"5MiB\"");
    assert_eq!(sha256_hex(&read(&b, &f.path)), f.sha256);
    wait_uploaded(&b, &c.gw, f);
    assert_eq!(c.gw.objects(), [c.gw.object(&f.sha256)]);
}

#[test]
fn verify_bucket_names_a_corrupt_object_repair_deletes_it_and_gc_deletes_nothing() {
    let up = Upstream::serve(&pypi().root);
    let base = scratch("s3-verify");
    let gw = Gateway::start(&base);
    let dir = base.join("node");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config(
        &dir,
        &gw.globals(&dir, ""),
        &pypi_mirror("pypi", &up.url(), ALL),
    );
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let fx = pypi();
    let (good, bad) = (
        fx.file("alpha-2.0-py3-none-any.whl"),
        fx.file("Beta_Pkg-0.1-py3-none-any.whl"),
    );
    for f in [good, bad] {
        assert_eq!(sha256_hex(&read(&m, &f.path)), f.sha256);
        wait_uploaded(&m, &gw, f);
    }
    let out = support::run_ok(&cfg, &["verify", "--bucket"]);
    assert!(out.contains(", 0 problems"), "{out}");

    // Behind regfs's back: one object's bytes change in the bucket.
    let obj = gw.object(&bad.sha256);
    let mut bytes = std::fs::read(&obj).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&obj, &bytes).unwrap();
    let key = format!("cas/sha256/{}/{}", &bad.sha256[..2], bad.sha256);
    let out = support::run(&cfg, &["verify", "--bucket"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a corrupt object fails verify: {text}"
    );
    assert!(
        text.contains("PROBLEM: shared store") && text.contains(&key) && text.contains("corrupt"),
        "the problem names the object's key: {text}"
    );
    assert!(obj.exists(), "verify without --repair deletes nothing");

    let out = support::run(&cfg, &["verify", "--bucket", "--repair"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("deleted ") && text.contains(&key), "{text}");
    assert!(!obj.exists(), "--repair deleted the corrupt object");
    assert!(gw.object(&good.sha256).exists(), "and only it");
    let out = support::run_ok(&cfg, &["verify", "--bucket"]);
    assert!(
        out.contains(", 0 problems"),
        "clean after the repair: {out}"
    );

    // gc counts the bucket and never deletes from it.
    let out = support::run_ok(&cfg, &["gc"]);
    assert!(
        out.contains(": 1 object (") && out.contains("none deleted"),
        "{out}"
    );
    assert_eq!(gw.objects(), [gw.object(&good.sha256)]);
    // The node still serves both (from its own verified cache).
    assert_eq!(sha256_hex(&read(&m, &bad.path)), bad.sha256);
    assert_eq!(sha256_hex(&read(&m, &good.path)), good.sha256);
}

/// A node of role `role` (`follow_interval = "1s"` for followers).
fn role_node(up: &Upstream, gw: &Gateway, dir: &Path, role: &str) -> Mount {
    role_node_with(up, gw, dir, role, ALL)
}

/// The same, its mirror's keys `mirror` (`""`: lazy, every project).
fn role_node_with(up: &Upstream, gw: &Gateway, dir: &Path, role: &str, mirror: &str) -> Mount {
    std::fs::create_dir_all(dir).unwrap();
    let globals = format!(
        "role = \"{role}\"\nfollow_interval = \"1s\"\n{}",
        gw.globals(dir, "")
    );
    let cfg = config(dir, &globals, &pypi_mirror("pypi", &up.url(), mirror));
    Mount::start(dir, &cfg, "pypi")
}

#[test]
fn a_unit_one_follower_materialized_is_taken_from_the_bucket_by_the_others_and_synced_by_the_syncer()
 {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let base = scratch("s3-lazy-units");
    let gw = Gateway::start(&base);
    let syncer = role_node_with(&up, &gw, &base.join("syncer"), "syncer", "");
    syncer.wait_generation(1);
    let f1 = role_node_with(&up, &gw, &base.join("f1"), "follower", "");
    let f2 = role_node_with(&up, &gw, &base.join("f2"), "follower", "");
    f1.wait_generation(1);
    f2.wait_generation(1);
    let page = "pypi/simple/alpha/index.v1_json";
    let first = std::fs::read(f1.path(page)).unwrap();
    assert_eq!(
        up.hits("simple/alpha/"),
        1,
        "f1 materialized alpha from upstream"
    );
    // "alpha" in hex names its record.
    let record = gw.root.join("regfs/cas/follow/pypi/units/616c706861.json");
    f1.wait_for(|| record.exists(), "f1 to share alpha in the bucket");
    assert_eq!(
        std::fs::read(f2.path(page)).unwrap(),
        first,
        "f2 serves f1's page byte-identical"
    );
    assert_eq!(
        up.hits("simple/alpha/"),
        1,
        "f2 took alpha from the bucket, not upstream"
    );
    assert!(
        f2.log().contains("materialized from the shared store"),
        "{}",
        f2.log()
    );
    let wheel = fx.file("alpha-1.0-py3-none-any.whl");
    assert_eq!(sha256_hex(&read(&f2, &wheel.path)), wheel.sha256);
    // The syncer's next sync refreshes the unit the followers asked for:
    // its generation carries it, and a follower adopting it keeps alpha.
    assert!(sync_ok(&syncer).contains("generation 2"));
    assert_eq!(up.hits("simple/alpha/"), 2, "the syncer synced alpha");
    f1.wait_generation(2);
    assert_eq!(std::fs::read(f1.path(page)).unwrap(), first);
    assert!(
        !f1.log().contains("materialized from the shared store"),
        "f1's adopted generation has alpha: {}",
        f1.log()
    );
    std::fs::read(syncer.path(page)).unwrap();
    assert_eq!(
        up.hits("simple/alpha/"),
        2,
        "the syncer serves alpha from its generation"
    );
}

fn sync_ok(m: &Mount) -> String {
    let out = support::run(&m.config, &["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn generation(m: &Mount) -> u64 {
    m.status()[0]["generation"].as_u64().unwrap()
}

#[test]
fn followers_adopt_the_syncers_generations_atomically_and_keep_theirs_when_the_bucket_fails() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let base = scratch("s3-follow");
    let mut gw = Gateway::start(&base);
    let syncer = role_node(&up, &gw, &base.join("syncer"), "syncer");
    syncer.wait_generation(1);
    let f1 = role_node(&up, &gw, &base.join("f1"), "follower");
    let f2_dir = base.join("f2");
    let f2 = role_node(&up, &gw, &f2_dir, "follower");
    f1.wait_generation(1);
    f2.wait_generation(1);
    let page = "pypi/simple/alpha/index.v1_json";
    for f in [&f1, &f2] {
        assert_eq!(
            std::fs::read(f.path(page)).unwrap(),
            std::fs::read(syncer.path(page)).unwrap(),
            "a follower serves the syncer's page byte-identical"
        );
    }
    assert_eq!(
        up.hits("simple/alpha/"),
        1,
        "only the syncer asked upstream"
    );
    let refused = support::run(&f1.config, &["sync"]);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("follower"),
        "a follower refuses to sync: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let wheel = fx.file("alpha-1.0-py3-none-any.whl");
    assert_eq!(sha256_hex(&read(&f1, &wheel.path)), wheel.sha256);

    // A reader holds the old page open on a follower while the syncer
    // publishes generation 2.
    let mut held = std::fs::File::open(f1.path(page)).unwrap();
    up.remap("simple/alpha/", "v2/simple/alpha/");
    assert!(sync_ok(&syncer).contains("generation 2"));
    f1.wait_generation(2);
    f2.wait_generation(2);
    let new = std::fs::read_to_string(f1.path(page)).unwrap();
    assert!(
        !new.contains("alpha-1.0") && new.contains("alpha-2.0"),
        "{new}"
    );
    assert_eq!(new.as_bytes(), std::fs::read(syncer.path(page)).unwrap());
    let mut old = String::new();
    std::io::Read::read_to_string(&mut held, &mut old).unwrap();
    assert!(
        old.contains("alpha-1.0"),
        "the open handle reads the old page whole"
    );

    // The bucket stops: followers keep serving generation 2.
    gw.stop();
    f1.wait_for(
        || {
            f1.log()
                .contains("serving generation 2 until a new one can be adopted")
        },
        "the follower to say it keeps its generation",
    );
    assert_eq!(std::fs::read_to_string(f1.path(page)).unwrap(), new);
    // The syncer syncs meanwhile: the sync is served and says it is not
    // published; the pointer still names generation 2.
    sync_ok(&syncer);
    let said = syncer.status()[0].to_string();
    assert!(said.contains("not published for followers"), "{said}");
    gw.resume();

    // Generation 3 is published while f2 is down, and one of its metadata
    // blobs is corrupted in the bucket before f2 comes back.
    f2.stop();
    let mut gamma: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.root.join("simple/gamma/index.v1_json")).unwrap())
            .unwrap();
    gamma["files"]
        .as_array_mut()
        .unwrap()
        .retain(|f| !f["filename"].as_str().unwrap().starts_with("gamma-0.2"));
    up.fault(
        "simple/gamma/",
        support::upstream::Fault::Body(gamma.to_string().into_bytes()),
    );
    assert!(sync_ok(&syncer).contains("generation 3"));
    let gamma_page = "pypi/simple/gamma/index.v1_json";
    let published = std::fs::read(syncer.path(gamma_page)).unwrap();
    let obj = gw.object(&sha256_hex(&published));
    let mut bad = std::fs::read(&obj).unwrap();
    bad[10] ^= 0xff;
    std::fs::write(&obj, &bad).unwrap();
    let f2 = Mount::start(&f2_dir, &f2_dir.join("regfs.toml"), "pypi");
    assert_eq!(
        generation(&f2),
        2,
        "a restarted follower serves what it had at once"
    );
    f2.wait_for(
        || f2.log().contains("is missing or corrupt in the bucket"),
        "the follower to refuse the corrupt generation",
    );
    assert_eq!(generation(&f2), 2);
    assert_ne!(std::fs::read(f2.path(gamma_page)).unwrap(), published);
    // f2 reported it to the syncer, whose next publish sends it again (and
    // only it: the rest its publishes left in the bucket is not sent
    // again); f2 adopts the generation.
    let marker = gw
        .root
        .join("regfs/cas/follow/pypi/missing")
        .join(format!("sha256-{}", sha256_hex(&published)));
    assert!(marker.exists(), "f2 reported the object: {}", f2.log());
    assert!(sync_ok(&syncer).contains("unchanged"));
    let publish = syncer
        .log()
        .lines()
        .rfind(|l| l.contains("published the generation to the shared store"))
        .unwrap()
        .to_string();
    assert!(publish.contains("sent=1"), "{publish}");
    assert!(!marker.exists(), "the syncer cleared the report");
    f2.wait_generation(3);
    assert_eq!(std::fs::read(f2.path(gamma_page)).unwrap(), published);
    assert_eq!(std::fs::read(f1.path(gamma_page)).unwrap(), published);

    // A node whose mirror has another inode slot than the syncer's (a
    // mirror listed before it) refuses the generation, naming slots.json.
    let f3_dir = base.join("f3");
    std::fs::create_dir_all(&f3_dir).unwrap();
    let globals = format!(
        "role = \"follower\"\nfollow_interval = \"1s\"\n{}",
        gw.globals(&f3_dir, "")
    );
    let mirrors = pypi_mirror("first", &up.url(), ALL) + &pypi_mirror("pypi", &up.url(), ALL);
    let f3 = Mount::start(&f3_dir, &config(&f3_dir, &globals, &mirrors), "pypi");
    f3.wait_for(
        || f3.log().contains("slots.json"),
        "the follower to refuse the other slot",
    );
    assert!(f3.log().contains("inode slot"), "{}", f3.log());
    assert!(
        !f3.path(page).exists(),
        "nothing of the refused generation is served"
    );
    f3.stop();

    // The syncer restarts with an empty state_dir and publishes its
    // generation 1: followers do not go back.
    syncer.stop();
    std::fs::remove_dir_all(base.join("syncer/state")).unwrap();
    let syncer = Mount::start(
        &base.join("syncer"),
        &base.join("syncer/regfs.toml"),
        "pypi",
    );
    syncer.wait_generation(1);
    f1.wait_for(
        || f1.log().contains("not going back"),
        "the follower to refuse the older generation",
    );
    assert_eq!(generation(&f1), 3);
    assert_eq!(std::fs::read(f1.path(gamma_page)).unwrap(), published);
}
