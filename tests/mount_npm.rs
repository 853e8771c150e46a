//! Real-mount tests of an npm mirror over a fixture registry whose tarballs
//! are made by `npm pack` at test time, served on 127.0.0.1.

mod support;

use std::path::Path;

use serde_json::Value;
use support::upstream::Upstream;
use support::{Mount, errno, hex_of, mount_over, npm, npm_mirror, run_ok};

fn mount(name: &str, extra: &str) -> (Upstream, Mount) {
    mount_over(name, &npm().root, "npm", |up| npm_mirror("npm", up, extra))
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

#[test]
fn packuments_and_tarballs_resolve_on_lookup_and_verify() {
    let fx = npm();
    let (up, m) = mount("npm-read", "");
    for name in ["regfs-demo-a", "regfs-demo-b", "@regfs/c"] {
        let full = json(&m.path(&format!("npm/{name}/index.json")));
        let upstream = json(&fx.root.join(name).join("index.json"));
        assert_eq!(full["name"], name);
        assert_eq!(full["dist-tags"], upstream["dist-tags"]);
        for (v, meta) in upstream["versions"].as_object().unwrap() {
            let ours = &full["versions"][v];
            assert_eq!(
                ours["dist"]["integrity"], meta["dist"]["integrity"],
                "{name}@{v}"
            );
            assert_eq!(ours["dependencies"], meta["dependencies"]);
            let short = name.rsplit('/').next().unwrap();
            assert_eq!(
                ours["dist"]["tarball"],
                format!("http://mirror.example/npm/{name}/-/{short}-{v}.tgz"),
                "tarballs point at the mirror"
            );
        }
        let abbrev = json(&m.path(&format!("npm/{name}/abbreviated.json")));
        assert_eq!(
            abbrev["versions"].as_object().unwrap().len(),
            upstream["versions"].as_object().unwrap().len()
        );
        assert!(
            abbrev["versions"]
                .as_object()
                .unwrap()
                .values()
                .all(|v| v.get("description").is_none())
        );
    }
    for (path, want) in fx.manifest["files"].as_object().unwrap() {
        if path.contains("tampered") {
            continue;
        }
        let p = m.path(&format!("npm/{path}"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            want["size"].as_u64().unwrap(),
            "{path}"
        );
        assert_eq!(
            hex_of(regfs::digest::Algo::Sha512, &std::fs::read(&p).unwrap()),
            want["sha512"].as_str().unwrap()
        );
    }
    assert_eq!(
        up.hits("/@regfs%2fc"),
        1,
        "the scoped packument was asked for once, escaped"
    );
    let before = up.total();
    assert_eq!(
        errno(&m.path("npm/no-such-package/index.json")),
        Some(libc::ENOENT)
    );
    let asked = up.total();
    assert!(asked > before);
    assert_eq!(
        errno(&m.path("npm/no-such-package/index.json")),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno(&m.path("npm/@regfs/nope/index.json")),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno(&m.path("npm/@regfs/nope/index.json")),
        Some(libc::ENOENT)
    );
    assert_eq!(up.total(), asked + 1, "each miss asked once");
    m.stop();
}

#[test]
fn a_tarball_that_does_not_match_its_integrity_is_eio_and_not_cached() {
    let (up, m) = mount("npm-bad", "packages = [\"regfs-demo-*\"]");
    let p = m.path("npm/regfs-demo-tampered/-/regfs-demo-tampered-1.0.0.tgz");
    assert_eq!(errno(&p), Some(libc::EIO));
    let url = "/regfs-demo-tampered/-/regfs-demo-tampered-1.0.0.tgz";
    let asked = up.hits(url);
    assert_eq!(errno(&p), Some(libc::EIO));
    assert!(up.hits(url) > asked, "the bad bytes were not kept");
    let before = up.total();
    assert_eq!(
        errno(&m.path("npm/@regfs/c/index.json")),
        Some(libc::ENOENT),
        "outside the filter"
    );
    assert_eq!(up.total(), before);
    assert!(m.stop().contains("digest mismatch"));
}

#[test]
fn additive_retention_keeps_an_unpublished_version_while_its_tarball_is_cached() {
    let fx = npm();
    let (up, m) = mount(
        "npm-retain",
        "packages = [\"regfs-demo-b\"]\nretain = \"additive\"",
    );
    let tgz = "regfs-demo-b/-/regfs-demo-b-1.0.0.tgz";
    let want = fx.manifest["files"][tgz]["sha512"]
        .as_str()
        .unwrap()
        .to_string();
    let read = || {
        hex_of(
            regfs::digest::Algo::Sha512,
            &std::fs::read(m.path(&format!("npm/{tgz}"))).unwrap(),
        )
    };
    assert_eq!(read(), want);
    let before = json(&m.path("npm/regfs-demo-b/index.json"));
    assert!(before["versions"]["1.0.0"]["dist"]["integrity"].is_string());
    // Upstream unpublishes 1.0.0: the packument no longer lists it, its tarball is gone.
    up.remap("regfs-demo-b", "v2/regfs-demo-b");
    run_ok(&m.config, &["sync"]);
    for doc in ["index.json", "abbreviated.json"] {
        let d = json(&m.path(&format!("npm/regfs-demo-b/{doc}")));
        assert_eq!(
            d["versions"]["1.0.0"]["dist"]["integrity"],
            before["versions"]["1.0.0"]["dist"]["integrity"],
            "{doc} keeps the cached version with its integrity: {d}"
        );
        assert!(d["versions"].get("1.1.0").is_some(), "{doc}: {d}");
    }
    let hits = up.hits(tgz);
    assert_eq!(read(), want, "the retained tarball reads from the cache");
    assert_eq!(up.hits(tgz), hits);
    m.expect_retained(1);
    // Evicted from the cache: gone at the next generation.
    m.evict_all_and_sync();
    for doc in ["index.json", "abbreviated.json"] {
        let d = json(&m.path(&format!("npm/regfs-demo-b/{doc}")));
        assert!(d["versions"].get("1.0.0").is_none(), "{doc}: {d}");
    }
    assert!(!m.path(&format!("npm/{tgz}")).exists());
    m.expect_retained(0);
}
