//! Real-mount tests of a conda mirror over fixture channels whose packages
//! py-rattler-build assembled and py-rattler's `index_fs` indexed (with
//! repodata.json.zst and CEP-16 shards) at test time, served on 127.0.0.1
//! (tests/fixtures/conda/build.py).
//!
//! What a client may read of one subdir must agree: the packages listed in
//! the tree, repodata.json, repodata.json.zst, the shard index and the
//! shards it names, each shard named after its own sha256.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use regfs::layouts::conda::shards::{Index, shard_json};
use regfs::layouts::conda::zstd;
use serde_json::Value;
use support::upstream::{Fault, Upstream};
use support::{Fixture, Mount, config, errno, fixture, run, scratch, sha256_hex};

const LIMIT: u64 = 64 << 20;

fn conda() -> &'static Fixture {
    fixture("conda")
}

fn mount(name: &str, extra: &str) -> (Upstream, Mount) {
    let up = Upstream::serve(&conda().root);
    let dir = scratch(name);
    let cfg = config(&dir, "", &conda().mirror("conda", &up.url(), extra));
    let m = Mount::start(&dir, &cfg, "conda");
    m.wait_generation(1);
    (up, m)
}

fn sync_ok(cfg: &Path) -> String {
    let out = run(cfg, &["sync"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The manifest's packages (`path`, `sha256`, `size`, `name`, …) listed in
/// channel state `state` ("v1", "v2").
fn packages(state: &str) -> Vec<&'static Value> {
    conda().manifest["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["listed"].as_array().unwrap().iter().any(|s| s == state))
        .collect()
}

/// The filenames a repodata document (JSON) lists.
fn filenames(doc: &Value) -> BTreeSet<String> {
    ["packages", "packages.conda"]
        .iter()
        .filter_map(|k| doc[k].as_object())
        .flat_map(|m| m.keys().cloned())
        .collect()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON: {e}"))
}

/// The package files in a subdir of the mount, from readdir alone.
fn tree(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conda") || n.ends_with(".tar.bz2"))
        .collect()
}

/// The documents of one subdir as served, read and decoded.
struct Docs {
    json: Vec<u8>,
    zst: Vec<u8>,
    index: Vec<u8>,
}

impl Docs {
    fn read(dir: &Path) -> Docs {
        let r = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        Docs {
            json: r("repodata.json"),
            zst: r("repodata.json.zst"),
            index: r("repodata_shards.msgpack.zst"),
        }
    }
}

/// Checks that every document of `dir` (a subdir in the mount) lists the
/// same packages as the tree and that each shard is named after its
/// sha256 and holds only records of its name; the packages.
fn agreeing(dir: &Path) -> BTreeSet<String> {
    let d = Docs::read(dir);
    let listed = filenames(&json(&d.json));
    let unpacked = zstd::decode(&d.zst, LIMIT).expect("repodata.json.zst decodes");
    assert_eq!(
        json(&unpacked),
        json(&d.json),
        "{}: repodata.json.zst is repodata.json",
        dir.display()
    );
    assert_eq!(
        tree(dir),
        listed,
        "{}: the tree lists repodata.json's packages",
        dir.display()
    );
    let raw = zstd::decode(&d.index, LIMIT).expect("the shard index decodes");
    let index = Index::parse(&raw).expect("the shard index parses");
    let mut from_shards = BTreeSet::new();
    for (name, hash) in &index.shards {
        let hash = hash.unwrap_or_else(|why| panic!("{}: shard of {name}: {why}", dir.display()));
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let bytes = std::fs::read(dir.join(format!("shards/{hex}.msgpack.zst")))
            .unwrap_or_else(|e| panic!("{}: shard of {name}: {e}", dir.display()));
        assert_eq!(sha256_hex(&bytes), hex, "a shard is named after its sha256");
        let shard = shard_json(&zstd::decode(&bytes, LIMIT).unwrap()).unwrap();
        let files = filenames(&shard);
        assert!(
            !files.is_empty(),
            "{}: the shard of {name} is empty",
            dir.display()
        );
        for key in ["packages", "packages.conda"] {
            for (f, rec) in shard[key].as_object().into_iter().flatten() {
                assert_eq!(rec["name"], **name, "{f} is in the shard of {name}");
                let whole = &json(&d.json)[key][f];
                assert!(
                    whole.is_object(),
                    "{}: {f} is in the shard of {name}, not in repodata.json",
                    dir.display()
                );
                assert_eq!(rec["sha256"], whole["sha256"], "{f}: the shard's sha256");
                assert_eq!(rec["size"], whole["size"], "{f}: the shard's size");
            }
        }
        assert!(from_shards.is_disjoint(&files), "{name}: in two shards");
        from_shards.extend(files);
    }
    assert_eq!(
        from_shards,
        listed,
        "{}: the shards list repodata.json's packages",
        dir.display()
    );
    listed
}

/// Which of the manifest's packages a filter keeps.
type Keep = Box<dyn Fn(&Value) -> bool>;

fn names(pkgs: &[&Value], subdir: &str) -> BTreeSet<String> {
    pkgs.iter()
        .filter(|p| p["subdir"] == subdir)
        .map(|p| {
            p["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn packages_are_listed_with_their_sizes_and_verified_and_documents_served_byte_identical() {
    let fx = conda();
    let (up, m) = mount("conda-read", "");
    for sub in ["noarch", "linux-64"] {
        for f in [
            "repodata.json",
            "repodata.json.zst",
            "repodata_shards.msgpack.zst",
        ] {
            let rel = format!("fixture/{sub}/{f}");
            assert_eq!(
                std::fs::read(m.path(&format!("conda/{rel}"))).unwrap(),
                fx.bytes(&rel),
                "{rel} is byte-identical"
            );
        }
        let listed = agreeing(&m.path(&format!("conda/fixture/{sub}")));
        assert_eq!(listed, names(&packages("v1"), sub), "{sub}");
    }
    assert_eq!(
        std::fs::read(m.path("conda/fixture/noarch/current_repodata.json")).unwrap(),
        fx.bytes("fixture/noarch/current_repodata.json")
    );
    assert!(
        !m.path("conda/fixture/linux-64/current_repodata.json")
            .exists()
    );
    assert!(!m.path("conda/fixture/noarch/repodata.json.bz2").exists());
    for p in packages("v1") {
        let rel = p["path"].as_str().unwrap();
        let path = m.path(&format!("conda/{rel}"));
        let before = up.total();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            p["size"].as_u64().unwrap(),
            "{rel}"
        );
        assert_eq!(up.total(), before, "{rel}: stat asks upstream nothing");
        let data = std::fs::read(&path).unwrap();
        assert_eq!(sha256_hex(&data), p["sha256"].as_str().unwrap(), "{rel}");
        assert_eq!(up.hits(rel), 1, "{rel}: fetched on first read, once");
    }
    // Shards were read by `agreeing`: each fetched once, from upstream's shards/.
    let shard_gets: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/shards/"))
        .collect();
    assert_eq!(shard_gets.len(), 2, "one shard per subdir: {shard_gets:?}");
    let new = &fx.manifest["v2"]["new"][0];
    assert!(
        !m.path(&format!("conda/{}", new.as_str().unwrap())).exists(),
        "a package repodata.json does not list is not in the tree"
    );
}

#[test]
fn a_tampered_package_or_shard_is_eio_and_not_cached() {
    let fx = conda();
    let (up, m) = mount("conda-tamper", "");
    let t = &fx.manifest["tampered"];
    let rel = t["path"].as_str().unwrap();
    up.fault(
        rel,
        Fault::Body(std::fs::read(fx.root.join(t["bytes"].as_str().unwrap())).unwrap()),
    );
    let p = m.path(&format!("conda/{rel}"));
    assert_eq!(errno(&p), Some(libc::EIO), "{rel}");
    let first = up.hits(rel);
    assert!(first >= 1, "{rel} was fetched");
    assert_eq!(errno(&p), Some(libc::EIO), "{rel}: again");
    assert!(
        up.hits(rel) > first,
        "a failed fetch is not cached: fetched again"
    );
    assert!(m.log().contains("digest mismatch"), "{}", m.log());
    let st = &m.status()[0];
    assert_eq!(st["cached"].as_u64(), Some(0), "{st}");
    up.clear(rel);
    let good = packages("v1")
        .into_iter()
        .find(|p| p["path"] == rel)
        .unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(&p).unwrap()),
        good["sha256"].as_str().unwrap()
    );

    // A shard is verified by its name.
    let dir = m.path("conda/fixture/linux-64");
    let shard = std::fs::read_dir(dir.join("shards"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let shard_rel = format!(
        "fixture/linux-64/shards/{}",
        shard.file_name().to_string_lossy()
    );
    let mut bytes = fx.bytes(&shard_rel);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    up.fault(&shard_rel, Fault::Body(bytes));
    assert_eq!(errno(&shard.path()), Some(libc::EIO), "{shard_rel}");
    up.clear(&shard_rel);
    assert_eq!(
        std::fs::read(shard.path()).unwrap(),
        fx.bytes(&shard_rel),
        "{shard_rel} once upstream serves it right"
    );
}

#[test]
fn filters_and_cooldown_agree_across_repodata_its_zst_the_shard_index_and_the_shards() {
    let fx = conda();
    let future = fx.manifest["future"].as_str().unwrap();
    let v1 = packages("v1");
    let cases: [(&str, &str, Keep); 6] = [
        ("conda-f-none", "", Box::new(|_| true)),
        (
            "conda-f-packages",
            "packages = [\"fixl*\"]",
            Box::new(|p| p["name"] == "fixlib"),
        ),
        (
            "conda-f-exclude",
            "exclude = [\"fixapp\"]",
            Box::new(|p| p["name"] != "fixapp"),
        ),
        (
            "conda-f-cooldown",
            "cooldown = \"1d\"",
            Box::new(move |p| p["path"] != future),
        ),
        (
            "conda-f-latest",
            "keep_latest = 1",
            Box::new(|p| p["name"] != "fixlib" || p["version"] == "1.2"),
        ),
        (
            "conda-f-block",
            "block = [\"fixlib@1.1\"]",
            Box::new(|p| p["name"] != "fixlib" || p["version"] != "1.1"),
        ),
    ];
    for (name, keys, keep) in cases {
        let (_up, m) = mount(name, keys);
        let kept: Vec<&Value> = v1.iter().copied().filter(|p| keep(p)).collect();
        assert!(
            kept.len() < v1.len() || keys.is_empty(),
            "{name}: the filter drops something"
        );
        for sub in ["noarch", "linux-64"] {
            let dir = m.path(&format!("conda/fixture/{sub}"));
            assert_eq!(agreeing(&dir), names(&kept, sub), "{name}: {sub}");
            let cur =
                json(&std::fs::read(m.path("conda/fixture/noarch/current_repodata.json")).unwrap());
            assert!(
                filenames(&cur).is_subset(&names(&kept, "noarch")),
                "{name}: current_repodata.json lists only what repodata.json does"
            );
        }
        if keys.contains("cooldown") {
            let dir = m.path("conda/fixture/noarch");
            assert!(!dir.join(future.rsplit('/').next().unwrap()).exists());
            let cur = json(&std::fs::read(dir.join("current_repodata.json")).unwrap());
            assert!(
                !filenames(&cur).is_empty(),
                "current_repodata.json keeps fixlib 1.1"
            );
        }
    }
}

#[test]
fn a_publish_swaps_every_document_of_a_subdir_at_once() {
    let fx = conda();
    let (up, m) = mount("conda-publish", "");
    let dir = m.path("conda/fixture/noarch");
    let old = agreeing(&dir);
    assert_eq!(old, names(&packages("v1"), "noarch"));
    // A client that opened the documents before the swap reads them whole.
    let held: Vec<std::fs::File> = [
        "repodata.json",
        "repodata.json.zst",
        "repodata_shards.msgpack.zst",
    ]
    .iter()
    .map(|f| std::fs::File::open(dir.join(f)).unwrap())
    .collect();
    for (from, to) in fx.manifest["update"]["remap"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap(), r[1].as_str().unwrap()))
    {
        up.remap(from, to);
    }
    let out = sync_ok(&m.config);
    assert!(out.contains("generation 2"), "{out}");
    let new = agreeing(&dir);
    assert_eq!(
        new,
        names(&packages("v2"), "noarch"),
        "the tree and every document moved together"
    );
    for gone in fx.manifest["v2"]["gone"].as_array().unwrap() {
        let p = m.path(&format!("conda/{}", gone.as_str().unwrap()));
        m.wait_for(|| !p.exists(), "the removed package to go");
    }
    for p in packages("v2") {
        let rel = p["path"].as_str().unwrap();
        let data = std::fs::read(m.path(&format!("conda/{rel}"))).unwrap();
        assert_eq!(sha256_hex(&data), p["sha256"].as_str().unwrap(), "{rel}");
    }
    let read = |mut f: &std::fs::File| {
        use std::io::Read;
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    };
    let before = Docs {
        json: read(&held[0]),
        zst: read(&held[1]),
        index: read(&held[2]),
    };
    assert_eq!(
        before.json,
        fx.bytes("fixture/noarch/repodata.json"),
        "the held repodata.json is the old one"
    );
    // The old shard index names shards the new generation may no longer
    // list; the old documents still agree with each other.
    assert_eq!(filenames(&json(&before.json)), old);
    assert_eq!(
        json(&zstd::decode(&before.zst, LIMIT).unwrap()),
        json(&before.json)
    );
    assert_eq!(
        before.index,
        fx.bytes("fixture/noarch/repodata_shards.msgpack.zst")
    );
    // linux-64 did not change: one sync, one generation for both subdirs.
    assert_eq!(
        agreeing(&m.path("conda/fixture/linux-64")),
        names(&packages("v2"), "linux-64")
    );
    assert_eq!(m.status()[0]["generation"].as_u64(), Some(2));
}

#[test]
fn an_unchanged_channel_asks_for_each_document_once_and_fetches_no_package_or_shard() {
    let (up, m) = mount("conda-unchanged", "");
    let before = up.total();
    let out = sync_ok(&m.config);
    assert!(out.contains("unchanged, generation 1"), "{out}");
    let reqs: Vec<String> = up.requests()[before..]
        .iter()
        .map(|r| r.path.trim_start_matches('/').to_string())
        .collect();
    let docs = [
        "repodata.json",
        "repodata.json.zst",
        "current_repodata.json",
        "repodata_shards.msgpack.zst",
    ];
    for r in &reqs {
        let name = r.rsplit('/').next().unwrap();
        assert!(
            docs.contains(&name),
            "only documents are asked for: {reqs:?}"
        );
        assert_eq!(reqs.iter().filter(|x| *x == r).count(), 1, "{r}: once");
    }
    // Each of the four subdirs asked at least for its shard index and repodata.
    assert!(reqs.len() >= 4 * 2, "{reqs:?}");
}

#[test]
fn additive_retention_keeps_a_removed_package_in_every_document_while_it_is_cached() {
    let fx = conda();
    let (up, m) = mount("conda-retain", "retain = \"additive\"");
    let dir = m.path("conda/fixture/noarch");
    let gone = "fixture/noarch/fixlib-1.0-h0_0.tar.bz2";
    let want = fx.bytes(gone);
    let read = || std::fs::read(m.path(&format!("conda/{gone}"))).unwrap();
    assert_eq!(read(), want);
    // A publish upstream removes fixlib 1.0 (and its file) and adds 1.3.
    for (from, to) in fx.manifest["update"]["remap"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap(), r[1].as_str().unwrap()))
    {
        up.remap(from, to);
    }
    up.fault(&format!("/{gone}"), Fault::Status(404));
    sync_ok(&m.config);
    let mut with_retained = names(&packages("v2"), "noarch");
    with_retained.insert("fixlib-1.0-h0_0.tar.bz2".to_string());
    assert_eq!(
        agreeing(&dir),
        with_retained,
        "repodata.json, its .zst, the shards and the tree keep the cached package"
    );
    let hits = up.hits(&format!("/{gone}"));
    assert_eq!(read(), want, "the retained package reads from the cache");
    assert_eq!(up.hits(&format!("/{gone}")), hits, "upstream not asked");
    m.expect_retained(1);
    // Evicted from the cache: gone at the next generation.
    m.evict_all_and_sync();
    assert_eq!(agreeing(&dir), names(&packages("v2"), "noarch"));
    assert_eq!(errno(&m.path(&format!("conda/{gone}"))), Some(libc::ENOENT));
    m.expect_retained(0);
}
