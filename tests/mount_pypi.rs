//! Real-mount tests of a PyPI mirror: the `regfs` binary mounts over a
//! fixture upstream on 127.0.0.1 built from real wheels and sdists.

mod support;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use support::upstream::{Fault, Upstream};
use support::{Mount, config, pypi, pypi_mirror, run, run_ok, scratch, sha256_hex};

fn mount(name: &str, extra: &str) -> (Upstream, Mount) {
    let up = Upstream::serve(&pypi().root);
    let dir = scratch(name);
    let cfg = config(&dir, "", &pypi_mirror("pypi", &up.url(), extra));
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    (up, m)
}

const ALL: &str = r#"projects = ["alpha", "Beta_Pkg", "gamma"]"#;

#[test]
fn lists_reads_and_hashes_files_then_serves_them_from_the_cache() {
    let fx = pypi();
    let (up, m) = mount("read", ALL);
    let mut projects: Vec<String> = std::fs::read_dir(m.path("pypi/simple"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    projects.sort();
    assert_eq!(
        projects,
        [
            "alpha",
            "beta-pkg",
            "gamma",
            "index.html",
            "index.v1_html",
            "index.v1_json"
        ]
    );

    for f in &fx.files {
        let p = m.path(&format!("pypi/{}", f.path));
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            f.size,
            "{}: stat before read",
            f.filename
        );
        let before = up.hits(&f.path);
        let data = std::fs::read(&p).unwrap();
        assert_eq!(sha256_hex(&data), f.sha256, "{}", f.filename);
        assert_eq!(up.hits(&f.path), before + 1);
        if let (Some(mp), Some(ms)) = (&f.metadata_path, &f.metadata_sha256) {
            assert_eq!(
                sha256_hex(&std::fs::read(m.path(&format!("pypi/{mp}"))).unwrap()),
                *ms
            );
        }
    }
    let total = up.total();
    for f in &fx.files {
        assert_eq!(
            sha256_hex(&std::fs::read(m.path(&format!("pypi/{}", f.path))).unwrap()),
            f.sha256
        );
    }
    assert_eq!(up.total(), total, "second reads make no upstream request");

    // The served pages point inside the mirror, with the upstream's digests.
    let page = std::fs::read_to_string(m.path("pypi/simple/alpha/index.html")).unwrap();
    let wheel = fx.file("alpha-2.0-py3-none-any.whl");
    assert!(
        page.contains(&format!("../../{}#sha256={}", wheel.path, wheel.sha256)),
        "{page}"
    );
    assert!(page.contains("data-yanked=\"broken build\""));
    assert!(
        !page.contains("127.0.0.1"),
        "no upstream URL leaks into pages"
    );
    let st = &m.status()[0];
    assert_eq!(
        st["cached"].as_u64(),
        Some(fx.objects()),
        "artifacts and PEP 658 sidecars"
    );
    assert!(st["counters"]["hits"].as_u64().unwrap() >= fx.files.len() as u64);
}

#[test]
fn a_handle_opened_before_caching_works_beside_later_opens() {
    // The first open of an uncached file is served by regfs through the
    // page cache; the kernel refuses passthrough for an inode while such a
    // handle is open, so later opens must follow it until it closes.
    let fx = pypi();
    let (up, m) = mount("mixed-opens", ALL);
    let f = fx.file("alpha-2.0-py3-none-any.whl");
    let path = m.path(&format!("pypi/{}", f.path));
    let mut cold = std::fs::File::open(&path).unwrap();
    let mut head = vec![0u8; 10];
    cold.read_exact(&mut head).unwrap();
    let beside = std::fs::read(&path).expect("an open beside the cold handle");
    assert_eq!(sha256_hex(&beside), f.sha256);
    let mut rest = Vec::new();
    cold.read_to_end(&mut rest).unwrap();
    head.extend_from_slice(&rest);
    assert_eq!(sha256_hex(&head), f.sha256, "the cold handle reads it all");
    drop(cold);
    let after = std::fs::read(&path).expect("an open after the cold handle closed");
    assert_eq!(sha256_hex(&after), f.sha256);
    assert_eq!(up.hits(&f.path), 1);
}

#[test]
fn restart_offline_keeps_serving_the_last_generation_and_the_cache() {
    let fx = pypi();
    let (up, m) = mount("offline", ALL);
    let cached = fx.file("alpha-2.0-py3-none-any.whl");
    let uncached = fx.file("alpha-1.0-py3-none-any.whl");
    std::fs::read(m.path(&format!("pypi/{}", cached.path))).unwrap();
    let (dir, cfg) = (m.dir.clone(), m.config.clone());
    m.stop();
    up.set_down(true);
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_for(
        || m.path("pypi/simple/alpha/index.html").exists(),
        "the persisted generation",
    );
    assert_eq!(
        sha256_hex(&std::fs::read(m.path(&format!("pypi/{}", cached.path))).unwrap()),
        cached.sha256
    );
    assert_eq!(
        std::fs::metadata(m.path(&format!("pypi/{}", uncached.path)))
            .unwrap()
            .len(),
        uncached.size
    );
    let started = Instant::now();
    let err = std::fs::read(m.path(&format!("pypi/{}", uncached.path))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "an unreachable upstream fails within the bound"
    );
    // The last sync is recent, so the restart does not sync; asked to, it fails and keeps generation 1.
    let out = run(&m.config, &["sync"]);
    assert!(!out.status.success());
    let st = &m.status()[0];
    assert_eq!(st["generation"].as_u64(), Some(1));
    assert_eq!(st["sync"]["ok"], false);
    assert!(std::fs::read_dir(m.path("pypi/simple")).unwrap().count() >= 6);
}

#[test]
fn a_project_that_fails_to_sync_keeps_its_files_and_is_reported() {
    let fx = pypi();
    let (up, m) = mount("failsync", ALL);
    up.fault("simple/gamma/", Fault::Status(500));
    let out = run(&m.config, &["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the other projects synced: {stderr}");
    assert!(
        stderr.contains("gamma kept its previous contents")
            && stderr.contains("HTTP 500")
            && stderr.contains("simple/gamma/"),
        "{stderr}"
    );
    let st = &m.status()[0];
    assert_eq!(st["generation"].as_u64(), Some(1), "nothing else changed");
    assert_eq!(st["sync"]["ok"], true);
    let failed = st["sync"]["failed"].as_array().unwrap();
    assert!(
        failed.len() == 1 && failed[0].as_str().unwrap().starts_with("gamma: "),
        "{st}"
    );
    assert!(
        m.log()
            .contains("refresh failed, keeping its previous contents")
    );
    let f = fx.file("gamma-0.1-py3-none-any.whl");
    assert_eq!(
        std::fs::metadata(m.path(&format!("pypi/{}", f.path)))
            .unwrap()
            .len(),
        f.size
    );
}

#[test]
fn a_sync_swaps_atomically_and_open_handles_keep_working() {
    let fx = pypi();
    let (up, m) = mount("swap", ALL);
    let page_path = m.path("pypi/simple/alpha/index.v1_json");
    let mut old = std::fs::File::open(&page_path).unwrap();
    let old_ino = old.metadata().unwrap().ino();
    // Upstream drops alpha 1.0 from the project page.
    let mut page: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.root.join("simple/alpha/index.v1_json")).unwrap())
            .unwrap();
    page["files"]
        .as_array_mut()
        .unwrap()
        .retain(|f| !f["filename"].as_str().unwrap().starts_with("alpha-1.0"));
    up.fault("simple/alpha/", Fault::Body(page.to_string().into_bytes()));
    let out = run(&m.config, &["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("generation 2"));
    // The new generation is served at once through the running mount.
    let new_page = std::fs::read_to_string(&page_path).unwrap();
    assert!(!new_page.contains("alpha-1.0"));
    assert_ne!(std::fs::metadata(&page_path).unwrap().ino(), old_ino);
    let gone = fx.file("alpha-1.0-py3-none-any.whl");
    assert!(!m.path(&format!("pypi/{}", gone.path)).exists());
    // The handle opened before the swap still reads the old page in full.
    let mut text = String::new();
    old.read_to_string(&mut text).unwrap();
    assert!(text.contains("alpha-1.0"));
    // A second sync with nothing new builds nothing.
    let out = run(&m.config, &["sync"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unchanged"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn cooldown_hides_a_fresh_upload() {
    let fx = pypi();
    let fresh = fx.file("gamma-0.2-py3-none-any.whl");
    let old = fx.file("gamma-0.1-py3-none-any.whl");
    let age = regfs_now() - parse_time(&fresh.upload_time);
    // Anything uploaded within the last (age + 1h) is hidden: gamma 0.2 is, January 2024 is not.
    let (_up, m) = mount(
        "cooldown",
        &format!("{ALL}\ncooldown = \"{}s\"", age + 3600),
    );
    let page = std::fs::read_to_string(m.path("pypi/simple/gamma/index.html")).unwrap();
    assert!(!page.contains(&fresh.filename), "{page}");
    assert!(page.contains(&old.filename));
    assert!(!m.path(&format!("pypi/{}", fresh.path)).exists());
}

fn regfs_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn parse_time(s: &str) -> i64 {
    regfs::timestamp::parse_rfc3339(s).unwrap()
}

#[test]
fn sigterm_unmounts_even_while_the_mount_is_busy() {
    let (_up, m) = mount("busy", ALL);
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .current_dir(m.path("pypi/simple"))
        .spawn()
        .unwrap();
    let mnt = m.mnt.clone();
    m.stop(); // panics if the mountpoint is left mounted
    assert!(
        std::fs::read_dir(&mnt).unwrap().next().is_none(),
        "the mountpoint is an empty directory again"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_running_mount_syncs_on_its_interval() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("interval");
    let cfg = config(
        &dir,
        "",
        &pypi_mirror("pypi", &up.url(), ALL)
            .replace("sync_interval = \"1h\"", "sync_interval = \"10s\""),
    );
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let mut page: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.root.join("simple/gamma/index.v1_json")).unwrap())
            .unwrap();
    page["files"].as_array_mut().unwrap().truncate(1);
    up.fault("simple/gamma/", Fault::Body(page.to_string().into_bytes()));
    // 10 s ± 10% later the mount notices by itself.
    m.wait_generation(2);
    let listing = std::fs::read_to_string(m.path("pypi/simple/gamma/index.html")).unwrap();
    assert_eq!(listing.matches("<a ").count(), 1);
}

#[test]
fn additive_retention_keeps_a_removed_version_while_it_is_cached() {
    let fx = pypi();
    let (up, m) = mount("retain", &format!("{ALL}\nretain = \"additive\""));
    let kept = fx.file("alpha-1.0-py3-none-any.whl");
    let uncached = fx.file("alpha-1.0.tar.gz");
    assert_eq!(
        sha256_hex(&std::fs::read(m.path(&format!("pypi/{}", kept.path))).unwrap()),
        kept.sha256
    );
    // Upstream drops alpha 1.0: its pages no longer list it, its files are gone.
    up.remap("simple/alpha/", "v2/simple/alpha/");
    up.fault(&kept.path, Fault::Status(404));
    up.fault(&uncached.path, Fault::Status(404));
    let sync = |what: &str| {
        let out = run(&m.config, &["sync"]);
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(sync("the removal").contains("generation 2"));
    let html = std::fs::read_to_string(m.path("pypi/simple/alpha/index.html")).unwrap();
    assert!(
        html.contains(&format!("../../{}#sha256={}", kept.path, kept.sha256)),
        "the cached wheel stays listed with its digest: {html}"
    );
    assert!(
        !html.contains(&uncached.filename),
        "the uncached sdist goes: {html}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.path("pypi/simple/alpha/index.v1_json")).unwrap())
            .unwrap();
    let names: Vec<&str> = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&kept.filename.as_str()) && !names.contains(&uncached.filename.as_str()),
        "{json}"
    );
    assert!(
        json["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "1.0"),
        "{json}"
    );
    let before = up.hits(&kept.path);
    assert_eq!(
        sha256_hex(&std::fs::read(m.path(&format!("pypi/{}", kept.path))).unwrap()),
        kept.sha256,
        "the retained wheel reads from the cache"
    );
    assert_eq!(up.hits(&kept.path), before);
    assert!(!m.path(&format!("pypi/{}", uncached.path)).exists());
    m.expect_retained(1);
    // Evicted from the cache: gone at the next generation.
    run_ok(&m.config, &["gc", "--max-size", "1"]);
    assert!(sync("after the eviction").contains("generation 3"));
    let html = std::fs::read_to_string(m.path("pypi/simple/alpha/index.html")).unwrap();
    assert!(!html.contains(&kept.filename), "{html}");
    assert!(!m.path(&format!("pypi/{}", kept.path)).exists());
    m.expect_retained(0);
}

#[test]
fn mirror_retention_drops_a_removed_version_even_when_cached() {
    let fx = pypi();
    let (up, m) = mount("retain-mirror", &format!("{ALL}\nretain = \"mirror\""));
    let f = fx.file("alpha-1.0-py3-none-any.whl");
    std::fs::read(m.path(&format!("pypi/{}", f.path))).unwrap();
    up.remap("simple/alpha/", "v2/simple/alpha/");
    run_ok(&m.config, &["sync"]);
    let html = std::fs::read_to_string(m.path("pypi/simple/alpha/index.html")).unwrap();
    assert!(!html.contains(&f.filename), "{html}");
    assert!(!m.path(&format!("pypi/{}", f.path)).exists());
}

#[test]
fn an_immediate_additive_mirror_keeps_its_retained_files_through_eviction() {
    let fx = pypi();
    let (up, m) = mount(
        "retain-immediate",
        &format!("{ALL}\nretain = \"additive\"\ndownload = \"immediate\""),
    );
    let all = fx.objects();
    m.wait_for(
        || m.status()[0]["cached"].as_u64() == Some(all),
        "every artifact to be cached",
    );
    let removed: Vec<_> = fx
        .files
        .iter()
        .filter(|f| f.project == "alpha" && f.version == "1.0")
        .collect();
    assert_eq!(removed.len(), 2, "alpha 1.0's wheel and sdist");
    up.remap("simple/alpha/", "v2/simple/alpha/");
    for f in &removed {
        up.fault(&f.path, Fault::Status(404));
    }
    run_ok(&m.config, &["sync"]);
    assert_eq!(
        m.status()[0]["retained"].as_u64(),
        Some(1),
        "one version, two files"
    );
    // Evict all the cache will let go: the retained files are held.
    m.evict_all_and_sync();
    let html = std::fs::read_to_string(m.path("pypi/simple/alpha/index.html")).unwrap();
    for f in &removed {
        assert!(
            html.contains(&format!("../../{}#sha256={}", f.path, f.sha256)),
            "{}: {html}",
            f.filename
        );
        assert_eq!(
            sha256_hex(&std::fs::read(m.path(&format!("pypi/{}", f.path))).unwrap()),
            f.sha256
        );
        assert_eq!(
            up.hits(&f.path),
            1,
            "{}: fetched once, by the first pass",
            f.filename
        );
    }
    m.expect_retained(1);
}
