//! Faults and attacks: every upstream fault gives readers a clean EIO
//! within the configured bound (never a corrupt byte), is counted, and
//! heals once upstream does; crashes leave nothing partial; a full cache
//! disk evicts instead of failing; hostile metadata is rejected entry by
//! entry; other users may read but never change anything, nor flood the log.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::upstream::{Fault, Upstream};
use support::{Mount, config, pypi, pypi_mirror, pypi_mount, regfs, run, scratch, sha256_hex};

const ALL: &str = r#"projects = ["alpha", "Beta_Pkg", "gamma"]"#;
/// Tight bounds so faults resolve quickly: 2 attempts, 2 s stall, 3 s headers.
const TIGHT: &str = "fetch_timeout = \"3s\"\nidle_timeout = \"2s\"\nretries = 1\n";

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .map(|v| v.trim().trim_end_matches(" kB").parse().unwrap())
        })
        .unwrap()
}

#[test]
fn upstream_faults_give_clean_errors_while_other_readers_run() {
    let fx = pypi();
    let (up, m) = pypi_mount("faults", TIGHT, ALL);
    // Readers of cached files keep going throughout, checking every byte.
    let warm: Vec<_> = [
        "alpha-2.0-py3-none-any.whl",
        "Beta_Pkg-0.1-py3-none-any.whl",
    ]
    .iter()
    .map(|n| fx.file(n).clone())
    .collect();
    for f in &warm {
        std::fs::read(m.path(&format!("pypi/{}", f.path))).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..4)
        .map(|i| {
            let (stop, reads, f, mnt) = (
                stop.clone(),
                reads.clone(),
                warm[i % 2].clone(),
                m.mnt.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let data = std::fs::read(mnt.join(format!("pypi/{}", f.path)))
                        .expect("a cached read never fails");
                    assert_eq!(
                        sha256_hex(&data),
                        f.sha256,
                        "a cached read is never corrupt"
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let victim = fx.file("alpha-1.0-py3-none-any.whl");
    let redirect_to = format!("/{}", victim.path);
    let body = std::fs::read(fx.root.join(&victim.path)).unwrap();
    let cases: Vec<(&str, Fault, &str)> = vec![
        ("corrupt body", Fault::Corrupt, "verify"),
        (
            "wrong length",
            Fault::Body(body[..body.len() - 7].to_vec()),
            "verify",
        ),
        ("cut mid-body", Fault::Cut(300), "transport"),
        ("stalled body", Fault::Stall(300), "stalled"),
        ("503", Fault::Status(503), "status"),
        ("404 for a listed file", Fault::Status(404), "not_found"),
        ("redirect loop", Fault::Redirect(redirect_to), "transport"),
        (
            "slow headers",
            Fault::Delay(Duration::from_secs(5)),
            "timeout",
        ),
    ];
    let path = m.path(&format!("pypi/{}", victim.path));
    let mut table = Vec::new();
    for (what, fault, kind) in cases {
        up.fault(&victim.path, fault);
        let before = m.status()[0]["counters"]["upstream_errors"][kind]
            .as_u64()
            .unwrap_or(0);
        let started = Instant::now();
        let err = std::fs::read(&path).expect_err(what);
        let took = started.elapsed();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{what}: {err}");
        assert!(
            took < Duration::from_secs(20),
            "{what}: EIO only after {took:?}"
        );
        let st = &m.status()[0];
        assert_eq!(
            st["cached"].as_u64(),
            Some(2),
            "{what}: nothing partial is cached"
        );
        assert!(
            st["counters"]["upstream_errors"][kind]
                .as_u64()
                .unwrap_or(0)
                > before,
            "{what}: counted as {kind}: {}",
            st["counters"]
        );
        table.push(format!(
            "{what:<24} EIO after {:>5} ms, counted as {kind}",
            took.as_millis()
        ));
        up.clear(&victim.path);
    }
    // Upstream recovered: the same file now reads, verified.
    assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), victim.sha256);
    // A 503 that clears within the retries is invisible to the reader.
    let other = fx.file("alpha-2.0.tar.gz");
    up.fault(&other.path, Fault::Status(503));
    let heal = {
        let up_path = other.path.clone();
        let up = &up;
        std::thread::scope(|s| {
            s.spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                up.clear(&up_path);
            });
            std::fs::read(m.path(&format!("pypi/{}", other.path)))
        })
    };
    assert_eq!(
        sha256_hex(&heal.unwrap()),
        other.sha256,
        "retried after the 503"
    );
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) > 100);
    eprintln!("{}", table.join("\n"));
    assert!(
        m.status()[0]["counters"]["verify_failures"]
            .as_u64()
            .unwrap()
            >= 2
    );
}

