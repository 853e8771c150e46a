//! Operating a running mount: verify/repair, prefetch, gc, the metrics
//! endpoint and `.regfs/status.json`.

mod support;

use std::process::Output;

use support::upstream::Upstream;
use support::{Mount, config, pypi, pypi_mirror, pypi_mount, regfs, scratch, sha256_hex};

const ALL: &str = r#"projects = ["alpha", "Beta_Pkg", "gamma"]"#;

fn run(m: &Mount, args: &[&str]) -> (Output, String) {
    let out = regfs()
        .args(args)
        .arg("--config")
        .arg(&m.config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// Flips one bit of the cache object with this SHA-256; returns its path.
fn rot_object(dir: &std::path::Path, sha256: &str) -> std::path::PathBuf {
    let obj = dir.join(format!(
        "cache/objects/sha256/{}/{}",
        &sha256[..2],
        &sha256[2..]
    ));
    let mut bytes = std::fs::read(&obj).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&obj, bytes).unwrap();
    obj
}

#[test]
fn verify_finds_corrupt_and_unowned_objects_and_repair_removes_them() {
    let fx = pypi();
    let (_up, m) = pypi_mount("verify", "", ALL);
    let dir = m.dir.clone();
    let f = fx.file("alpha-2.0-py3-none-any.whl");
    std::fs::read(m.path(&format!("pypi/{}", f.path))).unwrap();
    std::fs::read(m.path(&format!(
        "pypi/{}",
        fx.file("alpha-1.0-py3-none-any.whl").path
    )))
    .unwrap();
    let (out, text) = run(&m, &["verify"]);
    assert!(out.status.success(), "{text}");

    // Bit rot in one object, and a stray object nobody owns.
    let obj = rot_object(&dir, &f.sha256);
    let stray = sha256_hex(b"stray");
    let stray_path = dir.join(format!(
        "cache/objects/sha256/{}/{}",
        &stray[..2],
        &stray[2..]
    ));
    std::fs::create_dir_all(stray_path.parent().unwrap()).unwrap();
    std::fs::write(&stray_path, b"stray").unwrap();
    // The running mount only learns of the stray object on restart.
    let (dir, cfg) = (m.dir.clone(), m.config.clone());
    drop(m);
    let m = Mount::start(&dir, &cfg, "pypi");

    let (out, text) = run(&m, &["verify"]);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("corrupt") && text.contains(&f.sha256[2..]),
        "{text}"
    );
    assert!(
        text.contains("not owned by any mirror") && text.contains(&stray[2..]),
        "{text}"
    );
    assert!(
        obj.exists() && stray_path.exists(),
        "verify alone changes nothing"
    );

    let (out, text) = run(&m, &["verify", "--repair"]);
    assert!(
        !out.status.success(),
        "problems were found, even if repaired: {text}"
    );
    assert!(!obj.exists() && !stray_path.exists(), "{text}");
    let (out, text) = run(&m, &["verify"]);
    assert!(out.status.success(), "{text}");
    // The removed artifact is fetched and verified again on the next read.
    assert_eq!(
        sha256_hex(&std::fs::read(m.path(&format!("pypi/{}", f.path))).unwrap()),
        f.sha256
    );
}

#[test]
fn repair_stops_a_running_mount_serving_a_corrupt_object_it_read_before() {
    // A file read twice has a passthrough backing id that regfs keeps for
    // reuse after the last close. Bit rot found by verify --repair must not
    // keep reaching readers through it.
    let fx = pypi();
    let (_up, m) = pypi_mount("repair-live", "", ALL);
    let f = fx.file("alpha-2.0-py3-none-any.whl");
    let path = m.path(&format!("pypi/{}", f.path));
    for _ in 0..2 {
        assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), f.sha256);
    }
    rot_object(&m.dir, &f.sha256);
    let (out, text) = run(&m, &["verify", "--repair"]);
    assert!(!out.status.success() && text.contains("corrupt"), "{text}");
    assert_eq!(
        sha256_hex(&std::fs::read(&path).unwrap()),
        f.sha256,
        "after repair the next read fetches and verifies the artifact again"
    );
}

