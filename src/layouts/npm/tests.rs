use super::*;
use crate::layout::Previous;
use crate::layouts::testing;

fn adapter(filter: Option<&[&str]>) -> Npm {
    let keys = testing::filter("packages", filter) + "public_url = \"http://mirror.example/npm\"";
    testing::configure(
        &LAYOUT,
        "https://registry.upstream.test/",
        &keys,
        Npm::from_keys,
    )
    .unwrap()
}

fn sri(d: &[u8]) -> String {
    crate::digest::encode_base64(d)
}

#[test]
fn names_scopes_and_lookups() {
    assert!(is_package_name("express") && is_package_name("@types/node"));
    for bad in [
        "", ".hidden", "_x", "@scope", "@/x", "a/b", "@a/b/c", "a b", "@a/..",
    ] {
        assert!(!is_package_name(bad), "{bad}");
    }
    let a = adapter(None);
    assert_eq!(a.lazy_unit("", "express").as_deref(), Some("express"));
    assert_eq!(
        a.lazy_unit("@types", "node").as_deref(),
        Some("@types/node")
    );
    assert_eq!(a.lazy_unit("", "@types"), None);
    assert!(a.lazy_dir("", "@types") && !a.lazy_dir("", "express") && !a.lazy_dir("express", "-"));
    assert_eq!(a.lazy_unit("express/-", "x.tgz"), None);
    let f = adapter(Some(&["@types/*", "express"]));
    assert!(f.lazy_unit("@types", "node").is_some() && f.lazy_unit("", "lodash").is_none());
}

#[test]
fn integrity_prefers_sha512_then_shasum() {
    let d512 = {
        let mut h = crate::digest::Hasher::new(Algo::Sha512);
        h.update(b"t");
        h.finish()
    };
    let sha1 = "a".repeat(40);
    let dist = serde_json::json!({"integrity": format!("sha1-{} sha512-{}", sri(&[1; 20]), sri(d512.as_bytes())), "shasum": sha1});
    assert_eq!(dist_digest(&dist), Some(d512));
    let dist = serde_json::json!({"shasum": sha1});
    assert_eq!(dist_digest(&dist).unwrap().algo(), Algo::Sha1);
    assert_eq!(
        dist_digest(&serde_json::json!({"integrity": "sha512-!!"})),
        None
    );
    assert_eq!(
        dist_digest(&serde_json::json!({"integrity": "md5-AAAA"})),
        None
    );
}

