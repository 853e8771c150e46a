//! The conda adapter on real documents: tests/fixtures/conda/ holds the
//! documents py-rattler's `index_fs` wrote for the fixture channel of
//! tests/fixtures/conda/build.py (`fixture-<subdir>-…`: repodata.json, its
//! .zst, the shard index and its one shard; noarch's current_repodata.json)
//! and its hostile channel's noarch documents. noarch lists fixlib 1.0
//! (.tar.bz2), 1.1 and 1.2 (.conda; 1.2 timestamped in 2099); linux-64
//! lists fixapp 1.0.

use std::collections::HashMap;

use super::shards::{Index, shard_json};
use super::*;
use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::layouts::testing::{Docs, block_on, configure};

const FX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/conda/");
const BASE: &str = "http://conda.upstream.test/";
/// 2026-12-01: after the fixture's 2024 timestamps, before fixlib 1.2's.
const NOW: u64 = 1_796_083_200;

fn fx(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FX}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn adapter(keys: &str) -> Result<Conda, String> {
    configure(&LAYOUT, BASE, keys, Conda::from_keys)
}

/// The fixture's documents of `subdir` under channel `ch/` (`files`: which).
fn docs(ch: &str, files: &[&str]) -> Docs {
    let mut d = Docs::new(BASE);
    for sub in ["noarch", "linux-64"] {
        for f in files {
            let name = format!("fixture-{sub}-{f}");
            if std::path::Path::new(&format!("{FX}{name}")).exists() {
                d = d.with(&format!("{ch}{sub}/{f}"), fx(&name));
            }
        }
    }
    d
}

const ALL: &[&str] = &[
    "repodata.json",
    "repodata.json.zst",
    "repodata_shards.msgpack.zst",
    "current_repodata.json",
];

fn try_sync(a: &Conda, unit: &str, src: &Docs) -> Result<UnitOutput, SyncError> {
    block_on(a.unit(unit, src, NOW, true)).map(|o| o.expect("upstream has the subdir"))
}

fn sync(a: &Conda, unit: &str, src: &Docs) -> UnitOutput {
    try_sync(a, unit, src).unwrap_or_else(|e| panic!("{unit}: {e}"))
}

fn by_path(out: &UnitOutput) -> HashMap<String, &Entry> {
    out.entries
        .iter()
        .map(|e| (e.path.as_str().to_string(), e))
        .collect()
}

fn inline<'a>(out: &'a HashMap<String, &Entry>, path: &str) -> &'a [u8] {
    match &out
        .get(path)
        .unwrap_or_else(|| panic!("{path} listed: {:?}", out.keys()))
        .body
    {
        Body::Inline(b) => b,
        b => panic!("{path}: not rewritten: {b:?}"),
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The filenames a repodata document lists.
fn files(doc: &serde_json::Value) -> Vec<String> {
    let mut f: Vec<String> = ["packages", "packages.conda"]
        .iter()
        .flat_map(|k| {
            doc[k]
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys().cloned())
        })
        .collect();
    f.sort();
    f
}

/// The shard index a rewritten entry holds, as (name, hex hash) pairs.
fn index_of(bytes: &[u8]) -> (Vec<(String, String)>, Option<String>, Option<String>) {
    let raw = zstd::decode(bytes, 1 << 20).unwrap();
    let i = Index::parse(&raw).unwrap();
    let shards = i
        .shards
        .iter()
        .map(|(n, h)| {
            (
                n.to_string(),
                crate::digest::encode_hex(h.as_ref().unwrap()),
            )
        })
        .collect();
    (
        shards,
        i.info_str("base_url").map(str::to_string),
        i.info_str("shards_base_url").map(str::to_string),
    )
}

