//! Real-mount tests of a Composer mirror over a fixture Composer v2
//! repository whose dists are made by `composer archive` at test time
//! (`tests/fixtures/composer/build.py`), served on 127.0.0.1: what is
//! particular to Composer (the conformance suite checks the rest).

mod support;

use regfs::digest::Algo;
use regfs::layouts::composer::Expander;
use serde_json::{Map, Value};
use support::upstream::{Fault, Upstream};
use support::{Fixture, Mount, errno, fixture, hex_of, mount_over, run, run_ok};

const PUBLIC: &str = "http://mirror.example/composer";

fn fx() -> &'static Fixture {
    fixture("composer")
}

fn mount(name: &str, keys: &str) -> (Upstream, Mount) {
    mount_over(name, &fx().root, "composer", |url| {
        format!(
            "[[mirror]]\nname = \"composer\"\nlayout = \"composer\"\nupstream = \"{url}\"\nsync_interval = \"1h\"\npublic_url = \"{PUBLIC}\"\n{keys}\n"
        )
    })
}

fn read(m: &Mount, rel: &str) -> Vec<u8> {
    std::fs::read(m.path(&format!("composer/{rel}"))).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// A p2 document's versions of `package`, expanded as Composer does.
fn versions(doc: &Value, package: &str) -> Vec<Map<String, Value>> {
    let mut e = Expander::default();
    doc["packages"][package]
        .as_array()
        .unwrap_or_else(|| panic!("no versions of {package}: {doc}"))
        .iter()
        .map(|v| {
            let v = v.as_object().unwrap().clone();
            if doc["minified"] == "composer/2.0" {
                e.next(v)
            } else {
                v
            }
        })
        .collect()
}

fn listing(m: &Mount, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(m.path(&format!("composer/{dir}")))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn p2_documents_are_upstreams_with_dists_at_the_mirror_and_every_dist_verifies() {
    let (up, m) = mount("composer-lazy", "");
    let root = json(&read(&m, "packages.json"));
    assert_eq!(
        root,
        serde_json::json!({"packages": [], "metadata-url": "/composer/p2/%package%.json"}),
        "upstream's mirrors, notify-batch and available-packages are not passed on"
    );
    let refs = fx().manifest["references"].as_object().unwrap();
    for (package, doc) in [
        ("regfs/demo-a", "p2/regfs/demo-a.json"),
        ("regfs/demo-b", "p2/regfs/demo-b.json"),
        ("regfs/demo-b", "p2/regfs/demo-b~dev.json"),
        ("regfs/demo-a", "p2/regfs/demo-a~dev.json"),
    ] {
        let ours = versions(&json(&read(&m, doc)), package);
        let theirs = versions(&json(&fx().bytes(doc)), package);
        assert_eq!(ours.len(), theirs.len(), "{doc}: every version is served");
        for (o, t) in ours.iter().zip(&theirs) {
            let v = t["version"].as_str().unwrap();
            let r = refs[&format!("{package}@{v}")].as_str().unwrap();
            assert_eq!(
                o["dist"]["url"],
                format!("{PUBLIC}/dists/{package}/{v}/{r}.zip"),
                "{doc} {v}"
            );
            assert_eq!(o["dist"]["shasum"], t["dist"]["shasum"]);
            let mut expect = t.clone();
            expect.remove("source");
            expect.remove("notification-url");
            expect["dist"]["url"] = o["dist"]["url"].clone();
            assert_eq!(
                *o, expect,
                "{doc} {v}: upstream's version, source and notification dropped"
            );
        }
    }
    for (path, d) in fx().manifest["dists"].as_object().unwrap() {
        let data = read(&m, path);
        assert_eq!(data.len() as u64, d["size"].as_u64().unwrap(), "{path}");
        assert_eq!(hex_of(Algo::Sha1, &data), d["sha1"], "{path}");
    }
    assert_eq!(
        listing(&m, "dists/regfs/demo-b"),
        ["1.0.0", "1.1.0", "dev-main"]
    );
    // The version whose dist has no shasum is left out, with a WARN.
    let unverified = json(&read(&m, "p2/regfs/noshasum.json"));
    assert_eq!(
        unverified["packages"]["regfs/noshasum"],
        serde_json::json!([])
    );
    assert!(!m.path("composer/dists/regfs/noshasum").exists());
    let log = m.log();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("p2/regfs/noshasum.json")
            && l.contains("leaving out 1 version(s) whose dist has no shasum")),
        "{log}"
    );
    assert_eq!(up.hits("archives/regfs-noshasum-1.0.0.zip"), 0);
    // The tampered dist is listed (its shasum is given) and fails its check.
    let tampered = listing(&m, "dists/regfs/tampered/1.0.0");
    assert_eq!(tampered.len(), 1);
    let p = m.path(&format!(
        "composer/dists/regfs/tampered/1.0.0/{}",
        tampered[0]
    ));
    assert_eq!(errno(&p), Some(libc::EIO));
    assert!(m.log().contains("digest mismatch"));
    // A package upstream lacks costs one request, a second lookup none.
    let before = up.total();
    assert_eq!(
        errno(&m.path("composer/p2/regfs/nosuch.json")),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno(&m.path("composer/p2/regfs/nosuch~dev.json")),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno(&m.path("composer/dists/regfs/nosuch")),
        Some(libc::ENOENT)
    );
    assert_eq!(up.total(), before + 1, "{:?}", &up.requests()[before..]);
    // Names Composer does not allow never reach upstream.
    for bad in [
        "p2/Regfs/demo-a.json",
        "p2/regfs/.json",
        "p2/regfs/demo-a..json",
        "dists/regfs/..x",
    ] {
        assert_eq!(
            errno(&m.path(&format!("composer/{bad}"))),
            Some(libc::ENOENT),
            "{bad}"
        );
    }
    assert_eq!(up.total(), before + 1, "{:?}", &up.requests()[before..]);
    m.stop();
}