#[test]
fn packuments_point_at_the_mirror_and_drop_what_cannot_be_verified() {
    let good = sri(&[7; 64]);
    let doc = serde_json::json!({
        "name": "@s/demo",
        "dist-tags": {"latest": "1.1.0", "next": "2.0.0"},
        "time": {"modified": "2026-01-01T00:00:00Z"},
        "versions": {
            "1.0.0": {"name": "@s/demo", "version": "1.0.0", "readme": "long",
                      "scripts": {"postinstall": "x"},
                      "dependencies": {"a": "^1"},
                      "dist": {"tarball": "https://registry.upstream.test/@s/demo/-/demo-1.0.0.tgz", "integrity": format!("sha512-{good}")}},
            "1.1.0": {"name": "@s/demo", "version": "1.1.0",
                      "dist": {"tarball": "/@s/demo/-/demo-1.1.0.tgz", "shasum": "b".repeat(40)}},
            "2.0.0": {"name": "@s/demo", "version": "2.0.0",
                      "dist": {"tarball": "https://registry.upstream.test/@s/demo/-/demo-2.0.0.tgz"}},
            "3.0.0": {"name": "@s/demo", "version": "3.0.0",
                      "dist": {"tarball": "https://registry.upstream.test/@s/demo/-/..", "shasum": "b".repeat(40)}}
        }
    });
    let a = adapter(None);
    let Rewritten {
        full,
        abbreviated,
        entries,
        dropped,
        ..
    } = a
        .rewrite(
            "@s/demo",
            "https://registry.upstream.test/@s%2fdemo",
            doc.to_string().as_bytes(),
            0,
        )
        .unwrap();
    let full: serde_json::Value =
        serde_json::from_slice(&full).expect("the served packument is JSON");
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    let v = &full["versions"];
    assert!(v.get("2.0.0").is_none() && v.get("3.0.0").is_none());
    assert_eq!(
        v["1.0.0"]["dist"]["tarball"],
        "http://mirror.example/npm/@s/demo/-/demo-1.0.0.tgz"
    );
    assert_eq!(
        full["dist-tags"],
        serde_json::json!({"latest": "1.1.0"}),
        "a tag of a dropped version goes"
    );
    let mut paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["@s/demo/-/demo-1.0.0.tgz", "@s/demo/-/demo-1.1.0.tgz"]
    );
    let Body::Remote { url, .. } = &entries
        .iter()
        .find(|e| e.path.as_str().ends_with("1.1.0.tgz"))
        .unwrap()
        .body
    else {
        panic!()
    };
    assert_eq!(
        url, "https://registry.upstream.test/@s/demo/-/demo-1.1.0.tgz",
        "relative tarball URLs resolve"
    );

    let ab: serde_json::Value = serde_json::from_slice(&abbreviated).expect("JSON");
    assert_eq!(ab["name"], "@s/demo");
    assert_eq!(ab["dist-tags"], serde_json::json!({"latest": "1.1.0"}));
    assert_eq!(
        ab["versions"]["1.0.0"]["dist"]["tarball"],
        "http://mirror.example/npm/@s/demo/-/demo-1.0.0.tgz"
    );
    assert!(ab["versions"].get("2.0.0").is_none());
    // What the mirror does not change is as upstream had it.
    assert_eq!(full["versions"]["1.0.0"]["readme"], "long");
    assert_eq!(full["time"], doc["time"]);
    assert_eq!(ab["modified"], "2026-01-01T00:00:00Z");
    assert!(ab["versions"]["1.0.0"].get("readme").is_none());
    assert_eq!(ab["versions"]["1.0.0"]["hasInstallScript"], true);
    assert!(ab["versions"]["1.1.0"].get("hasInstallScript").is_none());
    assert_eq!(ab["versions"]["1.0.0"]["dependencies"]["a"], "^1");
    assert!(
        a.rewrite("other", "https://r/other", full.to_string().as_bytes(), 0)
            .is_err(),
        "a packument of another name"
    );
}

#[test]
fn duplicate_keys_keep_the_last_and_escapes_survive() {
    let sri_ = format!("sha512-{}", sri(&[9; 64]));
    let text = format!(
        r#"{{"name":"dup","name":"dup","versions":{{"1.0.0":{{"version":"0","version":"1.0.0","description":"a \"quoted\" \u00e9 line\n","dist":{{"tarball":"https://registry.upstream.test/dup/-/dup-1.0.0.tgz","integrity":"{sri_}"}}}},"1.0.0":{{"version":"1.0.0","dist":{{"tarball":"https://registry.upstream.test/dup/-/dup-1.0.0.tgz","integrity":"{sri_}"}},"weird\"key":1}}}},"dist-tags":{{"latest":"1.0.0"}}}}"#
    );
    let r = adapter(None)
        .rewrite(
            "dup",
            "https://registry.upstream.test/dup",
            text.as_bytes(),
            0,
        )
        .unwrap();
    let full: serde_json::Value = serde_json::from_slice(&r.full).unwrap();
    assert_eq!(r.entries.len(), 1);
    assert_eq!(
        full["versions"]["1.0.0"]["weird\"key"], 1,
        "the last 1.0.0 wins"
    );
    assert!(full["versions"]["1.0.0"].get("description").is_none());
    let ab: serde_json::Value = serde_json::from_slice(&r.abbreviated).unwrap();
    assert_eq!(ab["dist-tags"]["latest"], "1.0.0");
    assert!(
        adapter(None)
            .rewrite("dup", "https://r/dup", b"[1]", 0)
            .is_err()
    );
    assert!(
        adapter(None)
            .rewrite("dup", "https://r/dup", b"{\"name\":\"dup\"}", 0)
            .is_err()
    );
}