#[test]
fn keys_are_read_strictly() {
    let a =
        adapter("channels = [\"conda-forge\", \"bioconda\"]\nsubdirs = [\"noarch\", \"linux-64\"]")
            .unwrap();
    assert_eq!(
        a.units(),
        [
            "conda-forge/linux-64",
            "conda-forge/noarch",
            "bioconda/linux-64",
            "bioconda/noarch"
        ]
    );
    let root = adapter("subdirs = [\"noarch\"]\ncooldown = \"3d\"\npackages = [\"numpy*\"]\nexclude = \"numpy-base\"").unwrap();
    assert_eq!(root.units(), ["noarch"]);
    assert_eq!(root.opts.filter.policy.cooldown, Some(3 * 86400));
    assert!(
        root.opts.filter.allows("numpy")
            && !root.opts.filter.allows("numpy-base")
            && !root.opts.filter.allows("scipy")
    );
    for (keys, what) in [
        ("", "missing key `subdirs`"),
        ("subdirs = [\"linux-64\"]", "include \"noarch\""),
        (
            "subdirs = [\"noarch\", \"Linux 64\"]",
            "\"Linux 64\" is not a subdir name",
        ),
        (
            "subdirs = [\"noarch\"]\nchannels = [\"a\", \"a/b\"]",
            "overlap",
        ),
        (
            "subdirs = [\"noarch\"]\nchannels = [\"../up\"]",
            "not a path under the upstream",
        ),
        (
            "subdirs = [\"noarch\"]\nchannels = []",
            "at least one channel",
        ),
        (
            "subdirs = [\"noarch\"]\ncooldown = \"soon\"",
            "cooldown: expected a duration",
        ),
        (
            "subdirs = [\"noarch\"]\nplatforms = [\"linux-64\"]",
            "unknown key `platforms`",
        ),
    ] {
        let e = adapter(keys)
            .err()
            .unwrap_or_else(|| panic!("{keys:?} was accepted"));
        assert!(
            e.contains(what) && e.contains("a conda mirror"),
            "{keys:?}: {e}"
        );
    }
    // A channel path that fits but leaves no room for a shard's path below it.
    let deep = vec!["c".repeat(250); 16].join("/");
    assert!(crate::path::RelPath::new(deep.as_str()).is_ok());
    let e = adapter(&format!("subdirs = [\"noarch\"]\nchannels = [\"{deep}\"]"))
        .err()
        .expect("accepted");
    assert!(
        e.contains("too long to hold the documents of subdir \"noarch\""),
        "{e}"
    );
    let fits = vec!["c".repeat(250); 15].join("/");
    assert!(adapter(&format!("subdirs = [\"noarch\"]\nchannels = [\"{fits}\"]")).is_ok());
}

#[test]
fn without_filters_every_document_is_upstreams_and_packages_and_shards_are_listed() {
    let a = adapter("channels = [\"ch\"]\nsubdirs = [\"linux-64\", \"noarch\"]").unwrap();
    let src = docs("ch/", ALL);
    let out = sync(&a, "ch/noarch", &src);
    assert_eq!(out.rejected, 0);
    let e = by_path(&out);
    assert_eq!(
        inline(&e, "ch/noarch/repodata.json"),
        fx("fixture-noarch-repodata.json"),
        "the .zst's content, byte for byte"
    );
    for (path, fixture) in [
        (
            "ch/noarch/repodata.json.zst",
            "fixture-noarch-repodata.json.zst",
        ),
        (
            "ch/noarch/repodata_shards.msgpack.zst",
            "fixture-noarch-repodata_shards.msgpack.zst",
        ),
        (
            "ch/noarch/current_repodata.json",
            "fixture-noarch-current_repodata.json",
        ),
    ] {
        assert_eq!(inline(&e, path), fx(fixture), "{path} is upstream's");
    }
    let doc = json(&fx("fixture-noarch-repodata.json"));
    for f in files(&doc) {
        let rec = doc["packages"]
            .get(&f)
            .or(doc["packages.conda"].get(&f))
            .unwrap();
        let entry = e[&format!("ch/noarch/{f}")];
        assert_eq!(
            entry.body,
            Body::Remote {
                url: format!("{BASE}ch/noarch/{f}"),
                size: rec["size"].as_u64(),
                digest: Digest::from_hex(Algo::Sha256, rec["sha256"].as_str().unwrap()).unwrap(),
            }
        );
        assert_eq!(
            entry.mtime,
            Some((rec["timestamp"].as_u64().unwrap() / 1000) as u32)
        );
    }
    let shard = fx("fixture-noarch-shard.msgpack.zst");
    let hex = Digest::sha256_of(&shard).hex();
    assert_eq!(
        e[&format!("ch/noarch/shards/{hex}.msgpack.zst")].body,
        Body::Remote {
            url: format!("{BASE}ch/noarch/shards/{hex}.msgpack.zst"),
            size: None,
            digest: Digest::sha256_of(&shard),
        },
        "a shard is fetched on first read, verified by its name"
    );
    assert_eq!(
        out.entries.len(),
        3 + 4 + 1,
        "packages, documents, the shard: {:?}",
        e.keys()
    );
}

#[test]
fn a_shard_written_from_repodata_is_the_one_rattler_wrote() {
    for sub in ["noarch", "linux-64"] {
        let bytes = fx(&format!("fixture-{sub}-repodata.json"));
        let doc = repodata::Repodata::parse(&bytes).unwrap();
        let records: Vec<_> = doc
            .records
            .iter()
            .map(|r| (r.kind, r.filename.as_str(), r.raw))
            .collect();
        let ours = shards::render_shard(&records, &[]).unwrap();
        let theirs =
            zstd::decode(&fx(&format!("fixture-{sub}-shard.msgpack.zst")), 1 << 20).unwrap();
        assert_eq!(
            shard_json(&ours).unwrap(),
            shard_json(&theirs).unwrap(),
            "{sub}"
        );
        assert_eq!(ours, theirs, "{sub}: the same bytes, too");
    }
}

