use super::*;
use crate::layouts::testing;

fn adapter(filter: Option<&[&str]>) -> Npm {
    let keys = testing::filter("packages", filter) + "public_url = \"http://mirror.example/npm\"";
    testing::configure(&LAYOUT, "https://registry.upstream.test/", &keys, Npm::from_keys).unwrap()
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
    } = a
        .rewrite(
            "@s/demo",
            "https://registry.upstream.test/@s%2fdemo",
            doc.to_string().as_bytes(),
        )
        .unwrap();
    let full: serde_json::Value = serde_json::from_slice(&full).expect("the served packument is JSON");
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
        a.rewrite("other", "https://r/other", full.to_string().as_bytes())
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
        .rewrite("dup", "https://registry.upstream.test/dup", text.as_bytes())
        .unwrap();
    let full: serde_json::Value = serde_json::from_slice(&r.full).unwrap();
    assert_eq!(r.entries.len(), 1);
    assert_eq!(full["versions"]["1.0.0"]["weird\"key"], 1, "the last 1.0.0 wins");
    assert!(full["versions"]["1.0.0"].get("description").is_none());
    let ab: serde_json::Value = serde_json::from_slice(&r.abbreviated).unwrap();
    assert_eq!(ab["dist-tags"]["latest"], "1.0.0");
    assert!(adapter(None).rewrite("dup", "https://r/dup", b"[1]").is_err());
    assert!(adapter(None).rewrite("dup", "https://r/dup", b"{\"name\":\"dup\"}").is_err());
}
