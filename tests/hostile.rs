//! A hostile upstream: bodies that trickle or never end (and a cache disk
//! that fills up meanwhile), slow downloads that must not starve metadata,
//! compression nobody asked for, and credentials that must not leak. Each
//! test is the regression test of a finding of an adversarial pass; it
//! failed before the fix. (A second instance on the same cache and private
//! state are in `lifecycle.rs`, a client flooding the log in `faults.rs`.)

mod support;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use support::upstream::{Fault, Upstream};
use support::{Mount, config, pypi, pypi_mirror, run, scratch, sha256_hex};

const ALL: &str = r#"projects = ["alpha", "Beta_Pkg", "gamma"]"#;

/// A tmpfs of `size` mounted on `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success());
        Tmpfs(dir.to_owned())
    }

    /// Bytes in use on it (deleted files still held open count).
    fn used(&self) -> u64 {
        let c = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Runs `f` on a thread; its result, or `None` if it has not returned
/// within `secs` (a liveness bound: generous, not a performance claim).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs)).ok()
}

fn read_hash(p: PathBuf) -> String {
    sha256_hex(&std::fs::read(p).unwrap())
}

/// A PEP 691 page for `project` listing the fixture files `keep` plus
/// `extra` (filename, URL relative to the page, sha256), without sizes.
fn page(project: &str, keep: &[&str], extra: &[(&str, &str, &str)]) -> Vec<u8> {
    let fx = pypi();
    let mut files: Vec<serde_json::Value> = keep
        .iter()
        .map(|n| {
            let f = fx.file(n);
            serde_json::json!({"filename": f.filename, "url": format!("../../{}", f.path), "hashes": {"sha256": f.sha256}, "size": f.size})
        })
        .collect();
    for (name, url, sha) in extra {
        files.push(serde_json::json!({"filename": name, "url": url, "hashes": {"sha256": sha}}));
    }
    serde_json::json!({"meta": {"api-version": "1.0"}, "name": project, "files": files})
        .to_string()
        .into_bytes()
}