#[test]
fn a_cooldown_hides_young_records_from_every_document() {
    let a = adapter("channels = [\"ch\"]\nsubdirs = [\"noarch\"]\ncooldown = \"7d\"").unwrap();
    assert!(a.changes_with_time());
    let out = sync(&a, "ch/noarch", &docs("ch/", ALL));
    let e = by_path(&out);
    let young = "fixlib-1.2-h0_0.conda";
    assert!(
        !e.contains_key(&format!("ch/noarch/{young}")),
        "the package is not listed"
    );
    let served = json(inline(&e, "ch/noarch/repodata.json"));
    assert_eq!(
        files(&served),
        ["fixlib-1.0-h0_0.tar.bz2", "fixlib-1.1-h0_0.conda"]
    );
    let mut want = json(&fx("fixture-noarch-repodata.json"));
    want["packages.conda"]
        .as_object_mut()
        .unwrap()
        .remove(young);
    assert_eq!(served, want, "only that record went");
    let zst = zstd::decode(inline(&e, "ch/noarch/repodata.json.zst"), 1 << 20).unwrap();
    assert_eq!(
        zst,
        inline(&e, "ch/noarch/repodata.json"),
        "the .zst agrees"
    );
    assert_eq!(
        files(&json(inline(&e, "ch/noarch/current_repodata.json"))),
        ["fixlib-1.1-h0_0.conda"]
    );
    // The shard index points at a shard this mirror wrote without 1.2.
    let (index, base, shards_base) = index_of(inline(&e, "ch/noarch/repodata_shards.msgpack.zst"));
    assert_eq!(
        (base.as_deref(), shards_base.as_deref()),
        (Some(""), Some("./shards/"))
    );
    assert_eq!(index.len(), 1);
    let (name, hex) = &index[0];
    assert_eq!(name, "fixlib");
    let shard = inline(&e, &format!("ch/noarch/shards/{hex}.msgpack.zst"));
    assert_eq!(
        Digest::sha256_of(shard).hex(),
        *hex,
        "named after its own sha256"
    );
    let upstream = Digest::sha256_of(&fx("fixture-noarch-shard.msgpack.zst")).hex();
    assert!(
        !e.contains_key(&format!("ch/noarch/shards/{upstream}.msgpack.zst")),
        "upstream's shard is not listed"
    );
    let mut want =
        shard_json(&zstd::decode(&fx("fixture-noarch-shard.msgpack.zst"), 1 << 20).unwrap())
            .unwrap();
    want["packages.conda"]
        .as_object_mut()
        .unwrap()
        .remove(young);
    assert_eq!(
        shard_json(&zstd::decode(shard, 1 << 20).unwrap()).unwrap(),
        want
    );
    // Later, nothing is young any more.
    let later = block_on(a.unit(
        "ch/noarch",
        &docs("ch/", ALL),
        4_102_444_800 + 8 * 86400,
        true,
    ))
    .unwrap()
    .unwrap();
    assert_eq!(
        inline(&by_path(&later), "ch/noarch/repodata.json"),
        fx("fixture-noarch-repodata.json")
    );
}

/// The files repodata.json, current_repodata.json and the shard of
/// `out` list for noarch, checking that the three agree (current only
/// ever lists a subset of repodata.json).
fn served_everywhere(out: &UnitOutput) -> Vec<String> {
    let e = by_path(out);
    let main = files(&json(inline(&e, "ch/noarch/repodata.json")));
    let current = files(&json(inline(&e, "ch/noarch/current_repodata.json")));
    assert!(
        current.iter().all(|f| main.contains(f)),
        "current {current:?} within {main:?}"
    );
    let (index, ..) = index_of(inline(&e, "ch/noarch/repodata_shards.msgpack.zst"));
    let shard = match &index[..] {
        [] => Vec::new(),
        [(name, hex)] => {
            assert_eq!(name, "fixlib");
            let path = format!("ch/noarch/shards/{hex}.msgpack.zst");
            let upstream = fx("fixture-noarch-shard.msgpack.zst");
            let bytes = match &e[&path].body {
                Body::Inline(b) => zstd::decode(b, 1 << 20).unwrap(),
                // Unfiltered: upstream's own shard, fetched on first read.
                Body::Remote { digest, .. } if *digest == Digest::sha256_of(&upstream) => {
                    zstd::decode(&upstream, 1 << 20).unwrap()
                }
                b => panic!("{path}: {b:?}"),
            };
            files(&shard_json(&bytes).unwrap())
        }
        more => panic!("one shard expected: {more:?}"),
    };
    assert_eq!(shard, main, "the shard lists what repodata.json lists");
    let listed: Vec<String> = e
        .keys()
        .filter_map(|p| p.strip_prefix("ch/noarch/"))
        .filter(|f| f.starts_with("fixlib-"))
        .map(str::to_string)
        .collect();
    let mut listed = listed;
    listed.sort();
    assert_eq!(listed, main, "the tree holds exactly the served packages");
    main
}