/// A packument of `demo` with these versions, each published at the day given.
fn dated(versions: &[(&str, i64)], latest: &str) -> Vec<u8> {
    let good = format!("sha512-{}", sri(&[7; 64]));
    let mut vs = serde_json::Map::new();
    let mut time = serde_json::Map::new();
    time.insert("created".into(), "2020-01-01T00:00:00Z".into());
    for (v, day) in versions {
        vs.insert(v.to_string(), serde_json::json!({"name": "demo", "version": v,
            "dist": {"tarball": format!("https://registry.upstream.test/demo/-/demo-{v}.tgz"), "integrity": good}}));
        time.insert(
            v.to_string(),
            crate::timestamp::format_rfc3339(day * 86400).into(),
        );
    }
    serde_json::json!({"name": "demo", "dist-tags": {"latest": latest, "beta": "2.0.0-beta.1"},
        "time": time, "versions": vs})
    .to_string()
    .into_bytes()
}

fn policy_adapter(keys: &str) -> Npm {
    let keys = format!("public_url = \"http://mirror.example/npm\"\n{keys}");
    testing::configure(
        &LAYOUT,
        "https://registry.upstream.test/",
        &keys,
        Npm::from_keys,
    )
    .unwrap()
}

fn served(r: &Rewritten) -> (serde_json::Value, serde_json::Value, Vec<String>) {
    let full: serde_json::Value = serde_json::from_slice(&r.full).unwrap();
    let ab: serde_json::Value = serde_json::from_slice(&r.abbreviated).unwrap();
    let mut tgz: Vec<String> = r
        .entries
        .iter()
        .map(|e| e.path.as_str().to_string())
        .collect();
    tgz.sort();
    (full, ab, tgz)
}