#[test]
fn eviction_gives_back_the_disk_space_of_what_it_evicts() {
    // Files read twice keep passthrough backing ids (and their cache files)
    // open for reuse after the last close. An eviction must close exactly
    // those of what it evicted, or the disk space never comes back.
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("evict-space");
    let cache = Tmpfs::mount(&dir.join("cache"), "16m");
    let cfg = config(&dir, "", &pypi_mirror("pypi", &up.url(), ALL));
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let wheels = ["gamma-0.1-py3-none-any.whl", "gamma-0.2-py3-none-any.whl"];
    for name in wheels {
        let f = fx.file(name);
        for _ in 0..2 {
            assert_eq!(read_hash(m.path(&format!("pypi/{}", f.path))), f.sha256);
        }
    }
    assert!(
        m.log().contains("passthrough=true"),
        "this test needs FUSE passthrough (kernel 6.9+); log:\n{}",
        m.log()
    );
    let held = cache.used();
    assert!(held > 6 << 20, "both wheels are on the disk: {held}");
    let out = run(&cfg, &["gc", "--max-size", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.wait_for(
        || cache.used() < 1 << 20,
        "the evicted wheels' disk space to come back",
    );
    // Evicted, not broken: both read again, fetched anew.
    for name in wheels {
        let f = fx.file(name);
        assert_eq!(read_hash(m.path(&format!("pypi/{}", f.path))), f.sha256);
        assert_eq!(up.hits(&f.path), 2, "{name}");
    }
}

#[test]
fn a_trickling_body_is_abandoned_and_a_sizeless_stat_returns() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("trickle");
    let cfg = config(
        &dir,
        "fetch_timeout = \"3s\"\nidle_timeout = \"3s\"\nretries = 1",
        &pypi_mirror("pypi", &up.url(), ALL),
    );
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    // A listed file (size known, Content-Length sent) at one byte a second.
    let listed = fx.file("gamma-0.1-py3-none-any.whl");
    up.fault(&listed.path, Fault::Trickle(Duration::from_secs(1)));
    let p = m.path(&format!("pypi/{}", listed.path));
    let err = within(60, move || std::fs::read(p).map(|_| ()))
        .expect("the read returned")
        .expect_err("a trickle is not served");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let st = &m.status()[0];
    assert!(
        st["counters"]["upstream_errors"]["stalled"].as_u64() >= Some(1),
        "{}",
        st["counters"]
    );
    // A sizeless link: stat itself waits for the download; it must end too.
    let tar = fx.file("alpha-1.0.tar.gz");
    up.fault(
        "simple/alpha/",
        Fault::Body(page(
            "alpha",
            &["alpha-2.0-py3-none-any.whl"],
            &[(&tar.filename, &format!("../../{}", tar.path), &tar.sha256)],
        )),
    );
    up.fault(&tar.path, Fault::Trickle(Duration::from_secs(1)));
    let out = run(&cfg, &["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = m.path(&format!("pypi/{}", tar.path));
    // Upstream's headers tell the length, so the stat may answer it at once
    // (or fail, if the trickle is abandoned first); it returns either way,
    // and the bytes that never come make the read fail.
    let q = p.clone();
    let stat = within(60, move || std::fs::metadata(q).map(|m| m.len())).expect("stat returned");
    if let Ok(len) = stat {
        assert_eq!(len, tar.size, "a size from the headers is the true one");
    }
    let err = within(60, move || std::fs::read(p).map(|_| ()))
        .expect("the read returned")
        .expect_err("a trickle is not served");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    // Upstream recovers: the same stat tells the true size.
    up.clear(&tar.path);
    assert_eq!(
        std::fs::metadata(m.path(&format!("pypi/{}", tar.path)))
            .unwrap()
            .len(),
        tar.size
    );
}

#[test]
fn slow_downloads_leave_a_permit_for_a_sync() {
    // Two slow (but not too slow) downloads on a host with two permits:
    // metadata requests keep one, so a sync finishes while both still run.
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("reserve");
    let cfg = config(
        &dir,
        "max_connections_per_host = 2",
        &pypi_mirror("pypi", &up.url(), ALL),
    );
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let wheels: Vec<_> = ["gamma-0.1-py3-none-any.whl", "gamma-0.2-py3-none-any.whl"]
        .iter()
        .map(|n| fx.file(n).clone())
        .collect();
    for f in &wheels {
        // 3 MiB at 200 kB/s: about 16 s each.
        up.fault(&f.path, Fault::Throttle(200_000));
    }
    let readers: Vec<_> = wheels
        .iter()
        .map(|f| {
            let p = m.path(&format!("pypi/{}", f.path));
            std::thread::spawn(move || read_hash(p))
        })
        .collect();
    m.wait_for(
        || wheels.iter().any(|f| up.hits(&f.path) > 0),
        "a download to start",
    );
    let out = run(&cfg, &["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        readers.iter().all(|r| !r.is_finished()),
        "a download finished before the sync did: the sync waited for its permit"
    );
    for (r, f) in readers.into_iter().zip(&wheels) {
        assert_eq!(r.join().unwrap(), f.sha256);
    }
}

#[test]
fn an_endless_body_neither_fills_the_disk_nor_empties_the_cache() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("endless");
    // The disk is far smaller than cache_max_size: it fills first.
    let cache = Tmpfs::mount(&dir.join("cache"), "12m");
    let cfg = config(
        &dir,
        "cache_max_size = \"1GiB\"",
        &pypi_mirror("pypi", &up.url(), ALL),
    );
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let kept: Vec<_> = [
        "alpha-1.0-py3-none-any.whl",
        "alpha-2.0-py3-none-any.whl",
        "alpha-2.0.tar.gz",
        "gamma-0.1-py3-none-any.whl",
        "Beta_Pkg-0.1-py3-none-any.whl",
    ]
    .iter()
    .map(|n| fx.file(n).clone())
    .collect();
    for f in &kept {
        assert_eq!(read_hash(m.path(&format!("pypi/{}", f.path))), f.sha256);
    }
    let cached_bytes: u64 = kept.iter().map(|f| f.size).sum();
    // A sizeless file whose body never ends.
    let endless = format!(
        "packages/ee/ee/{}/endless-1.0-py3-none-any.whl",
        "e".repeat(60)
    );
    let endless = endless.as_str();
    up.fault(endless, Fault::Endless);
    up.fault(
        "simple/beta-pkg/",
        Fault::Body(page(
            "Beta_Pkg",
            &["Beta_Pkg-0.1-py3-none-any.whl"],
            &[(
                "endless-1.0-py3-none-any.whl",
                &format!("../../{endless}"),
                &"e".repeat(64),
            )],
        )),
    );
    let out = run(&cfg, &["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = m.path(&format!("pypi/{endless}"));
    let err = within(120, move || std::fs::read(p).map(|_| ()))
        .expect("the read returned")
        .expect_err("an endless body is never served");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(
        m.log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains(endless)),
        "a WARN names the URL:\n{}",
        m.log()
    );
    let st = &m.status()[0];
    assert_eq!(
        st["cached"].as_u64(),
        Some(kept.len() as u64),
        "nothing was evicted for it"
    );
    m.wait_for(
        || cache.used() < cached_bytes + (1 << 20),
        "the partial download's space to come back",
    );
    // And after a restart with upstream gone, everything cached is served.
    let (dir, cfg) = (m.dir.clone(), m.config.clone());
    m.stop();
    up.set_down(true);
    let m = Mount::start(&dir, &cfg, "pypi");
    for f in &kept {
        assert_eq!(
            read_hash(m.path(&format!("pypi/{}", f.path))),
            f.sha256,
            "{}",
            f.filename
        );
    }
}

#[test]
fn compression_nobody_asked_for_is_undone_or_recognized() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("encoding");
    let cfg = config(&dir, "", &pypi_mirror("pypi", &up.url(), ALL));
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    // A server that compresses on the fly: documents and artifacts.
    up.fault("simple/gamma/", Fault::Encoded("gzip"));
    let wheel = fx.file("gamma-0.1-py3-none-any.whl");
    up.fault(&wheel.path, Fault::Encoded("gzip"));
    let small = fx.file("alpha-2.0-py3-none-any.whl");
    up.fault(&small.path, Fault::Encoded("deflate"));
    // A server that labels a stored .tar.gz with its own encoding.
    let tar = fx.file("alpha-1.0.tar.gz");
    up.fault(&tar.path, Fault::Header("Content-Encoding", "gzip".into()));
    let out = run(&cfg, &["sync"]);
    assert!(
        out.status.success(),
        "a compressed page is decoded before it is parsed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [wheel, small, tar] {
        assert_eq!(
            read_hash(m.path(&format!("pypi/{}", f.path))),
            f.sha256,
            "{}",
            f.filename
        );
    }
    let asked: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("packages/"))
        .collect();
    assert!(!asked.is_empty());
    for r in &asked {
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "accept-encoding" && v == "identity"),
            "{} {:?}",
            r.path,
            r.headers
        );
    }
    // Compressed bytes that decode to something else (another wheel) are a
    // verification failure.
    let other = fx.file("alpha-1.0-py3-none-any.whl");
    let before = m.status()[0]["counters"]["verify_failures"]
        .as_u64()
        .unwrap();
    up.remap(&other.path, &small.path);
    up.fault(&other.path, Fault::Encoded("gzip"));
    assert_eq!(
        support::errno(&m.path(&format!("pypi/{}", other.path))),
        Some(libc::EIO)
    );
    assert!(
        m.status()[0]["counters"]["verify_failures"]
            .as_u64()
            .unwrap()
            > before
    );
}