#[test]
fn version_filters_and_the_block_list_apply_to_every_document_by_conda_order() {
    let at = |keys: &str| {
        let a = adapter(&format!(
            "channels = [\"ch\"]\nsubdirs = [\"noarch\"]\n{keys}"
        ))
        .unwrap();
        served_everywhere(&sync(&a, "ch/noarch", &docs("ch/", ALL)))
    };
    let (v10, v11, v12) = (
        "fixlib-1.0-h0_0.tar.bz2",
        "fixlib-1.1-h0_0.conda",
        "fixlib-1.2-h0_0.conda",
    );
    assert_eq!(at(""), [v10, v11, v12]);
    assert_eq!(at("keep_latest = 1"), [v12], "the newest by version");
    assert_eq!(at("keep_latest = 2"), [v11, v12]);
    assert_eq!(
        at("keep_latest = 1\ncooldown = \"7d\""),
        [v11],
        "keep_latest counts what the cooldown left"
    );
    assert_eq!(at("block = [\"fixlib@1.1\"]"), [v10, v12]);
    assert_eq!(
        at("block = [\"fixlib\"]"),
        Vec::<String>::new(),
        "a blocked name is not served at all"
    );
    assert_eq!(
        at("keep_latest = 1\n[[override]]\nunits = [\"fix*\"]\nkeep_latest = 2"),
        [v11, v12],
        "an override wins for its units"
    );
    assert_eq!(
        at("keep_latest = 2\n[[override]]\nunits = [\"other\"]\nkeep_latest = 1"),
        [v11, v12]
    );
    assert_eq!(
        at("prereleases = false"),
        [v10, v11, v12],
        "no pre-release in the fixture"
    );
    // A release candidate published beside them: prereleases = false drops
    // it, and it is the newest by version otherwise.
    let mut doc = json(&fx("fixture-noarch-repodata.json"));
    let mut rc = doc["packages.conda"][v12].clone();
    rc["version"] = "1.3rc1".into();
    doc["packages.conda"]["fixlib-1.3rc1-h0_0.conda"] = rc;
    let src = Docs::new(BASE).with("ch/noarch/repodata.json", serde_json::to_vec(&doc).unwrap());
    let listed = |keys: &str| {
        let a = adapter(&format!(
            "channels = [\"ch\"]\nsubdirs = [\"noarch\"]\n{keys}"
        ))
        .unwrap();
        let out = sync(&a, "ch/noarch", &src);
        let mut f = files(&json(inline(&by_path(&out), "ch/noarch/repodata.json")));
        f.retain(|f| f.starts_with("fixlib-"));
        f
    };
    let rc = "fixlib-1.3rc1-h0_0.conda";
    assert_eq!(listed(""), [v10, v11, v12, rc]);
    assert_eq!(listed("keep_latest = 1"), [rc], "1.3rc1 sorts above 1.2");
    assert_eq!(
        listed("prereleases = false"),
        [v10, v11, v12],
        "the release candidate is dropped"
    );
    assert_eq!(listed("prereleases = false\nkeep_latest = 1"), [v12]);
}

#[test]
fn name_filters_drop_whole_shards_and_every_record_of_the_name() {
    for keys in ["exclude = [\"fix*\"]", "packages = [\"fixapp\"]"] {
        let a = adapter(&format!(
            "channels = [\"ch\"]\nsubdirs = [\"noarch\", \"linux-64\"]\n{keys}"
        ))
        .unwrap();
        let src = docs("ch/", ALL);
        let out = sync(&a, "ch/noarch", &src);
        let e = by_path(&out);
        assert!(
            files(&json(inline(&e, "ch/noarch/repodata.json"))).is_empty(),
            "{keys}"
        );
        assert!(
            files(&json(inline(&e, "ch/noarch/current_repodata.json"))).is_empty(),
            "{keys}"
        );
        let zst = zstd::decode(inline(&e, "ch/noarch/repodata.json.zst"), 1 << 20).unwrap();
        assert_eq!(zst, inline(&e, "ch/noarch/repodata.json"), "{keys}");
        assert!(
            index_of(inline(&e, "ch/noarch/repodata_shards.msgpack.zst"))
                .0
                .is_empty(),
            "{keys}"
        );
        assert!(
            e.keys()
                .all(|p| !p.contains("fixlib") && !p.contains("/shards/")),
            "{keys}: {:?}",
            e.keys()
        );
        let app = sync(&a, "ch/linux-64", &src);
        let has_app = by_path(&app).contains_key("ch/linux-64/fixapp-1.0-h0_0.conda");
        assert_eq!(has_app, keys.starts_with("packages"), "{keys}");
    }
}