#[test]
fn a_fallback_upstream_serves_when_the_first_is_down() {
    let fx = pypi();
    let (a, b) = (Upstream::serve(&fx.root), Upstream::serve(&fx.root));
    let dir = scratch("fallback");
    let mirror = pypi_mirror("pypi", &a.url(), ALL).replace(
        &format!("upstream = \"{}\"", a.url()),
        &format!("upstream = [\"{}\", \"{}\"]", a.url(), b.url()),
    );
    let cfg = config(&dir, TIGHT, &mirror);
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    a.set_down(true);
    let f = fx.file("gamma-0.1-py3-none-any.whl");
    assert_eq!(
        sha256_hex(&std::fs::read(m.path(&format!("pypi/{}", f.path))).unwrap()),
        f.sha256
    );
    assert_eq!(
        b.hits(&f.path),
        1,
        "the artifact came from the second upstream"
    );
    let out = run(&cfg, &["sync"]);
    assert!(
        out.status.success(),
        "a sync falls back too: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kill_9_during_a_download_and_during_a_sync_loses_nothing() {
    let fx = pypi();
    let (up, m) = pypi_mount("kill9", "", ALL);
    let dir = m.dir.clone();
    let big = fx.file("gamma-0.1-py3-none-any.whl");
    up.fault(&big.path, Fault::Throttle(500_000));
    let path = m.path(&format!("pypi/{}", big.path));
    let reader = std::thread::spawn(move || std::fs::read(path));
    m.wait_for(
        || {
            std::fs::read_dir(dir.join("cache/tmp"))
                .unwrap()
                .next()
                .is_some()
        },
        "a download in progress",
    );
    // SIGKILL: the mount is left behind, the download half done.
    let (d, c) = (m.dir.clone(), m.config.clone());
    unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) };
    assert!(
        reader.join().unwrap().is_err(),
        "the reader gets an error, not partial bytes"
    );
    std::mem::forget(m);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts.contains(&format!("{} ", d.join("mnt").display())),
        "the dead regfs left its mount behind"
    );
    up.clear(&big.path);
    let m = Mount::start(&d, &c, "pypi");
    assert!(m.log().contains("clearing the stale mount"), "{}", m.log());
    assert_eq!(
        std::fs::read_dir(d.join("cache/tmp")).unwrap().count(),
        0,
        "the partial download was removed"
    );
    assert_eq!(m.status()[0]["cached"].as_u64(), Some(0));
    assert_eq!(
        sha256_hex(&std::fs::read(m.path(&format!("pypi/{}", big.path))).unwrap()),
        big.sha256
    );

    // SIGKILL in the middle of a sync: the previous generation is served after restart.
    up.fault("simple/gamma/", Fault::Delay(Duration::from_secs(30)));
    let sync = std::thread::spawn({
        let c = c.clone();
        move || regfs().args(["sync", "--config"]).arg(&c).output()
    });
    std::thread::sleep(Duration::from_millis(800));
    unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) };
    let _ = sync.join();
    std::mem::forget(m);
    up.clear("simple/gamma/");
    let m = Mount::start(&d, &c, "pypi");
    let st = &m.status()[0];
    assert_eq!(
        st["generation"].as_u64(),
        Some(1),
        "the interrupted sync left generation 1 in place"
    );
    assert!(m.path("pypi/simple/gamma/index.html").exists());
    let leftovers: Vec<_> = std::fs::read_dir(d.join("state/mirrors/pypi"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_full_cache_disk_evicts_and_keeps_serving() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("enospc");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    // 5 MiB of disk, far below cache_max_size: the filesystem fills first.
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=5m", "tmpfs"])
        .arg(&cache)
        .status()
        .unwrap();
    assert!(st.success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _tmpfs = Unmount(cache.clone());
    let cfg = config(
        &dir,
        "cache_max_size = \"1GiB\"",
        &pypi_mirror("pypi", &up.url(), ALL),
    );
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let small = fx.file("alpha-2.0-py3-none-any.whl");
    let read = |f: &support::FixtureFile| {
        sha256_hex(&std::fs::read(m.path(&format!("pypi/{}", f.path))).unwrap())
    };
    assert_eq!(read(small), small.sha256);
    // Two 3 MiB wheels do not fit together: the second evicts the first.
    for name in [
        "gamma-0.1-py3-none-any.whl",
        "gamma-0.2-py3-none-any.whl",
        "gamma-0.1-py3-none-any.whl",
    ] {
        let f = fx.file(name);
        assert_eq!(read(f), f.sha256, "{name}");
        assert_eq!(
            read(small),
            small.sha256,
            "a cached small file is still served"
        );
    }
    let errors = &m.status()[0]["counters"]["upstream_errors"];
    assert!(
        errors["store"].as_u64().unwrap_or(0) >= 1,
        "ENOSPC was met and counted: {errors}"
    );
    let out = run(&cfg, &["verify"]);
    assert!(
        out.status.success(),
        "no corrupt entry: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn hostile_metadata_is_rejected_and_the_rest_keeps_working() {
    let fx = pypi();
    let (up, m) = pypi_mount("hostile", "", ALL);
    let (dir, cfg) = (m.dir.clone(), m.config.clone());
    let good = fx.file("alpha-2.0-py3-none-any.whl");
    let sha = |c: char| std::iter::repeat_n(c, 64).collect::<String>();
    let file = |name: &str, url: &str, hash: &str| serde_json::json!({"filename": name, "url": url, "hashes": {"sha256": hash}, "size": 10});
    let page = serde_json::json!({
        "meta": {"api-version": "1.1"}, "name": "alpha", "versions": ["2.0"],
        "files": [
            serde_json::json!({"filename": good.filename, "url": format!("../../{}", good.path), "hashes": {"sha256": good.sha256}, "size": good.size}),
            file("../../../../etc/passwd", "../../x/a", &sha('a')),
            file("/etc/shadow", "../../x/b", &sha('b')),
            file("a/b.whl", "../../x/c", &sha('c')),
            file("nul\u{0}.whl", "../../x/d", &sha('d')),
            file("ctl\u{7}.whl", "../../x/e", &sha('e')),
            file(&"l".repeat(300), "../../x/f", &sha('f')),
            file("short.whl", "../../x/g", "abcd"),
            file("twice.whl", "../../packages/aa/bb/cc/twice.whl", &sha('1')),
            file("twice.whl", "../../packages/aa/bb/cc/twice.whl", &sha('2')),
        ]
    });
    up.fault("simple/alpha/", Fault::Body(page.to_string().into_bytes()));
    // And a page too deeply nested to parse at all.
    up.fault(
        "simple/gamma/",
        Fault::Body(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes()),
    );
    let out = run(&cfg, &["sync"]);
    let err = String::from_utf8_lossy(&out.stderr);
    // Invariant 10: the unparsable project keeps its contents, is named,
    // and the others update.
    assert!(
        out.status.success()
            && err.contains("gamma kept its previous contents")
            && err.contains("simple/gamma/"),
        "an unparsable page fails its project alone, naming it: {err}"
    );
    assert_eq!(m.status()[0]["generation"].as_u64(), Some(2));
    assert!(
        std::fs::read_dir(m.path("pypi/simple/gamma"))
            .unwrap()
            .count()
            > 0,
        "gamma is still served from the generation before"
    );
    up.clear("simple/gamma/");
    let out = run(&cfg, &["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = std::fs::read_to_string(m.path("pypi/simple/alpha/index.html")).unwrap();
    assert_eq!(
        listing.matches("<a ").count(),
        1,
        "only the good file is listed: {listing}"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(m.path(&format!("pypi/{}", good.path))).unwrap()),
        good.sha256
    );
    let log = m.log();
    assert!(
        log.contains("skipping file with an unusable name")
            && log.contains("listed twice with different digests"),
        "rejections are logged"
    );
    // Nothing escaped: the only files regfs wrote are under its directories.
    assert!(!std::path::Path::new("/etc/shadow.whl").exists());
    for f in ["mnt", "cache", "state"] {
        assert!(dir.join(f).exists());
    }
}

#[test]
fn other_users_can_read_but_never_change_anything() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("users");
    // `nobody` must be able to reach the mountpoint.
    let mut p = dir.clone();
    loop {
        std::process::Command::new("chmod")
            .arg("a+x")
            .arg(&p)
            .status()
            .unwrap();
        if !p.pop() || p.as_os_str().is_empty() {
            break;
        }
    }
    let cfg = config(&dir, "", &pypi_mirror("pypi", &up.url(), ALL));
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let f = fx.file("alpha-2.0-py3-none-any.whl");
    let p = m.path(&format!("pypi/{}", f.path));
    let as_nobody = |cmd: &str| {
        std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", "sh", "-c", cmd])
            .output()
            .unwrap()
    };
    let out = as_nobody(&format!("sha256sum {}", p.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&f.sha256));
    for cmd in [
        format!("echo x > {}", p.display()),
        format!("touch {}/x", m.path("pypi/simple").display()),
        format!("rm -f {}", p.display()),
        format!("chmod 777 {}", p.display()),
    ] {
        let out = as_nobody(&cmd);
        assert!(!out.status.success(), "{cmd} must fail");
    }
    assert_eq!(sha256_hex(&std::fs::read(&p).unwrap()), f.sha256);
}

#[test]
fn ten_thousand_open_files_and_a_thousand_cold_reads_keep_memory_bounded() {
    let fx = pypi();
    let (up, m) = pypi_mount("memory", "", ALL);
    let limit = libc::rlimit {
        rlim_cur: 20_000,
        rlim_max: 20_000,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let base = rss_kib(m.pid());
    // 1,000 concurrent cold reads of the fixture's files (one GET each).
    let files: Vec<_> = fx.files.clone();
    let readers: Vec<_> = (0..1000)
        .map(|i| {
            let (f, mnt) = (files[i % files.len()].clone(), m.mnt.clone());
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(
                    move || match std::fs::read(mnt.join(format!("pypi/{}", f.path))) {
                        Ok(data) if sha256_hex(&data) == f.sha256 => Ok(()),
                        Ok(_) => Err(format!("{}: corrupt", f.filename)),
                        Err(e) => Err(format!("{}: {e}", f.filename)),
                    },
                )
                .unwrap()
        })
        .collect();
    let failed: Vec<String> = readers
        .into_iter()
        .filter_map(|r| r.join().unwrap().err())
        .collect();
    let warnings: Vec<String> = m
        .log()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .map(str::to_string)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 1000 cold reads failed, e.g. {:?}; warnings:\n{}",
        failed.len(),
        &failed[..failed.len().min(3)],
        warnings.join("\n")
    );
    for f in &fx.files {
        assert_eq!(up.hits(&f.path), 1, "{}", f.filename);
    }
    // 10,000 handles open at once.
    let open: Vec<_> = (0..10_000)
        .map(|i| {
            std::fs::File::open(m.path(&format!("pypi/{}", files[i % files.len()].path))).unwrap()
        })
        .collect();
    let peak = rss_kib(m.pid());
    drop(open);
    eprintln!(
        "regfs RSS: {base} KiB at rest, {peak} KiB with 10,000 open files after 1,000 concurrent cold reads"
    );
    assert!(
        peak < base + 100 * 1024,
        "memory stays bounded: {base} -> {peak} KiB"
    );
}

#[test]
fn no_client_can_flood_the_log() {
    use std::os::fd::AsRawFd;
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("flood");
    let cfg = config(&dir, "retries = 0", &pypi_mirror("pypi", &up.url(), ALL));
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let before = m.log().len();
    // lsattr-style ioctls on a directory and on a file, 20,000 of them.
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    let f = fx.file("alpha-2.0-py3-none-any.whl");
    let targets = [
        std::fs::File::open(m.path("pypi/simple")).unwrap(),
        std::fs::File::open(m.path(&format!("pypi/{}", f.path))).unwrap(),
    ];
    for i in 0..20_000 {
        let mut flags: libc::c_long = 0;
        let r = unsafe { libc::ioctl(targets[i % 2].as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) };
        assert_eq!(r, -1);
    }
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENOTTY)
    );
    // 300 reads of a file upstream has lost: each is an EIO with a reason.
    let gone = fx.file("alpha-1.0-py3-none-any.whl");
    up.fault(&gone.path, Fault::Status(404));
    for _ in 0..300 {
        assert_eq!(
            support::errno(&m.path(&format!("pypi/{}", gone.path))),
            Some(libc::EIO)
        );
    }
    let log = m.log()[before..].to_string();
    let warns = log.lines().filter(|l| l.contains("WARN")).count();
    assert!(
        log.len() < 64 << 10 && warns < 50,
        "{} bytes, {warns} WARN lines logged:\n{}",
        log.len(),
        &log[..log.len().min(4000)]
    );
    assert!(log.contains(&gone.path), "the reason is still logged");
    assert!(log.contains("suppressed"), "and what was left out is said");
}