/// Every file under `dir`, recursively (not following symlinks).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn upstream_credentials_are_sent_to_their_host_and_never_published() {
    use std::os::unix::fs::PermissionsExt;
    const SECRET: &str = "s3cret-Pa55";
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    up.require_basic_auth("alice", SECRET);
    // Another host (port) that a redirect leads to: it must not get them.
    let elsewhere = Upstream::serve(&fx.root);
    let dir = scratch("credentials");
    let with_userinfo = up
        .url()
        .replace("http://", &format!("http://alice:{SECRET}@"));
    let cfg = config(&dir, "", &pypi_mirror("pypi", &with_userinfo, ALL));
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let f = fx.file("alpha-2.0-py3-none-any.whl");
    assert_eq!(read_hash(m.path(&format!("pypi/{}", f.path))), f.sha256);
    // Errors that name URLs: a failed read, a failed sync.
    let bad = fx.file("alpha-1.0-py3-none-any.whl");
    up.fault(&bad.path, Fault::Status(503));
    assert_eq!(
        support::errno(&m.path(&format!("pypi/{}", bad.path))),
        Some(libc::EIO)
    );
    up.fault("simple/gamma/", Fault::Status(500));
    let out = run(&cfg, &["sync"]);
    let sync_err = String::from_utf8_lossy(&out.stderr).into_owned();
    // The failing project fails alone (invariant 10), and is named.
    assert!(out.status.success(), "{sync_err}");
    assert!(
        sync_err.contains("gamma kept its previous contents") && sync_err.contains("simple/gamma/"),
        "{sync_err}"
    );
    up.clear("simple/gamma/");
    // A redirect to another host: followed, without the credentials.
    let moved = fx.file("Beta_Pkg-0.1-py3-none-any.whl");
    up.fault(
        &moved.path,
        Fault::Redirect(format!("{}{}", elsewhere.url(), moved.path)),
    );
    assert_eq!(
        read_hash(m.path(&format!("pypi/{}", moved.path))),
        moved.sha256
    );
    let authorized =
        |r: &support::upstream::Request| r.headers.iter().any(|(k, _)| k == "authorization");
    assert!(
        up.requests().iter().all(authorized),
        "every request to the upstream was authorized"
    );
    let there: Vec<_> = elsewhere.requests();
    assert!(
        !there.is_empty() && !there.iter().any(authorized),
        "{there:?}"
    );
    // Nowhere to be seen: logs, state files, status (both ways), CLI output.
    let status_json = std::fs::read_to_string(m.path(".regfs/status.json")).unwrap();
    assert!(
        status_json.contains("HTTP 500"),
        "the failure is reported: {status_json}"
    );
    let status_cli = String::from_utf8(run(&cfg, &["status", "--json"]).stdout).unwrap();
    let mut seen = vec![
        ("log".to_string(), m.log()),
        (".regfs/status.json".into(), status_json),
        ("regfs status".into(), status_cli),
        ("regfs sync".into(), sync_err),
    ];
    for p in files_under(&dir.join("state")) {
        if let Ok(bytes) = std::fs::read(&p) {
            seen.push((
                p.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    for (what, text) in &seen {
        assert!(!text.contains(SECRET), "the password is in {what}");
    }
    assert!(
        m.log().contains("has a user and password in its URL"),
        "a WARN recommends the credentials file:\n{}",
        m.log()
    );
    drop(m);

    // The same from a credentials file, which must be private.
    let creds = dir.join("credentials");
    std::fs::write(
        &creds,
        format!("machine 127.0.0.1\n  login alice\n  password {SECRET}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = config(
        &dir,
        &format!("credentials = \"{}\"", creds.display()),
        &pypi_mirror("pypi", &up.url(), ALL),
    );
    let out = run(&cfg, &["sync"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("credentials") && err.contains("chmod 600"),
        "a readable credentials file is refused: {err}"
    );
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let m = Mount::start(&dir, &cfg, "pypi");
    let f = fx.file("gamma-0.2-py3-none-any.whl");
    assert_eq!(read_hash(m.path(&format!("pypi/{}", f.path))), f.sha256);
    assert!(!m.log().contains(SECRET));
}