#[test]
fn hostile_records_and_shard_entries_are_dropped_and_the_good_ones_stay() {
    let a = adapter("channels = [\"h\"]\nsubdirs = [\"noarch\"]").unwrap();
    let src = Docs::new(BASE)
        .with("h/noarch/repodata.json", fx("hostile-noarch-repodata.json"))
        .with(
            "h/noarch/repodata_shards.msgpack.zst",
            fx("hostile-noarch-repodata_shards.msgpack.zst"),
        );
    let out = sync(&a, "h/noarch", &src);
    let e = by_path(&out);
    let packages: Vec<&String> = e
        .keys()
        .filter(|p| p.ends_with(".conda") || p.ends_with(".bz2"))
        .collect();
    assert_eq!(packages, ["h/noarch/good-1.0-h0_0.conda"]);
    // 15 bad records (one filename twice) and 5 bad shard entries.
    assert_eq!(out.rejected, 15 + 5, "{:?}", e.keys());
    assert_eq!(
        files(&json(inline(&e, "h/noarch/repodata.json"))),
        ["good-1.0-h0_0.conda"]
    );
    let (index, _, _) = index_of(inline(&e, "h/noarch/repodata_shards.msgpack.zst"));
    assert_eq!(
        index.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["good"]
    );
    assert!(
        matches!(
            e[&format!("h/noarch/shards/{}.msgpack.zst", index[0].1)].body,
            Body::Remote { .. }
        ),
        "upstream's shard of good, which lost no record"
    );
    assert!(
        !e.contains_key("h/noarch/repodata.json.zst"),
        "upstream has none"
    );
    for p in e.keys() {
        crate::path::RelPath::new(p.as_str()).unwrap();
    }
}

#[test]
fn base_urls_elsewhere_are_fetched_from_there_and_rewritten_away() {
    let mut doc = json(&fx("fixture-noarch-repodata.json"));
    doc["info"]["base_url"] = "https://cdn.upstream.test/files/noarch/".into();
    let mut index =
        zstd::decode(&fx("fixture-noarch-repodata_shards.msgpack.zst"), 1 << 20).unwrap();
    let parsed = Index::parse(&index).unwrap();
    let set = [
        ("base_url", "https://cdn.upstream.test/files/noarch/"),
        ("shards_base_url", "https://shards.upstream.test/n/"),
    ];
    let hashes: Vec<_> = parsed
        .shards
        .iter()
        .map(|(n, h)| (*n, h.unwrap()))
        .collect();
    index = parsed.render(&set, &hashes);
    let a = adapter("subdirs = [\"noarch\"]").unwrap();
    let src = Docs::new(BASE)
        .with("noarch/repodata.json", serde_json::to_vec(&doc).unwrap())
        .with("noarch/repodata_shards.msgpack.zst", zstd::encode(&index));
    let e_out = sync(&a, "noarch", &src);
    let e = by_path(&e_out);
    match &e["noarch/fixlib-1.1-h0_0.conda"].body {
        Body::Remote { url, .. } => assert_eq!(
            url,
            "https://cdn.upstream.test/files/noarch/fixlib-1.1-h0_0.conda"
        ),
        b => panic!("{b:?}"),
    }
    let served = json(inline(&e, "noarch/repodata.json"));
    assert_eq!(
        served["info"],
        serde_json::json!({"subdir": "noarch"}),
        "clients fetch packages from the mirror"
    );
    assert_eq!(files(&served), files(&doc));
    let (shards, base, shards_base) = index_of(inline(&e, "noarch/repodata_shards.msgpack.zst"));
    assert_eq!(
        (base.as_deref(), shards_base.as_deref()),
        (Some(""), Some("./shards/"))
    );
    match &e[&format!("noarch/shards/{}.msgpack.zst", shards[0].1)].body {
        Body::Remote { url, .. } => assert_eq!(
            url,
            &format!("https://shards.upstream.test/n/{}.msgpack.zst", shards[0].1)
        ),
        b => panic!("{b:?}"),
    }
    doc["info"]["base_url"] = "file:///etc/".into();
    let src = Docs::new(BASE).with("noarch/repodata.json", serde_json::to_vec(&doc).unwrap());
    let err = try_sync(&a, "noarch", &src).unwrap_err().to_string();
    assert!(
        err.contains("noarch/repodata.json") && err.contains("not an http(s) base URL"),
        "{err}"
    );
}

#[test]
fn plain_repodata_is_served_as_it_is_and_filtered_without_a_zst() {
    let a = adapter("subdirs = [\"noarch\"]").unwrap();
    let src = Docs::new(BASE).with("noarch/repodata.json", fx("fixture-noarch-repodata.json"));
    let out = sync(&a, "noarch", &src);
    let e = by_path(&out);
    assert_eq!(
        inline(&e, "noarch/repodata.json"),
        fx("fixture-noarch-repodata.json")
    );
    assert!(
        !e.keys().any(|p| p.contains(".zst") || p.contains("shards")),
        "{:?}",
        e.keys()
    );
    let a = adapter("subdirs = [\"noarch\"]\nexclude = [\"fixlib\"]").unwrap();
    let out = sync(&a, "noarch", &src);
    assert!(files(&json(inline(&by_path(&out), "noarch/repodata.json"))).is_empty());
    assert!(
        block_on(a.unit("linux-64", &src, NOW, true))
            .unwrap()
            .is_none(),
        "a subdir upstream lacks"
    );
}