#[test]
fn with_packages_the_names_are_synced_up_front_and_nothing_else_is_offered() {
    let (up, m) = mount(
        "composer-filter",
        "packages = [\"regfs/demo-a\", \"Regfs/Demo-B\", \"regfs/t?mpered*\"]",
    );
    let root = json(&read(&m, "packages.json"));
    assert_eq!(
        root["available-package-patterns"],
        serde_json::json!(["regfs/demo-a", "regfs/demo-b", "regfs/t*mpered*"]),
        "Composer asks this repository for nothing else"
    );
    // Literal names were synced by the first sync, before any lookup.
    assert_eq!(
        listing(&m, "p2/regfs"),
        [
            "demo-a.json",
            "demo-a~dev.json",
            "demo-b.json",
            "demo-b~dev.json"
        ]
    );
    let before = up.total();
    assert_eq!(
        errno(&m.path("composer/p2/regfs/noshasum.json")),
        Some(libc::ENOENT)
    );
    assert_eq!(
        up.total(),
        before,
        "a name the filter excludes is not asked for"
    );
    // A glob allows: the tampered package materializes on lookup.
    assert!(m.path("composer/p2/regfs/tampered.json").exists());
    assert_eq!(up.total(), before + 2, "{:?}", &up.requests()[before..]);
    m.stop();
}