fn keys_of(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn a_cooldown_hides_young_versions_from_both_documents_and_moves_latest() {
    let body = dated(
        &[
            ("1.0.0", 1),
            ("1.1.0", 8),
            ("2.0.0-beta.1", 9),
            ("1.2.0", 10),
        ],
        "1.2.0",
    );
    let a = policy_adapter("cooldown = \"3d\"");
    let r = a
        .rewrite(
            "demo",
            "https://registry.upstream.test/demo",
            &body,
            12 * 86400 - 1,
        )
        .unwrap();
    assert_eq!(r.hidden, 2);
    let (full, ab, tgz) = served(&r);
    assert_eq!(keys_of(&full["versions"]), ["1.0.0", "1.1.0"]);
    assert_eq!(keys_of(&ab["versions"]), ["1.0.0", "1.1.0"]);
    assert_eq!(
        tgz,
        ["demo/-/demo-1.0.0.tgz", "demo/-/demo-1.1.0.tgz"],
        "a hidden tarball is not in the tree"
    );
    for doc in [&full, &ab] {
        assert_eq!(
            doc["dist-tags"],
            serde_json::json!({"latest": "1.1.0"}),
            "latest moves, beta goes"
        );
    }
    assert_eq!(keys_of(&full["time"]), ["1.0.0", "1.1.0", "created"]);
    // Time passes: the same upstream document serves more.
    let later = a
        .rewrite(
            "demo",
            "https://registry.upstream.test/demo",
            &body,
            20 * 86400,
        )
        .unwrap();
    let (full, ..) = served(&later);
    assert_eq!(full["dist-tags"]["latest"], "1.2.0");
    assert_eq!(full["dist-tags"]["beta"], "2.0.0-beta.1");
    assert!(a.changes_with_time());
}

#[test]
fn undated_versions_are_hidden_under_a_cooldown_only() {
    let mut doc: serde_json::Value =
        serde_json::from_slice(&dated(&[("1.0.0", 1), ("1.1.0", 1)], "1.1.0")).unwrap();
    doc["time"].as_object_mut().unwrap().remove("1.1.0");
    let body = doc.to_string();
    let cooled = policy_adapter("cooldown = \"1d\"")
        .rewrite("demo", "https://r/demo", body.as_bytes(), 30 * 86400)
        .unwrap();
    assert_eq!(keys_of(&served(&cooled).0["versions"]), ["1.0.0"]);
    let plain = policy_adapter("")
        .rewrite("demo", "https://r/demo", body.as_bytes(), 30 * 86400)
        .unwrap();
    assert_eq!(keys_of(&served(&plain).0["versions"]), ["1.0.0", "1.1.0"]);
    assert!(!policy_adapter("").changes_with_time());
}

#[test]
fn keep_latest_prereleases_and_block_apply_to_every_document() {
    let body = dated(
        &[
            ("1.0.0", 1),
            ("1.1.0", 2),
            ("1.10.0", 3),
            ("1.9.0", 4),
            ("2.0.0-beta.1", 5),
        ],
        "1.10.0",
    );
    let a = policy_adapter(
        "keep_latest = 2\nprereleases = false\nblock = [\"demo@1.10.0\", \"evil\"]\n\
         [[override]]\nunits = [\"other*\"]\nkeep_latest = 1\n",
    );
    let r = a
        .rewrite("demo", "https://r/demo", &body, 10 * 86400)
        .unwrap();
    let (full, ab, tgz) = served(&r);
    // 1.10.0 is blocked, the beta dropped; the two newest of the rest by semver.
    assert_eq!(keys_of(&full["versions"]), ["1.1.0", "1.9.0"]);
    assert_eq!(keys_of(&ab["versions"]), ["1.1.0", "1.9.0"]);
    assert_eq!(tgz, ["demo/-/demo-1.1.0.tgz", "demo/-/demo-1.9.0.tgz"]);
    assert_eq!(ab["dist-tags"], serde_json::json!({"latest": "1.9.0"}));
    // A blocked package is not there at all, not even on a lookup.
    assert_eq!(a.lazy_unit("", "evil"), None);
    let docs = testing::Docs::new("https://r/").with("evil", &body);
    let out = testing::block_on(a.unit("evil", &docs, 0, true)).unwrap();
    assert!(
        out.is_none() && docs.asked.lock().unwrap().is_empty(),
        "a blocked unit is never fetched"
    );
}

/// The sha512 a tarball of `demo` at `version` is listed with (each version its own).
fn tarball_digest(version: &str) -> Digest {
    let mut h = crate::digest::Hasher::new(Algo::Sha512);
    h.update(version.as_bytes());
    h.finish()
}

fn integrity(version: &str) -> String {
    format!("sha512-{}", sri(tarball_digest(version).as_bytes()))
}

fn shasum(version: &str) -> String {
    let mut h = crate::digest::Hasher::new(Algo::Sha1);
    h.update(version.as_bytes());
    h.finish().hex()
}

/// The packument of `demo` upstream with these versions (each published at
/// the day given, with its own integrity and shasum) and dist-tags; `time`
/// dates only the versions listed, as after an unpublish.
fn demo(versions: &[(&str, i64)], tags: serde_json::Value) -> Vec<u8> {
    let mut vs = serde_json::Map::new();
    let mut time = serde_json::Map::new();
    time.insert("created".into(), "2020-01-01T00:00:00Z".into());
    time.insert("modified".into(), "2021-01-01T00:00:00Z".into());
    for (v, day) in versions {
        vs.insert(
            v.to_string(),
            serde_json::json!({"name": "demo", "version": v, "description": format!("demo {v}"),
            "scripts": {"postinstall": "true"},
            "dist": {"tarball": format!("https://registry.upstream.test/demo/-/demo-{v}.tgz"),
                     "integrity": integrity(v), "shasum": shasum(v)}}),
        );
        time.insert(
            v.to_string(),
            crate::timestamp::format_rfc3339(day * 86400).into(),
        );
    }
    serde_json::json!({"name": "demo", "dist-tags": tags, "time": time, "versions": vs})
        .to_string()
        .into_bytes()
}

/// The generation being served, built from the sync output `served`, with
/// the tarballs (by file name) in `cached` in the cache.
fn generation(served: &UnitOutput, cached: &[&str]) -> Vec<(String, Previous)> {
    testing::generation(&served.entries, cached)
}

/// One sync of `demo` against the packument `upstream` while `previous` is
/// served: what it serves, and what it reported retained.
fn sync_over(
    a: &Npm,
    upstream: &[u8],
    previous: Vec<(String, Previous)>,
) -> (UnitOutput, (usize, Vec<Digest>)) {
    let mut docs = testing::Docs::new("https://registry.upstream.test/").with("demo", upstream);
    for (path, file) in previous {
        docs = docs.served(&path, file);
    }
    let out = testing::block_on(a.unit("demo", &docs, 400 * 86400, true))
        .unwrap()
        .unwrap();
    let r = docs
        .retained
        .lock()
        .unwrap()
        .remove("demo")
        .unwrap_or_default();
    (out, r)
}

/// [`sync_over`] the generation `served` made, `cached` its cached tarballs.
fn retain_sync(
    a: &Npm,
    upstream: &[u8],
    served: &UnitOutput,
    cached: &[&str],
) -> (UnitOutput, (usize, Vec<Digest>)) {
    sync_over(a, upstream, generation(served, cached))
}

fn nothing_served() -> UnitOutput {
    UnitOutput {
        entries: vec![],
        rejected: 0,
        unchanged: false,
    }
}

/// What a sync serves: the full packument, the install document and the
/// tarballs in the tree (by file name).
fn documents(out: &UnitOutput) -> (serde_json::Value, serde_json::Value, Vec<String>) {
    let doc = |file: &str| {
        let e = out
            .entries
            .iter()
            .find(|e| e.path.as_str() == format!("demo/{file}"))
            .unwrap();
        let Body::Inline(b) = &e.body else {
            panic!("{file} is not inline")
        };
        serde_json::from_slice::<serde_json::Value>(b).expect("JSON")
    };
    let mut tgz: Vec<String> = out
        .entries
        .iter()
        .filter(|e| matches!(e.body, Body::Remote { .. }))
        .map(|e| e.path.file_name().to_string())
        .collect();
    tgz.sort();
    (doc(FULL), doc(ABBREVIATED), tgz)
}

#[test]
fn additive_keeps_a_removed_version_while_its_tarball_is_cached_as_it_was_served() {
    let a = policy_adapter("retain = \"additive\"\n");
    let all = demo(
        &[("1.0.0", 1), ("1.1.0", 2), ("2.0.0", 3)],
        serde_json::json!({"latest": "2.0.0"}),
    );
    let (first, r) = retain_sync(&a, &all, &nothing_served(), &[]);
    assert_eq!(r, (0, vec![]), "nothing served before: nothing retained");
    let (full1, ab1, _) = documents(&first);
    // Upstream unpublishes 1.0.0 and 1.1.0; only 1.0.0's tarball is cached.
    let only = demo(&[("2.0.0", 3)], serde_json::json!({"latest": "2.0.0"}));
    let (second, (versions, artifacts)) = retain_sync(&a, &only, &first, &["demo-1.0.0.tgz"]);
    let (full, ab, tgz) = documents(&second);
    assert_eq!(
        keys_of(&full["versions"]),
        ["1.0.0", "2.0.0"],
        "the cached removed version stays, the uncached one goes"
    );
    assert_eq!(keys_of(&ab["versions"]), ["1.0.0", "2.0.0"]);
    assert_eq!(tgz, ["demo-1.0.0.tgz", "demo-2.0.0.tgz"]);
    assert_eq!(
        full["versions"]["1.0.0"], full1["versions"]["1.0.0"],
        "served as it was"
    );
    assert_eq!(ab["versions"]["1.0.0"], ab1["versions"]["1.0.0"]);
    assert_eq!(
        full["versions"]["1.0.0"]["dist"]["integrity"],
        integrity("1.0.0")
    );
    assert_eq!(full["versions"]["1.0.0"]["dist"]["shasum"], shasum("1.0.0"));
    assert_eq!(
        ab["versions"]["1.0.0"]["dist"]["integrity"],
        integrity("1.0.0")
    );
    assert_eq!(
        full["versions"]["1.0.0"]["dist"]["tarball"],
        "http://mirror.example/npm/demo/-/demo-1.0.0.tgz"
    );
    assert_eq!(
        full["time"]["1.0.0"], full1["time"]["1.0.0"],
        "its time is the one served"
    );
    assert_eq!(
        keys_of(&full["time"]),
        ["1.0.0", "2.0.0", "created", "modified"]
    );
    assert_eq!(full["dist-tags"], serde_json::json!({"latest": "2.0.0"}));
    assert_eq!((versions, artifacts), (1, vec![tarball_digest("1.0.0")]));
    // The tarball: the digest and upstream URL it was served with.
    let e = second
        .entries
        .iter()
        .find(|e| e.path.as_str() == "demo/-/demo-1.0.0.tgz")
        .unwrap();
    assert!(matches!(&e.body, Body::Remote { url, digest, .. }
        if *digest == tarball_digest("1.0.0") && url == "https://registry.upstream.test/demo/-/demo-1.0.0.tgz"));
    // Still cached: still kept, from what the last generation served.
    let (third, (versions, _)) = retain_sync(&a, &only, &second, &["demo-1.0.0.tgz"]);
    assert_eq!(documents(&third).0, full);
    assert_eq!(versions, 1);
    // Evicted since: gone at the next generation, from every document.
    let (fourth, r) = retain_sync(&a, &only, &third, &[]);
    let (full, ab, tgz) = documents(&fourth);
    assert_eq!(keys_of(&full["versions"]), ["2.0.0"]);
    assert_eq!(keys_of(&ab["versions"]), ["2.0.0"]);
    assert_eq!(tgz, ["demo-2.0.0.tgz"]);
    assert_eq!(keys_of(&full["time"]), ["2.0.0", "created", "modified"]);
    assert_eq!(r, (0, vec![]));
    // Back upstream: served as upstream has it, not counted as retained.
    let (fifth, (versions, _)) = retain_sync(&a, &all, &third, &["demo-1.0.0.tgz"]);
    assert_eq!(
        keys_of(&documents(&fifth).0["versions"]),
        ["1.0.0", "1.1.0", "2.0.0"]
    );
    assert_eq!(versions, 0);
}

#[test]
fn a_removed_version_is_not_retained_from_other_bytes_or_an_unreadable_packument() {
    let a = policy_adapter("retain = \"additive\"\n");
    let all = demo(
        &[("1.0.0", 1), ("2.0.0", 3)],
        serde_json::json!({"latest": "2.0.0"}),
    );
    let only = demo(&[("2.0.0", 3)], serde_json::json!({"latest": "2.0.0"}));
    let (first, _) = retain_sync(&a, &all, &nothing_served(), &[]);
    // The cache holds bytes of another digest at 1.0.0's path.
    let mut other = generation(&first, &["demo-1.0.0.tgz"]);
    for (path, file) in &mut other {
        if let (true, Previous::Artifact { digest, .. }) = (path.ends_with("1.0.0.tgz"), file) {
            *digest = tarball_digest("something else");
        }
    }
    let (out, r) = sync_over(&a, &only, other);
    assert_eq!(keys_of(&documents(&out).0["versions"]), ["2.0.0"]);
    assert_eq!(r, (0, vec![]));
    // The served packument cannot be read: upstream's versions are served.
    let mut broken = generation(&first, &["demo-1.0.0.tgz"]);
    for (path, file) in &mut broken {
        if path.as_str() == "demo/index.json" {
            *file = Previous::Doc(b"{\"name\": ".to_vec());
        }
    }
    let (out, r) = sync_over(&a, &only, broken);
    assert_eq!(keys_of(&documents(&out).0["versions"]), ["2.0.0"]);
    assert_eq!(r, (0, vec![]));
}

#[test]
fn a_blocked_or_filtered_version_is_never_retained() {
    let all = demo(
        &[
            ("1.0.0", 1),
            ("1.1.0", 2),
            ("2.0.0-beta.1", 3),
            ("2.0.0", 4),
        ],
        serde_json::json!({"latest": "2.0.0", "beta": "2.0.0-beta.1"}),
    );
    let (first, _) = retain_sync(
        &policy_adapter("retain = \"additive\"\n"),
        &all,
        &nothing_served(),
        &[],
    );
    // Upstream removes all but 2.0.0, every tarball is cached, and the
    // mirror's policy now blocks 1.1.0 and drops pre-releases.
    let cached = ["demo-1.0.0.tgz", "demo-1.1.0.tgz", "demo-2.0.0-beta.1.tgz"];
    let only = demo(&[("2.0.0", 4)], serde_json::json!({"latest": "2.0.0"}));
    let strict =
        policy_adapter("retain = \"additive\"\nblock = [\"demo@1.1.0\"]\nprereleases = false\n");
    let (second, (versions, artifacts)) = retain_sync(&strict, &only, &first, &cached);
    let (full, ab, tgz) = documents(&second);
    assert_eq!(
        keys_of(&full["versions"]),
        ["1.0.0", "2.0.0"],
        "the blocked version and the pre-release are not retained"
    );
    assert_eq!(keys_of(&ab["versions"]), ["1.0.0", "2.0.0"]);
    assert_eq!(tgz, ["demo-1.0.0.tgz", "demo-2.0.0.tgz"]);
    assert_eq!(
        keys_of(&full["time"]),
        ["1.0.0", "2.0.0", "created", "modified"]
    );
    assert_eq!(
        (versions, artifacts),
        (1, vec![tarball_digest("1.0.0")]),
        "only what is served counts"
    );
    // keep_latest counts retained versions as it counts upstream's.
    let newest = policy_adapter("retain = \"additive\"\nkeep_latest = 2\n");
    let (third, (versions, _)) = retain_sync(&newest, &only, &first, &cached);
    let (full, ab, _) = documents(&third);
    assert_eq!(keys_of(&full["versions"]), ["2.0.0", "2.0.0-beta.1"]);
    assert_eq!(keys_of(&ab["versions"]), ["2.0.0", "2.0.0-beta.1"]);
    assert_eq!(versions, 1);
}

#[test]
fn dist_tags_never_name_a_version_not_served() {
    let a = policy_adapter("retain = \"additive\"\n");
    let all = demo(
        &[("1.0.0", 1), ("1.1.0", 2), ("2.0.0", 3), ("3.0.0", 4)],
        serde_json::json!({"latest": "3.0.0"}),
    );
    let (first, _) = retain_sync(&a, &all, &nothing_served(), &[]);
    // Upstream lists 1.0.0 only, its tags still naming removed versions
    // and one it never had; only 2.0.0's tarball is cached.
    let only = demo(
        &[("1.0.0", 1)],
        serde_json::json!({"latest": "3.0.0", "old": "1.1.0", "stable": "2.0.0", "next": "4.0.0"}),
    );
    let (second, _) = retain_sync(&a, &only, &first, &["demo-2.0.0.tgz"]);
    let (full, ab, _) = documents(&second);
    for doc in [&full, &ab] {
        assert_eq!(keys_of(&doc["versions"]), ["1.0.0", "2.0.0"]);
        assert_eq!(
            doc["dist-tags"],
            serde_json::json!({"latest": "2.0.0", "stable": "2.0.0"}),
            "latest moves to the newest served version (a retained one), tags of versions not served go"
        );
        for (tag, v) in doc["dist-tags"].as_object().unwrap() {
            assert!(
                doc["versions"].get(v.as_str().unwrap()).is_some(),
                "{tag} names {v}"
            );
        }
    }
}

#[test]
fn mirror_retention_drops_a_removed_version_even_when_cached() {
    let a = policy_adapter("retain = \"mirror\"\n");
    let all = demo(
        &[("1.0.0", 1), ("2.0.0", 3)],
        serde_json::json!({"latest": "2.0.0"}),
    );
    let (first, _) = retain_sync(&a, &all, &nothing_served(), &[]);
    let only = demo(&[("2.0.0", 3)], serde_json::json!({"latest": "2.0.0"}));
    let (second, r) = retain_sync(&a, &only, &first, &["demo-1.0.0.tgz"]);
    let (full, ab, tgz) = documents(&second);
    assert_eq!(keys_of(&full["versions"]), ["2.0.0"]);
    assert_eq!(keys_of(&ab["versions"]), ["2.0.0"]);
    assert_eq!(tgz, ["demo-2.0.0.tgz"]);
    assert_eq!(r, (0, vec![]), "nothing reported under mirror retention");
}

#[test]
fn dist_tags_serve_only_the_tags_named_and_the_versions_they_name() {
    let body = dated(
        &[
            ("1.0.0", 1),
            ("1.1.0", 8),
            ("2.0.0-beta.1", 9),
            ("1.2.0", 10),
        ],
        "1.2.0",
    );
    let url = "https://registry.upstream.test/demo";
    let r = policy_adapter("dist_tags = \"latest\"")
        .rewrite("demo", url, &body, 30 * 86400)
        .unwrap();
    let (full, ab, tgz) = served(&r);
    assert_eq!(keys_of(&full["versions"]), ["1.2.0"]);
    assert_eq!(keys_of(&ab["versions"]), ["1.2.0"]);
    assert_eq!(
        tgz,
        ["demo/-/demo-1.2.0.tgz"],
        "an untagged tarball is not in the tree"
    );
    for doc in [&full, &ab] {
        assert_eq!(
            doc["dist-tags"],
            serde_json::json!({"latest": "1.2.0"}),
            "beta is not served"
        );
    }
    assert_eq!(keys_of(&full["time"]), ["1.2.0", "created"]);
    assert_eq!(r.hidden, 3);
    // Globs; each tag's version once.
    let r = policy_adapter("dist_tags = [\"lat*\", \"beta\"]")
        .rewrite("demo", url, &body, 30 * 86400)
        .unwrap();
    let (full, ..) = served(&r);
    assert_eq!(keys_of(&full["versions"]), ["1.2.0", "2.0.0-beta.1"]);
    assert_eq!(
        full["dist-tags"],
        serde_json::json!({"latest": "1.2.0", "beta": "2.0.0-beta.1"})
    );
    // Under a cooldown hiding 1.2.0 and the beta, latest moves to 1.1.0,
    // which is served: the package stays installable.
    let r = policy_adapter("cooldown = \"3d\"\ndist_tags = [\"latest\", \"beta\"]")
        .rewrite("demo", url, &body, 12 * 86400 - 1)
        .unwrap();
    let (full, ab, tgz) = served(&r);
    assert_eq!(keys_of(&full["versions"]), ["1.1.0"]);
    assert_eq!(ab["dist-tags"], serde_json::json!({"latest": "1.1.0"}));
    assert_eq!(tgz, ["demo/-/demo-1.1.0.tgz"]);
    // A tag the list does not name goes even where its version is served.
    let r = policy_adapter("dist_tags = \"beta\"")
        .rewrite("demo", url, &body, 30 * 86400)
        .unwrap();
    let (full, ..) = served(&r);
    assert_eq!(keys_of(&full["versions"]), ["2.0.0-beta.1"]);
    assert_eq!(
        full["dist-tags"],
        serde_json::json!({"beta": "2.0.0-beta.1"})
    );
}

#[test]
fn an_empty_dist_tags_list_is_refused_by_name() {
    let keys = "public_url = \"http://mirror.example/npm\"\ndist_tags = []\n";
    let e = testing::configure(
        &LAYOUT,
        "https://registry.upstream.test/",
        keys,
        Npm::from_keys,
    )
    .err()
    .expect("refused");
    assert!(e.contains("dist_tags") && e.contains("latest"), "{e}");
}