#[test]
fn broken_documents_fail_the_subdir_naming_the_url_or_are_left_out() {
    let a = adapter("subdirs = [\"noarch\"]").unwrap();
    let zst = fx("fixture-noarch-repodata.json.zst");
    for (path, body, what) in [
        (
            "noarch/repodata.json",
            b"<html>".to_vec(),
            "not a repodata document",
        ),
        (
            "noarch/repodata.json",
            b"{\"packages\":{},\"packages\":{}}".to_vec(),
            "`packages` appears twice",
        ),
        (
            "noarch/repodata.json",
            b"{\"info\":{\"subdir\":\"linux-64\"}}".to_vec(),
            "info.subdir is \"linux-64\"",
        ),
        (
            "noarch/repodata.json.zst",
            zst[..zst.len() - 9].to_vec(),
            "bad zstd data",
        ),
    ] {
        let e = try_sync(&a, "noarch", &Docs::new(BASE).with(path, body))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("{BASE}{path}")) && e.contains(what),
            "{e}"
        );
    }
    // A broken shard index or current_repodata.json goes; repodata.json stays.
    let src = Docs::new(BASE)
        .with("noarch/repodata.json.zst", zst)
        .with(
            "noarch/repodata_shards.msgpack.zst",
            zstd::encode(b"\x81\xa4info\xc1"),
        )
        .with("noarch/current_repodata.json", b"[1]");
    let out = sync(&a, "noarch", &src);
    let e = by_path(&out);
    assert_eq!(out.rejected, 2);
    assert!(e.contains_key("noarch/repodata.json") && e.contains_key("noarch/repodata.json.zst"));
    assert!(
        !e.keys()
            .any(|p| p.contains("shards") || p.contains("current")),
        "{:?}",
        e.keys()
    );
}

#[test]
fn a_cooldown_hides_records_whose_age_is_unknown() {
    let mut doc = json(&fx("fixture-noarch-repodata.json"));
    doc["packages.conda"]["fixlib-1.1-h0_0.conda"]
        .as_object_mut()
        .unwrap()
        .remove("timestamp");
    let src = Docs::new(BASE).with("ch/noarch/repodata.json", serde_json::to_vec(&doc).unwrap());
    let cooled = adapter("channels = [\"ch\"]\nsubdirs = [\"noarch\"]\ncooldown = \"7d\"").unwrap();
    let out = sync(&cooled, "ch/noarch", &src);
    let e = by_path(&out);
    assert_eq!(
        files(&json(inline(&e, "ch/noarch/repodata.json"))),
        ["fixlib-1.0-h0_0.tar.bz2"]
    );
    assert!(!e.contains_key("ch/noarch/fixlib-1.1-h0_0.conda"));
    let open = adapter("channels = [\"ch\"]\nsubdirs = [\"noarch\"]").unwrap();
    let e2 = sync(&open, "ch/noarch", &src);
    assert!(
        by_path(&e2).contains_key("ch/noarch/fixlib-1.1-h0_0.conda"),
        "listed without a cooldown"
    );
}

// retain = "additive"

const V10: &str = "fixlib-1.0-h0_0.tar.bz2";
const V11: &str = "fixlib-1.1-h0_0.conda";
const V12: &str = "fixlib-1.2-h0_0.conda";
const V13A: &str = "fixlib-1.3a1-h0_0.conda";

fn retain_adapter(keys: &str) -> Conda {
    adapter(&format!(
        "channels = [\"ch\"]\nsubdirs = [\"noarch\"]\nretain = \"additive\"\n{keys}"
    ))
    .unwrap()
}

/// The fixture's noarch repodata.json, with a pre-release (1.3a1, dated
/// like 1.0 and 1.1) added.
fn with_prerelease() -> serde_json::Value {
    let mut doc = json(&fx("fixture-noarch-repodata.json"));
    let mut rec = doc["packages.conda"][V12].clone();
    rec["version"] = "1.3a1".into();
    rec["timestamp"] = 1_704_067_200_000u64.into();
    rec["sha256"] = Digest::sha256_of(b"1.3a1").hex().into();
    doc["packages.conda"][V13A] = rec;
    doc
}

/// `doc` without the records `gone`.
fn without(mut doc: serde_json::Value, gone: &[&str]) -> serde_json::Value {
    for k in ["packages", "packages.conda"] {
        if let Some(m) = doc.get_mut(k).and_then(|m| m.as_object_mut()) {
            for g in gone {
                m.remove(*g);
            }
        }
    }
    doc
}

/// Upstream's noarch of channel `ch`: `doc` without `gone` as
/// repodata.json and its .zst, the fixture's current_repodata.json without
/// `gone`, and the fixture's shard index.
fn upstream_without(doc: &serde_json::Value, gone: &[&str]) -> Docs {
    let bytes = serde_json::to_vec(&without(doc.clone(), gone)).unwrap();
    let current = without(json(&fx("fixture-noarch-current_repodata.json")), gone);
    Docs::new(BASE)
        .with("ch/noarch/repodata.json.zst", zstd::encode(&bytes))
        .with("ch/noarch/repodata.json", bytes)
        .with(
            "ch/noarch/current_repodata.json",
            serde_json::to_vec(&current).unwrap(),
        )
        .with(
            "ch/noarch/repodata_shards.msgpack.zst",
            fx("fixture-noarch-repodata_shards.msgpack.zst"),
        )
}

