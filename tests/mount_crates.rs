//! Real-mount tests of a crates.io sparse-index mirror over a fixture
//! registry whose .crate files are made by `cargo package` at test time,
//! served on 127.0.0.1.

mod support;

use support::upstream::Fault;
use support::upstream::Upstream;
use support::{Mount, crates, crates_mirror, errno, mount_over, run_ok, sha256_hex};

fn mount(name: &str, extra: &str) -> (Upstream, Mount) {
    mount_over(name, &crates().root, "crates", |up| {
        crates_mirror("crates", up, extra)
    })
}

#[test]
fn index_files_and_crates_resolve_on_lookup_and_match_upstream() {
    let fx = crates();
    let (up, m) = mount("crates-read", "");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.path("crates/index/config.json")).unwrap())
            .unwrap();
    assert_eq!(
        cfg["dl"], "http://mirror.example/crates/dl/{crate}/{crate}-{version}.crate",
        "dl points at the mirror"
    );
    assert!(cfg.get("api").is_none());
    for shard in [
        "1/q",
        "2/rd",
        "3/f/fxa",
        "re/gf/regfs-demo-leaf",
        "re/gf/regfs-demo-core",
    ] {
        assert_eq!(
            std::fs::read(m.path(&format!("crates/index/{shard}"))).unwrap(),
            std::fs::read(fx.root.join("index").join(shard)).unwrap(),
            "{shard} is byte-identical"
        );
    }
    for (path, want) in fx.manifest["files"].as_object().unwrap() {
        if path.contains("tampered") {
            continue;
        }
        let p = m.path(&format!("crates/{path}"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            want["size"].as_u64().unwrap(),
            "stat tells the truth: {path}"
        );
        assert_eq!(
            sha256_hex(&std::fs::read(&p).unwrap()),
            want["sha256"].as_str().unwrap()
        );
    }
    // A crate reached through dl/ first materializes the same way.
    let before = up.total();
    assert_eq!(
        errno(&m.path("crates/index/no/-s/no-such-crate")),
        Some(libc::ENOENT)
    );
    assert!(up.total() > before);
    let asked = up.total();
    assert_eq!(
        errno(&m.path("crates/index/no/-s/no-such-crate")),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno(&m.path("crates/dl/no-such-crate/no-such-crate-1.0.0.crate")),
        Some(libc::ENOENT)
    );
    assert_eq!(up.total(), asked, "a known miss asks upstream nothing");
    assert_eq!(
        errno(&m.path("crates/index/se/rd/syn")),
        Some(libc::ENOENT),
        "wrong shard"
    );
    assert_eq!(up.total(), asked, "nor does a path that cannot hold it");
    m.stop();
}

#[test]
fn a_crate_that_does_not_match_its_cksum_is_eio_and_not_cached() {
    let (up, m) = mount("crates-bad", "crates = [\"regfs-demo-*\"]");
    let p = m.path("crates/dl/regfs-demo-tampered/regfs-demo-tampered-0.1.0.crate");
    assert_eq!(errno(&p), Some(libc::EIO));
    let url = "/dl/regfs-demo-tampered/regfs-demo-tampered-0.1.0.crate";
    let asked = up.hits(url);
    assert_eq!(errno(&p), Some(libc::EIO));
    assert!(up.hits(url) > asked, "the bad bytes were not kept");
    // Outside the filter: never asked for.
    let before = up.total();
    assert_eq!(errno(&m.path("crates/index/1/q")), Some(libc::ENOENT));
    assert_eq!(up.total(), before);
    let log = m.stop();
    assert!(log.contains("digest mismatch"), "logged with both digests");
}

#[test]
fn additive_retention_keeps_a_deleted_version_while_its_crate_is_cached() {
    let fx = crates();
    let (up, m) = mount(
        "crates-retain",
        "crates = [\"regfs-demo-leaf\"]\nretain = \"additive\"",
    );
    let index = "crates/index/re/gf/regfs-demo-leaf";
    let dl = "dl/regfs-demo-leaf/regfs-demo-leaf-0.1.0.crate";
    let want = fx.manifest["files"][dl]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let read = || sha256_hex(&std::fs::read(m.path(&format!("crates/{dl}"))).unwrap());
    assert_eq!(read(), want);
    let before = String::from_utf8(std::fs::read(m.path(index)).unwrap()).unwrap();
    let line = before
        .lines()
        .find(|l| l.contains("\"vers\":\"0.1.0\""))
        .unwrap()
        .to_string();
    // Upstream deletes 0.1.0: its line and its .crate are gone.
    up.remap(
        "index/re/gf/regfs-demo-leaf",
        "v2/index/re/gf/regfs-demo-leaf",
    );
    up.fault(dl, Fault::Status(404));
    run_ok(&m.config, &["sync"]);
    let after = String::from_utf8(std::fs::read(m.path(index)).unwrap()).unwrap();
    assert!(after.contains("\"vers\":\"0.1.1\""), "{after}");
    assert!(
        after.lines().any(|l| l == line),
        "the deleted line stays byte-identical: {after}"
    );
    let hits = up.hits(dl);
    assert_eq!(read(), want, "the retained .crate reads from the cache");
    assert_eq!(up.hits(dl), hits);
    m.expect_retained(1);
    // Evicted from the cache: gone at the next generation.
    m.evict_all_and_sync();
    let last = String::from_utf8(std::fs::read(m.path(index)).unwrap()).unwrap();
    assert!(!last.contains("\"vers\":\"0.1.0\""), "{last}");
    assert!(last.contains("\"vers\":\"0.1.1\""), "{last}");
    assert!(!m.path(&format!("crates/{dl}")).exists());
    m.expect_retained(0);
    m.stop();
}
