//! Real-mount tests of a Go module mirror over a fixture proxy whose zips
//! are laid out as the go command makes them (their h1: hashes are the ones
//! `go mod download` computes: scripts/go-e2e), served on 127.0.0.1.

mod support;

use support::upstream::{Fault, Upstream};
use support::{Mount, errno, go, go_mirror, mount_over, run_ok};

fn mount(name: &str, extra: &str) -> (Upstream, Mount) {
    mount_over(name, &go().root, "go", |up| go_mirror("go", up, extra))
}

#[test]
fn the_tree_is_a_goproxy_verified_by_the_checksum_database() {
    let fx = go();
    let (up, m) = mount("go-read", "checksum_db = \"fixture.test\"");
    let proxy = fx.root.join("proxy");
    for rel in [
        "example.com/regfs/leaf/@v/list",
        "example.com/regfs/leaf/@latest",
        "example.com/regfs/leaf/@v/v1.1.0.info",
        "example.com/regfs/leaf/@v/v1.1.0.mod",
        "example.com/regfs/!upper/@v/v0.1.0.mod",
        "example.com/regfs/core/@v/v1.2.0.info",
    ] {
        assert_eq!(
            std::fs::read(m.path(&format!("go/{rel}"))).unwrap_or_else(|e| panic!("{rel}: {e}")),
            std::fs::read(proxy.join(rel)).unwrap(),
            "{rel} is byte-identical"
        );
    }
    for (rel, want) in fx.manifest["zips"].as_object().unwrap() {
        if rel.contains("tampered") {
            continue;
        }
        let p = m.path(&format!("go/{rel}"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            want["size"].as_u64().unwrap(),
            "{rel}"
        );
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(proxy.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(up.hits("/proxy/sumdb/fixture.test/lookup/example.com/regfs/core@v1.2.0") == 1);
    // The checksum database's endpoints pass through, byte-identical.
    for rel in [
        "sumdb/fixture.test/supported",
        "sumdb/fixture.test/latest",
        "sumdb/fixture.test/lookup/example.com/regfs/!upper@v0.1.0",
        "sumdb/fixture.test/tile/8/0/000",
        "sumdb/fixture.test/tile/8/0/x001/234.p/5",
    ] {
        assert_eq!(
            std::fs::read(m.path(&format!("go/{rel}"))).unwrap_or_else(|e| panic!("{rel}: {e}")),
            std::fs::read(proxy.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert_eq!(
        errno(&m.path("go/sumdb/other.test/supported")),
        Some(libc::ENOENT),
        "only the configured database"
    );
    // The zip whose h1 differs from the database's: EIO, not cached.
    let bad = m.path("go/example.com/regfs/tampered/@v/v1.0.0.zip");
    assert_eq!(errno(&bad), Some(libc::EIO));
    let url = "/proxy/example.com/regfs/tampered/@v/v1.0.0.zip";
    let asked = up.hits(url);
    assert_eq!(errno(&bad), Some(libc::EIO));
    assert!(up.hits(url) > asked);
    // Unknown modules and versions: ENOENT, asked once.
    for p in [
        "go/example.com/regfs/nope/@v/list",
        "go/example.com/regfs/leaf/@v/v9.9.9.zip",
    ] {
        assert_eq!(errno(&m.path(p)), Some(libc::ENOENT), "{p}");
        let n = up.total();
        assert_eq!(errno(&m.path(p)), Some(libc::ENOENT), "{p}");
        assert_eq!(up.total(), n, "{p}: a known miss asks upstream nothing");
    }
    assert_eq!(
        errno(&m.path("go/example.com/regfs/Upper/@v/list")),
        Some(libc::ENOENT),
        "unescaped"
    );
    // A proxy that answers 403 for modules it does not have: still ENOENT.
    up.fault(
        "/proxy/example.com/regfs/forbidden/@v/list",
        Fault::Status(403),
    );
    assert_eq!(
        errno(&m.path("go/example.com/regfs/forbidden/@v/list")),
        Some(libc::ENOENT)
    );
    assert_eq!(up.hits("/proxy/example.com/regfs/forbidden/@v/list"), 1);
    m.stop();
}

#[test]
fn a_go_sum_file_can_be_the_checksum_source() {
    let fx = go();
    let (up, m) = mount(
        "go-sum",
        &format!(
            "go_sum = \"{}\"\nmodules = [\"example.com/regfs/*\"]",
            fx.root.join("go.sum").display()
        ),
    );
    let rel = "example.com/regfs/core/@v/v1.2.0.zip";
    assert_eq!(
        std::fs::read(m.path(&format!("go/{rel}"))).unwrap(),
        std::fs::read(fx.root.join("proxy").join(rel)).unwrap()
    );
    assert_eq!(
        up.hits("/proxy/sumdb/fixture.test/lookup/example.com/regfs/core@v1.2.0"),
        0
    );
    assert!(m.stop().contains("serving new generation"));
}

#[test]
fn additive_retention_keeps_a_removed_version_while_its_zip_is_cached() {
    let fx = go();
    let (up, m) = mount(
        "go-retain",
        "checksum_db = \"fixture.test\"\nmodules = [\"example.com/regfs/leaf\"]\nretain = \"additive\"",
    );
    let proxy = fx.root.join("proxy");
    let at = "example.com/regfs/leaf/@v/v1.0.0";
    let read = |rel: &str| std::fs::read(m.path(&format!("go/{rel}")));
    let list = || String::from_utf8(read("example.com/regfs/leaf/@v/list").unwrap()).unwrap();
    assert_eq!(list(), "v1.0.0\nv1.1.0\n");
    let zip = std::fs::read(proxy.join(format!("{at}.zip"))).unwrap();
    assert_eq!(read(&format!("{at}.zip")).unwrap(), zip);
    let info = read(&format!("{at}.info")).unwrap();
    let modf = read(&format!("{at}.mod")).unwrap();
    // Upstream removes v1.0.0: its list no longer has it, its files are gone.
    up.fault(
        "/proxy/example.com/regfs/leaf/@v/list",
        Fault::Body(b"v1.1.0\n".to_vec()),
    );
    for ext in ["info", "mod", "zip"] {
        up.fault(&format!("/proxy/{at}.{ext}"), Fault::Status(404));
    }
    run_ok(&m.config, &["sync"]);
    assert_eq!(
        list(),
        "v1.1.0\nv1.0.0\n",
        "the cached version stays listed"
    );
    assert_eq!(
        read(&format!("{at}.info")).unwrap(),
        info,
        "its .info as served"
    );
    assert_eq!(
        read(&format!("{at}.mod")).unwrap(),
        modf,
        "its .mod as served"
    );
    let hits = up.hits(&format!("/proxy/{at}.zip"));
    assert_eq!(
        read(&format!("{at}.zip")).unwrap(),
        zip,
        "the retained zip reads from the cache"
    );
    assert_eq!(
        up.hits(&format!("/proxy/{at}.zip")),
        hits,
        "upstream not asked"
    );
    m.expect_retained(1);
    // Evicted from the cache: gone at the next generation.
    m.evict_all_and_sync();
    assert_eq!(list(), "v1.1.0\n");
    for ext in ["info", "mod", "zip"] {
        assert_eq!(
            errno(&m.path(&format!("go/{at}.{ext}"))),
            Some(libc::ENOENT),
            "{ext}"
        );
    }
    m.expect_retained(0);
    m.stop();
}