/// The generation `out` made, as the mirror serves it: the packages named
/// in `cached` are in the cache.
fn generation(out: &UnitOutput, cached: &[&str]) -> Vec<(String, crate::layout::Previous)> {
    crate::layouts::testing::generation(&out.entries, cached)
}

/// One sync of ch/noarch over `up` while `previous` is served: what it
/// serves, and what it reported retained.
fn sync_over(
    a: &Conda,
    mut up: Docs,
    previous: Vec<(String, crate::layout::Previous)>,
) -> (UnitOutput, (usize, Vec<Digest>)) {
    for (path, file) in previous {
        up = up.served(&path, file);
    }
    let out = sync(a, "ch/noarch", &up);
    let r = up
        .retained
        .lock()
        .unwrap()
        .remove("ch/noarch")
        .unwrap_or_default();
    (out, r)
}

fn sha256_of_record(doc: &serde_json::Value, kind: &str, file: &str) -> Digest {
    Digest::from_hex(Algo::Sha256, doc[kind][file]["sha256"].as_str().unwrap()).unwrap()
}

#[test]
fn additive_keeps_a_removed_package_in_every_document_while_its_file_is_cached() {
    let a = retain_adapter("");
    let fixture = json(&fx("fixture-noarch-repodata.json"));
    let (first, r) = sync_over(&a, docs("ch/", ALL), vec![]);
    assert_eq!(r, (0, vec![]), "nothing served before: nothing retained");
    // Upstream removes 1.0 (its whole `packages` map) and 1.1, and names
    // both in `removed`; only 1.0's file is cached.
    let mut removed = fixture.clone();
    removed.as_object_mut().unwrap().remove("packages");
    removed["removed"] = serde_json::json!([V10, V11]);
    let only = || upstream_without(&removed, &[V11]);
    let (second, (versions, artifacts)) = sync_over(&a, only(), generation(&first, &[V10]));
    assert_eq!(
        served_everywhere(&second),
        [V10, V12],
        "the cached removed package stays everywhere, the uncached one goes"
    );
    let e = by_path(&second);
    let main = json(inline(&e, "ch/noarch/repodata.json"));
    assert_eq!(
        main["packages"][V10], fixture["packages"][V10],
        "its record as it was served"
    );
    assert_eq!(
        main["removed"],
        serde_json::json!([V11]),
        "`removed` no longer names it"
    );
    let zst = zstd::decode(inline(&e, "ch/noarch/repodata.json.zst"), 1 << 20).unwrap();
    assert_eq!(
        zst,
        inline(&e, "ch/noarch/repodata.json"),
        "the .zst agrees"
    );
    assert_eq!(
        files(&json(inline(&e, "ch/noarch/current_repodata.json"))),
        [V12]
    );
    let was = by_path(&first)[&format!("ch/noarch/{V10}")].body.clone();
    assert_eq!(
        e[&format!("ch/noarch/{V10}")].body,
        was,
        "the URL, size and sha256 it was served with"
    );
    assert_eq!(
        (versions, artifacts),
        (1, vec![sha256_of_record(&fixture, "packages", V10)])
    );
    // Still cached: still kept, from what the last generation served.
    let (third, (versions, _)) = sync_over(&a, only(), generation(&second, &[V10]));
    assert_eq!(served_everywhere(&third), [V10, V12]);
    assert_eq!(versions, 1);
    // Evicted since: gone at the next generation.
    let (fourth, r) = sync_over(&a, only(), generation(&third, &[]));
    let e = by_path(&fourth);
    assert_eq!(files(&json(inline(&e, "ch/noarch/repodata.json"))), [V12]);
    assert!(!e.contains_key(&format!("ch/noarch/{V10}")));
    assert_eq!(r, (0, vec![]));
    // Back upstream: served as upstream has it, not counted.
    let (fifth, (versions, _)) = sync_over(&a, docs("ch/", ALL), generation(&third, &[V10]));
    assert_eq!(served_everywhere(&fifth), [V10, V11, V12]);
    assert_eq!(versions, 0);
}