#[test]
fn prefetch_downloads_a_chosen_subset_and_gc_evicts_down_to_a_size() {
    let fx = pypi();
    let (up, m) = pypi_mount("prefetch", "", ALL);
    let (out, text) = run(&m, &["prefetch", "pypi", "packages/*/gamma-*.whl"]);
    assert!(out.status.success(), "{text}");
    for f in &fx.files {
        let expect = usize::from(f.project == "gamma");
        assert_eq!(up.hits(&f.path), expect, "{}", f.filename);
    }
    assert!(text.contains("prefetch: 2 objects checked"), "{text}");
    let st = &m.status()[0];
    assert_eq!(st["cached"].as_u64(), Some(2));
    // Reads of prefetched files are cache hits.
    std::fs::read(m.path(&format!(
        "pypi/{}",
        fx.file("gamma-0.1-py3-none-any.whl").path
    )))
    .unwrap();
    assert_eq!(up.hits(&fx.file("gamma-0.1-py3-none-any.whl").path), 1);

    let (out, text) = run(&m, &["prefetch", "pypi"]);
    assert!(out.status.success(), "{text}");
    let total: u64 = m.status()[0]["cached_bytes"].as_u64().unwrap();
    assert!(total > 6_000_000);
    let (out, text) = run(&m, &["gc", "--max-size", "100KiB"]);
    assert!(out.status.success(), "{text}");
    assert!(
        m.status()[0]["cached_bytes"].as_u64().unwrap() <= 100 * 1024,
        "{text}"
    );
    let (out, text) = run(&m, &["gc", "--max-size", "lots"]);
    assert!(
        !out.status.success() && text.contains("--max-size"),
        "{text}"
    );
}

#[test]
fn metrics_and_status_json_report_what_happened() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("metrics");
    let port = support::free_port();
    let cfg = config(
        &dir,
        &format!("metrics_listen = \"127.0.0.1:{port}\""),
        &pypi_mirror("pypi", &up.url(), ALL),
    );
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let f = fx.file("alpha-2.0-py3-none-any.whl");
    std::fs::read(m.path(&format!("pypi/{}", f.path))).unwrap();
    std::fs::read(m.path(&format!("pypi/{}", f.path))).unwrap();

    let scrape = std::process::Command::new("curl")
        .args(["-fsS", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    assert!(scrape.status.success());
    let text = String::from_utf8(scrape.stdout).unwrap();
    for line in [
        "regfs_opens_total{mirror=\"pypi\",result=\"miss\"} 1",
        "regfs_fetches_total{mirror=\"pypi\"} 1",
        "regfs_last_sync_success{mirror=\"pypi\"} 1",
        "regfs_generation{mirror=\"pypi\"} 1",
        "# TYPE regfs_cache_bytes gauge",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(
        text.contains("regfs_fuse_requests_total{op=\"lookup\"}"),
        "{text}"
    );

    let listing: Vec<String> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(listing.contains(&".regfs".to_string()), "{listing:?}");
    let status = m.path(".regfs/status.json");
    let bytes = std::fs::read(&status).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v[0]["name"], "pypi");
    assert_eq!(v[0]["counters"]["fetches"], 1);
    assert!(std::fs::metadata(&status).unwrap().len() > 100);
    assert_eq!(
        std::fs::write(&status, b"x").unwrap_err().raw_os_error(),
        Some(libc::EROFS)
    );
}

#[test]
fn immediate_download_fetches_each_new_generation_in_the_background() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let slow = fx.file("gamma-0.1-py3-none-any.whl");
    up.fault(&slow.path, support::upstream::Fault::Throttle(1_000_000));
    let dir = scratch("immediate");
    let cfg = config(
        &dir,
        "",
        &pypi_mirror(
            "pypi",
            &up.url(),
            &format!("{ALL}\ndownload = \"immediate\""),
        ),
    );
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let all = fx.objects();
    // While the throttled wheel trickles in, status shows the pass in flight.
    m.wait_for(
        || {
            m.status()[0]["activity"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|t| t["what"] == "prefetch" && t["total"] == all)
            })
        },
        "prefetch progress in status",
    );
    m.wait_for(
        || m.status()[0]["cached"].as_u64() == Some(all),
        "every artifact to be cached",
    );
    for f in &fx.files {
        assert_eq!(up.hits(&f.path), 1, "{}", f.filename);
    }
    assert!(
        m.status()[0]["activity"].as_array().unwrap().is_empty(),
        "the pass is over"
    );
    // Reads are all cache hits now.
    std::fs::read(m.path(&format!("pypi/{}", slow.path))).unwrap();
    assert_eq!(up.hits(&slow.path), 1);
    assert_eq!(m.status()[0]["counters"]["misses"].as_u64(), Some(0));
}