#[test]
fn upstream_metadata_that_is_not_composer_v2_fails_the_sync_naming_the_url() {
    let (up, m) = mount("composer-bad", "");
    let held = read(&m, "p2/regfs/demo-a.json");
    // A second package, so that one failing is not the whole sync failing.
    let other = read(&m, "p2/regfs/demo-b.json");
    for (body, what) in [
        (
            &br#"{"packages": [], "providers-url": "/p/%package%$%hash%.json"}"#[..],
            "not a Composer v2 repository",
        ),
        (b"<html>not json</html>", "is not a Composer packages.json"),
    ] {
        up.fault("packages.json", Fault::Body(body.to_vec()));
        let out = run(&m.config, &["sync", "composer"]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{said}");
        assert!(
            said.contains(&format!("{}packages.json", up.url())) && said.contains(what),
            "{said}"
        );
        assert_eq!(
            read(&m, "p2/regfs/demo-a.json"),
            held,
            "the served generation stays"
        );
    }
    up.clear("packages.json");
    // A p2 document that is not JSON: that package keeps its contents and
    // the error names the document's URL.
    up.fault(
        "p2/regfs/demo-a.json",
        Fault::Body(b"{\"packages\": ".to_vec()),
    );
    let out = run(&m.config, &["sync", "composer"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("regfs/demo-a")
            && m.log()
                .contains(&format!("{}p2/regfs/demo-a.json", up.url())),
        "{said}\n{}",
        m.log()
    );
    assert_eq!(read(&m, "p2/regfs/demo-a.json"), held);
    assert_eq!(read(&m, "p2/regfs/demo-b.json"), other);
    m.stop();
}

#[test]
fn under_trust_on_first_use_a_dist_without_shasum_is_pinned_by_its_first_download() {
    let (up, m) = mount("composer-tofu", "trust_on_first_use = true");
    let doc = json(&read(&m, "p2/regfs/noshasum.json"));
    let served = versions(&doc, "regfs/noshasum");
    assert_eq!(served.len(), 1, "offered under the policy: {doc}");
    assert_eq!(
        served[0]["dist"]["shasum"], "",
        "upstream's (empty) shasum, as it was"
    );
    let url = served[0]["dist"]["url"].as_str().unwrap();
    let rel = url.strip_prefix(&format!("{PUBLIC}/")).unwrap().to_string();
    let upstream_file = "archives/regfs-noshasum-1.0.0.zip";
    let bytes = fx().bytes(upstream_file);
    assert_eq!(read(&m, &rel), bytes);
    assert_eq!(up.hits(upstream_file), 1);
    let pins = std::fs::read_to_string(m.dir.join("state/mirrors/composer/pins")).unwrap();
    assert!(pins.contains(&rel), "{pins}");
    let status = |m: &Mount| {
        m.status()
            .into_iter()
            .find(|s| s["name"] == "composer")
            .unwrap()
    };
    assert_eq!(status(&m)["tofu_pinned"], 1);

    // The cache wiped and upstream's zip rebuilt (as a forge's zipballs
    // are): the pin holds, the new bytes are refused.
    let (dir, config) = (m.dir.clone(), m.config.clone());
    m.stop();
    std::fs::remove_dir_all(dir.join("cache")).unwrap();
    up.fault(upstream_file, Fault::Corrupt);
    let m = Mount::start(&dir, &config, "composer");
    let failures = |m: &Mount| status(m)["counters"]["verify_failures"].as_u64().unwrap();
    let before = failures(&m);
    assert_eq!(errno(&m.path(&format!("composer/{rel}"))), Some(libc::EIO));
    assert!(failures(&m) > before);
    assert!(
        m.log()
            .contains("upstream changed a file pinned on first use"),
        "{}",
        m.log()
    );
    up.clear(upstream_file);
    assert_eq!(
        read(&m, &rel),
        bytes,
        "the pinned bytes again once upstream has them"
    );
    m.stop();
}

#[test]
fn additive_retention_keeps_a_withdrawn_version_while_its_dist_is_cached() {
    let (up, m) = mount(
        "composer-retain",
        "packages = [\"regfs/demo-b\"]\nretain = \"additive\"",
    );
    let (dist, d) = fx().manifest["dists"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, d)| d["package"] == "regfs/demo-b" && d["version"] == "1.0.0")
        .unwrap();
    let upstream_file = d["upstream"].as_str().unwrap();
    let bytes = read(&m, dist);
    assert_eq!(hex_of(Algo::Sha1, &bytes), d["sha1"]);
    let doc = "p2/regfs/demo-b.json";
    let listed = |m: &Mount| versions(&json(&read(m, doc)), "regfs/demo-b");
    let names = |vs: &[Map<String, Value>]| -> Vec<String> {
        vs.iter()
            .map(|v| v["version"].as_str().unwrap().to_string())
            .collect()
    };
    let served = listed(&m)
        .into_iter()
        .find(|v| v["version"] == "1.0.0")
        .unwrap();
    // Upstream withdraws 1.0.0: gone from its document, its dist 404.
    up.remap(doc, &format!("v2/{doc}"));
    up.fault(upstream_file, Fault::Status(404));
    run_ok(&m.config, &["sync"]);
    let after = listed(&m);
    assert_eq!(
        names(&after),
        ["1.1.0", "1.0.0"],
        "upstream's, then the retained one"
    );
    assert_eq!(
        after[1], served,
        "the withdrawn version stays as it was served"
    );
    assert_eq!(
        listing(&m, "dists/regfs/demo-b"),
        ["1.0.0", "1.1.0", "dev-main"]
    );
    let hits = up.hits(upstream_file);
    assert_eq!(
        read(&m, dist),
        bytes,
        "the retained dist reads from the cache"
    );
    assert_eq!(up.hits(upstream_file), hits, "upstream is not asked");
    m.expect_retained(1);
    // Evicted from the cache: gone at the next generation.
    m.evict_all_and_sync();
    assert_eq!(names(&listed(&m)), ["1.1.0"]);
    assert!(!m.path(&format!("composer/{dist}")).exists());
    assert_eq!(listing(&m, "dists/regfs/demo-b"), ["1.1.0", "dev-main"]);
    m.expect_retained(0);
    m.stop();
}