#[test]
fn a_blocked_pre_release_or_cooled_package_is_never_retained() {
    let all = with_prerelease();
    let (first, _) = sync_over(&retain_adapter(""), upstream_without(&all, &[]), vec![]);
    let cached = [V10, V11, V13A];
    let served = || generation(&first, &cached);
    // Upstream keeps 1.2 only; the mirror now blocks 1.0 and drops pre-releases.
    let only = || upstream_without(&all, &[V10, V11, V13A]);
    let strict = retain_adapter("block = [\"fixlib@1.0\"]\nprereleases = false");
    let (out, (versions, artifacts)) = sync_over(&strict, only(), served());
    assert_eq!(
        served_everywhere(&out),
        [V11, V12],
        "the blocked package and the pre-release are not retained"
    );
    assert_eq!(
        (versions, artifacts),
        (1, vec![sha256_of_record(&all, "packages.conda", V11)])
    );
    // keep_latest counts retained versions as it counts upstream's.
    let (out, (versions, _)) = sync_over(&retain_adapter("keep_latest = 2"), only(), served());
    assert_eq!(served_everywhere(&out), [V12, V13A]);
    assert_eq!(versions, 1);
    // A cooldown dates them by their own timestamps: 1.2 (2099) is hidden,
    // the retained ones (2024) are served.
    let (out, (versions, _)) = sync_over(
        &retain_adapter("cooldown = \"7d\"\nprereleases = false"),
        only(),
        served(),
    );
    assert_eq!(
        files(&json(inline(&by_path(&out), "ch/noarch/repodata.json"))),
        [V10, V11]
    );
    assert_eq!(versions, 2);
}

#[test]
fn mirror_retention_drops_a_removed_package_even_when_cached() {
    for keys in ["", "retain = \"mirror\""] {
        let a = adapter(&format!(
            "channels = [\"ch\"]\nsubdirs = [\"noarch\"]\n{keys}"
        ))
        .unwrap();
        let fixture = json(&fx("fixture-noarch-repodata.json"));
        let first = sync(&a, "ch/noarch", &docs("ch/", ALL));
        let (out, r) = sync_over(
            &a,
            upstream_without(&fixture, &[V10, V11]),
            generation(&first, &[V10, V11]),
        );
        let e = by_path(&out);
        assert_eq!(
            files(&json(inline(&e, "ch/noarch/repodata.json"))),
            [V12],
            "{keys:?}"
        );
        assert!(!e.contains_key(&format!("ch/noarch/{V10}")), "{keys:?}");
        assert_eq!(r, (0, vec![]), "nothing reported under mirror retention");
    }
}

#[test]
fn an_unreadable_served_repodata_or_other_cached_bytes_retain_nothing() {
    use crate::layout::Previous;
    let a = retain_adapter("");
    let fixture = json(&fx("fixture-noarch-repodata.json"));
    let (first, _) = sync_over(&a, docs("ch/", ALL), vec![]);
    let only = || upstream_without(&fixture, &[V10]);
    let served_with = |path: &str, f: &dyn Fn(&mut Previous)| {
        let mut g = generation(&first, &[V10]);
        for (p, file) in &mut g {
            if p == path {
                f(file);
            }
        }
        g
    };
    let broken = served_with("ch/noarch/repodata.json", &|f| {
        *f = Previous::Doc(b"{\"packages\": ".to_vec())
    });
    let (out, r) = sync_over(&a, only(), broken);
    assert_eq!(
        files(&json(inline(&by_path(&out), "ch/noarch/repodata.json"))),
        [V11, V12]
    );
    assert_eq!(r, (0, vec![]));
    // The cache holds bytes of another sha256 at 1.0's path.
    let other = served_with(&format!("ch/noarch/{V10}"), &|f| {
        if let Previous::Artifact { digest, .. } = f {
            *digest = Digest::sha256_of(b"something else");
        }
    });
    let (out, r) = sync_over(&a, only(), other);
    assert_eq!(
        files(&json(inline(&by_path(&out), "ch/noarch/repodata.json"))),
        [V11, V12]
    );
    assert_eq!(r, (0, vec![]));
}

#[test]
fn additive_skips_an_unchanged_subdir_and_drops_an_evicted_package_when_asked_in_full() {
    let a = retain_adapter("");
    let fixture = json(&fx("fixture-noarch-repodata.json"));
    let (first, _) = sync_over(&a, docs("ch/", ALL), vec![]);
    let only = || upstream_without(&fixture, &[V10]);
    let (second, (versions, _)) = sync_over(&a, only(), generation(&first, &[V10]));
    assert_eq!(versions, 1, "1.0 is retained");
    // A sync where upstream's documents are unchanged.
    let refresh = |cached: &[&str], full: bool| {
        let mut up = only().unchanged();
        for (p, f) in generation(&second, cached) {
            up = up.served(&p, f);
        }
        block_on(a.unit("ch/noarch", &up, NOW, full))
            .unwrap()
            .unwrap()
    };
    assert!(
        refresh(&[V10], false).unchanged,
        "the same tree: not rebuilt"
    );
    // Once 1.0 is evicted the mirror asks again in full (`mirror/sync.rs`).
    let evicted = refresh(&[], true);
    assert!(!evicted.unchanged, "1.0 evicted: rebuilt");
    assert_eq!(
        files(&json(inline(&by_path(&evicted), "ch/noarch/repodata.json"))),
        [V11, V12]
    );
}
