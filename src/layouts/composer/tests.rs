use serde_json::{Map, Value, json};

use super::*;
use crate::layout::Previous;
use crate::layouts::testing::{self, Docs, block_on};

const UP: &str = "https://repo.upstream.test/";

fn adapter(filter: Option<&[&str]>) -> Composer {
    let keys =
        testing::filter("packages", filter) + "public_url = \"http://mirror.example/composer/\"";
    testing::configure(&LAYOUT, UP, &keys, Composer::from_keys).unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn sha1(n: u8) -> String {
    format!("{n:02x}").repeat(20)
}

/// Expands a served p2 document as Composer does.
fn expand(doc: &[u8], package: &str) -> Vec<Map<String, Value>> {
    let v: Value = serde_json::from_slice(doc).unwrap();
    assert_eq!(v["minified"], "composer/2.0");
    let mut e = Expander::default();
    v["packages"][package]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| e.next(obj(d.clone())))
        .collect()
}

#[test]
fn names_and_lookups() {
    for good in ["a/b", "regfs/demo-a", "my.vendor/pkg_name", "a1/b--c"] {
        assert!(is_package_name(good), "{good}");
    }
    for bad in [
        "", "a", "a/", "/b", "a/b/c", "A/b", "a/..", "../b", "a/.b", "a/b.", "a/b c", "a/b\0",
        "a/b---c", "a/b__c", "a/b.-c",
    ] {
        assert!(!is_package_name(bad), "{bad:?}");
    }
    let a = adapter(None);
    assert_eq!(
        a.lazy_unit("p2/regfs", "demo.json").as_deref(),
        Some("regfs/demo")
    );
    assert_eq!(
        a.lazy_unit("p2/regfs", "demo~dev.json").as_deref(),
        Some("regfs/demo")
    );
    assert_eq!(
        a.lazy_unit("dists/regfs", "demo").as_deref(),
        Some("regfs/demo")
    );
    assert_eq!(a.lazy_unit("p2/regfs", "demo"), None);
    assert_eq!(a.lazy_unit("p2/regfs", "...json"), None);
    assert_eq!(a.lazy_unit("p2/..", "x.json"), None);
    assert_eq!(a.lazy_unit("p2", "x.json"), None);
    assert_eq!(a.lazy_unit("dists/regfs/demo", "1.0.0"), None);
    assert!(a.lazy_dir("", "p2") && a.lazy_dir("", "dists") && a.lazy_dir("p2", "regfs"));
    assert!(!a.lazy_dir("p2", "..") && !a.lazy_dir("", "regfs") && !a.lazy_dir("p2/regfs", "x"));
    let f = adapter(Some(&["Regfs/*", "other/one"]));
    assert!(f.lazy_unit("p2/regfs", "x.json").is_some());
    assert!(f.lazy_unit("p2/other", "two.json").is_none());
    let bad = testing::configure(
        &LAYOUT,
        UP,
        "packages = [\"../x\"]\npublic_url = \"http://m/c\"",
        Composer::from_keys,
    );
    assert!(bad.err().unwrap().contains("not a Composer package name"));
}

#[test]
fn expansion_follows_composers_metadata_minifier() {
    // What composer/metadata-minifier's expand() gives for this list.
    let minified = [
        json!({"name": "a/b", "version": "2.0.0", "require": {"php": ">=8"}, "extra": {"x": 1}}),
        json!({"version": "1.1.0", "extra": "__unset"}),
        json!({"version": "1.0.0", "require": {"php": ">=7"}, "license": ["MIT"]}),
    ];
    let mut e = Expander::default();
    let got: Vec<Value> = minified
        .iter()
        .map(|d| Value::Object(e.next(obj(d.clone()))))
        .collect();
    let want = [
        json!({"name": "a/b", "version": "2.0.0", "require": {"php": ">=8"}, "extra": {"x": 1}}),
        json!({"name": "a/b", "version": "1.1.0", "require": {"php": ">=8"}}),
        json!({"name": "a/b", "version": "1.0.0", "require": {"php": ">=7"}, "license": ["MIT"]}),
    ];
    assert_eq!(got, want);
    // Minifying gives back the input, and expanding that the versions.
    let mut m = Minifier::default();
    let again: Vec<Value> = want
        .iter()
        .map(|v| Value::Object(m.next(obj(v.clone()))))
        .collect();
    assert_eq!(again, minified);
}

/// A p2 document of regfs/demo with one version of each kind.
fn demo_doc() -> Value {
    json!({
        "minified": "composer/2.0",
        "security-advisories": [],
        "packages": {"regfs/demo": [
            {"name": "regfs/demo", "version": "2.0.0", "type": "library",
             "notification-url": "https://repo.upstream.test/downloads/",
             "source": {"type": "git", "url": "https://git.upstream.test/demo.git", "reference": "abc"},
             "dist": {"type": "zip", "url": "https://files.upstream.test/demo/2.0.0.zip",
                      "reference": "abc", "shasum": sha1(1),
                      "mirrors": [{"url": "https://cdn.upstream.test/%package%", "preferred": true}]}},
            // Inherits everything but version and dist (no shasum).
            {"version": "1.9.0", "dist": {"type": "zip", "url": "https://files.upstream.test/demo/1.9.0.zip",
                      "reference": "def", "shasum": ""}},
            // Source only.
            {"version": "1.8.0", "dist": "__unset"},
            {"version": "1.7.0", "dist": {"type": "zip", "url": "/demo/1.7.0.zip", "shasum": "xyz"}},
            {"version": "../../../etc", "dist": {"type": "zip", "url": "/demo/x.zip", "shasum": sha1(2)}},
            {"version": "dev-feature/x", "dist": {"type": "tar", "url": "/demo/x.tar.gz",
                      "reference": "../../evil", "shasum": sha1(3)}},
            {"version": "1.0.0", "type": "__unset", "dist": {"type": "zip", "url": "../demo/1.0.0",
                      "reference": "0123abc", "shasum": sha1(4)}},
        ]}
    })
}

#[test]
fn a_p2_document_points_at_the_mirror_and_drops_what_cannot_be_verified() {
    let a = adapter(None);
    let body = serde_json::to_vec(&demo_doc()).unwrap();
    let url = "https://repo.upstream.test/p2/regfs/demo.json";
    let r = a.rewrite("regfs/demo", url, &body, None).unwrap();
    assert_eq!(r.unverified, ["1.9.0"]);
    assert_eq!(r.dropped.len(), 3, "{:?}", r.dropped);
    for (d, why) in r.dropped.iter().zip([
        "1.8.0: no dist",
        "1.7.0: shasum",
        "../../../etc: the version",
    ]) {
        assert!(d.starts_with(why), "{d}");
    }
    let paths: Vec<(&str, &Body)> = r.dists.iter().map(|e| (e.path.as_str(), &e.body)).collect();
    assert_eq!(paths.len(), 3);
    assert_eq!(paths[0].0, "dists/regfs/demo/2.0.0/abc.zip");
    assert_eq!(
        paths[1].0,
        format!("dists/regfs/demo/dev-feature~x/{}.tar.gz", sha1(3)),
        "a hostile reference is not a file name: the sha1 is"
    );
    assert_eq!(paths[2].0, "dists/regfs/demo/1.0.0/0123abc.zip");
    match paths[2].1 {
        Body::Remote { url, size, digest } => {
            assert_eq!(url, "https://repo.upstream.test/p2/demo/1.0.0");
            assert_eq!(*size, None);
            assert_eq!(digest.to_string(), format!("sha1:{}", sha1(4)));
        }
        b => panic!("{b:?}"),
    }
    let served = expand(&r.body, "regfs/demo");
    let top: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        top["security-advisories"],
        json!([]),
        "kept as upstream wrote it"
    );
    let versions: Vec<&str> = served
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2.0.0", "dev-feature/x", "1.0.0"]);
    for (v, p) in served.iter().zip(&paths) {
        assert_eq!(
            v["dist"]["url"],
            format!("http://mirror.example/composer/{}", p.0)
        );
        assert_eq!(
            v["name"], "regfs/demo",
            "inherited through the dropped versions"
        );
        for gone in ["source", "notification-url"] {
            assert!(!v.contains_key(gone), "{gone} in {v:?}");
        }
        assert!(v["dist"].get("mirrors").is_none());
    }
    assert_eq!(served[0]["type"], "library");
    assert!(!served[2].contains_key("type"), "__unset applies");
    assert_eq!(served[2]["dist"]["shasum"], sha1(4));
}

#[test]
fn an_unminified_document_is_read_too_and_bad_ones_are_refused() {
    let a = adapter(None);
    let url = "https://repo.upstream.test/p2/a/b.json";
    let plain = json!({"packages": {"a/b": [
        {"name": "a/b", "version": "1.0.0", "dist": {"type": "zip", "url": "/x.zip", "shasum": sha1(1)}},
        {"name": "a/b", "version": "0.9.0", "dist": {"type": "zip", "url": "/y.zip", "shasum": sha1(2)}},
    ]}});
    let r = a
        .rewrite("a/b", url, &serde_json::to_vec(&plain).unwrap(), None)
        .unwrap();
    let served = expand(&r.body, "a/b");
    assert_eq!(
        served[1]["dist"]["url"],
        format!(
            "http://mirror.example/composer/dists/a/b/0.9.0/{}.zip",
            sha1(2)
        )
    );
    for (doc, err) in [
        (&b"{\"packages\": "[..], "not a JSON object"),
        (b"[]", "not a JSON object"),
        (
            br#"{"packages": {"c/d": []}}"#,
            "does not list package \"a/b\"",
        ),
        (br#"{"packages": {"a/b": {"1.0": {}}}}"#, "no version list"),
        (br#"{"packages": {"a/b": [1]}}"#, "version entry 0"),
        (
            br#"{"minified": "composer/9", "packages": {"a/b": []}}"#,
            "unknown `minified`",
        ),
    ] {
        let e = a.rewrite("a/b", url, doc, None).err().unwrap();
        assert!(e.contains(err), "{e}");
    }
}

#[test]
fn units_fetch_both_documents_and_errors_name_the_url() {
    let a = adapter(None);
    let doc = |v: &str| {
        serde_json::to_vec(&json!({"minified": "composer/2.0", "packages": {"regfs/demo": [
            {"name": "regfs/demo", "version": v, "dist": {"type": "zip", "url": "/d.zip", "shasum": sha1(9)}}]}}))
        .unwrap()
    };
    let src = Docs::new(UP)
        .with(
            "packages.json",
            br#"{"packages": [], "metadata-url": "/meta/%package%.json"}"#,
        )
        .with("/meta/regfs/demo.json", doc("1.0.0"))
        .with("/meta/regfs/demo~dev.json", doc("dev-main"))
        .with("/meta/regfs/broken.json", "{\"packages\": ");
    let sel = block_on(a.select(&src)).unwrap();
    assert_eq!(sel, Selection::Lazy(vec![]));
    let out = block_on(a.unit("regfs/demo", &src, 0, true))
        .unwrap()
        .unwrap();
    let mut paths: Vec<&str> = out.entries.iter().map(|e| e.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            format!("dists/regfs/demo/1.0.0/{}.zip", sha1(9)).as_str(),
            &format!("dists/regfs/demo/dev-main/{}.zip", sha1(9)),
            "p2/regfs/demo.json",
            "p2/regfs/demo~dev.json"
        ]
    );
    assert!(
        block_on(a.unit("regfs/nosuch", &src, 0, true))
            .unwrap()
            .is_none()
    );
    let e = block_on(a.unit("regfs/broken", &src, 0, true))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("https://repo.upstream.test//meta/regfs/broken.json")
            && e.contains("not a JSON object"),
        "{e}"
    );
    // A Composer 1 repository is refused by name.
    let v1 = Docs::new(UP).with(
        "packages.json",
        br#"{"packages": [], "providers-url": "/p/%package%$%hash%.json"}"#,
    );
    let e = block_on(adapter(None).select(&v1)).unwrap_err().to_string();
    assert!(
        e.starts_with("https://repo.upstream.test/packages.json: ")
            && e.contains("not a Composer v2 repository"),
        "{e}"
    );
}

#[test]
fn the_mirrors_packages_json_names_only_the_mirror() {
    let root = |a: &Composer| -> Value {
        let e = a.root_entries(&[]);
        assert_eq!(e.len(), 1);
        assert!(a.is_root_entry(e[0].path.as_str()));
        match &e[0].body {
            Body::Inline(b) => serde_json::from_slice(b).unwrap(),
            b => panic!("{b:?}"),
        }
    };
    assert_eq!(
        root(&adapter(None)),
        json!({"packages": [], "metadata-url": "/composer/p2/%package%.json"})
    );
    assert_eq!(
        root(&adapter(Some(&["regfs/demo", "acme/lib?"])))["available-package-patterns"],
        json!(["regfs/demo", "acme/lib*"])
    );
}

#[test]
fn a_large_document_is_rewritten_one_version_at_a_time() {
    // 20,000 versions, each inheriting a 1 KiB description: about 1 MiB
    // minified, 20 MiB expanded, which is never held at once.
    let a = adapter(None);
    let mut versions = vec![json!({"name": "big/pkg", "description": "d".repeat(1024),
        "version": "0.0.0", "dist": {"type": "zip", "url": "/0.zip", "shasum": sha1(0)}})];
    for i in 1..20_000 {
        versions.push(json!({"version": format!("0.0.{i}"), "dist": {"type": "zip", "url": format!("/{i}.zip"), "shasum": sha1((i % 256) as u8)}}));
    }
    let body =
        serde_json::to_vec(&json!({"minified": "composer/2.0", "packages": {"big/pkg": versions}}))
            .unwrap();
    let r = a
        .rewrite(
            "big/pkg",
            "https://repo.upstream.test/p2/big/pkg.json",
            &body,
            None,
        )
        .unwrap();
    assert_eq!(r.dists.len(), 20_000);
    assert!(
        r.body.len() < body.len() * 3,
        "{} from {}",
        r.body.len(),
        body.len()
    );
    let served = expand(&r.body, "big/pkg");
    assert_eq!(served[19_999]["description"].as_str().unwrap().len(), 1024);
}

#[test]
fn under_trust_on_first_use_a_dist_with_no_shasum_is_listed_to_be_pinned() {
    let keys = "public_url = \"http://mirror.example/composer/\"\ntrust_on_first_use = true";
    let a = testing::configure(&LAYOUT, UP, keys, Composer::from_keys).unwrap();
    let body = serde_json::to_vec(&demo_doc()).unwrap();
    let url = "https://repo.upstream.test/p2/regfs/demo.json";
    let r = a.rewrite("regfs/demo", url, &body, None).unwrap();
    assert!(r.unverified.is_empty(), "{:?}", r.unverified);
    let pinned: Vec<_> = r
        .dists
        .iter()
        .filter_map(|e| match &e.body {
            Body::Remote { digest, url, .. } if digest.algo() == crate::digest::Algo::None => {
                Some((e.path.as_str(), url.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(pinned.len(), 1, "only 1.9.0 has no shasum: {pinned:?}");
    assert!(
        pinned[0].0.starts_with("dists/regfs/demo/1.9.0/"),
        "{pinned:?}"
    );
    let served = expand(&r.body, "regfs/demo");
    let v = served
        .iter()
        .find(|v| v["version"] == "1.9.0")
        .expect("1.9.0 offered");
    assert_eq!(
        v["dist"]["url"],
        format!("http://mirror.example/composer/{}", pinned[0].0)
    );
}

/// The versions and dists of one unit's output: each p2 document's versions
/// (expanded) and the dist directories in the tree.
fn policy_unit(keys: &str, now: u64) -> Option<(Vec<String>, Vec<String>, Vec<String>)> {
    let keys = format!("public_url = \"http://mirror.example/composer/\"\n{keys}");
    let a = testing::configure(&LAYOUT, UP, &keys, Composer::from_keys).unwrap();
    let doc = |vs: &[(&str, &str)]| {
        let versions: Vec<Value> = vs
            .iter()
            .map(|(v, t)| {
                json!({"name": "regfs/demo", "version": v, "time": t,
                "dist": {"type": "zip", "url": format!("/{v}.zip"), "shasum": sha1(9)}})
            })
            .collect();
        serde_json::to_vec(&json!({"packages": {"regfs/demo": versions}})).unwrap()
    };
    let src = Docs::new(UP)
        .with(
            "packages.json",
            br#"{"packages": [], "metadata-url": "/meta/%package%.json"}"#,
        )
        .with(
            "/meta/regfs/demo.json",
            doc(&[
                ("2.1.0", "1970-01-21T00:00:00+00:00"),
                ("2.0.0-beta1", "1970-01-05T00:00:00+00:00"),
                ("1.10.0", "1970-01-04T00:00:00+00:00"),
                ("1.9.0", "1970-01-03T00:00:00+00:00"),
                ("1.2.0", "1970-01-02T00:00:00+00:00"),
            ]),
        )
        .with(
            "/meta/regfs/demo~dev.json",
            doc(&[("dev-main", "1970-01-20T00:00:00+00:00")]),
        );
    let out = block_on(a.unit("regfs/demo", &src, now, true)).unwrap()?;
    let body = |p: &str| match &out
        .entries
        .iter()
        .find(|e| e.path.as_str() == p)
        .unwrap()
        .body
    {
        Body::Inline(b) => b.clone(),
        _ => panic!("{p} is not inline"),
    };
    let versions = |p: &str| -> Vec<String> {
        expand(&body(p), "regfs/demo")
            .iter()
            .map(|v| v["version"].as_str().unwrap().to_string())
            .collect()
    };
    let mut dists: Vec<String> = out
        .entries
        .iter()
        .filter_map(|e| e.path.as_str().strip_prefix("dists/regfs/demo/"))
        .map(|p| p.split('/').next().unwrap().to_string())
        .collect();
    dists.sort();
    Some((
        versions("p2/regfs/demo.json"),
        versions("p2/regfs/demo~dev.json"),
        dists,
    ))
}

#[test]
fn the_policy_applies_to_both_p2_documents_and_the_tree_alike() {
    let day = 86400;
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // No policy: everything.
    let (tagged, dev, dists) = policy_unit("", 30 * day).unwrap();
    assert_eq!(
        tagged,
        strs(&["2.1.0", "2.0.0-beta1", "1.10.0", "1.9.0", "1.2.0"])
    );
    assert_eq!((dev, dists.len()), (strs(&["dev-main"]), 6));
    // A cooldown of 15 days on day 30 hides what was published after day 15,
    // in both documents.
    let (tagged, dev, dists) = policy_unit("cooldown = \"15d\"", 30 * day).unwrap();
    assert_eq!(tagged, strs(&["2.0.0-beta1", "1.10.0", "1.9.0", "1.2.0"]));
    assert!(dev.is_empty());
    assert_eq!(dists, strs(&["1.10.0", "1.2.0", "1.9.0", "2.0.0-beta1"]));
    // keep_latest counts by Composer's order (1.10 > 1.9), after
    // prereleases = false and block; dev-main is a pre-release.
    let keys = "keep_latest = 2\nprereleases = false\nblock = [\"regfs/demo@2.1.0\"]";
    let (tagged, dev, dists) = policy_unit(keys, 30 * day).unwrap();
    assert_eq!((tagged, dev), (strs(&["1.10.0", "1.9.0"]), vec![]));
    assert_eq!(dists, strs(&["1.10.0", "1.9.0"]));
    // An override for the unit wins over the mirror's filters.
    let keys = "keep_latest = 1\n[[override]]\nunits = [\"regfs/*\"]\nkeep_latest = 2\nprereleases = false";
    let (tagged, dev, _) = policy_unit(keys, 30 * day).unwrap();
    assert_eq!((tagged, dev), (strs(&["2.1.0", "1.10.0"]), vec![]));
    // A blocked package is not served at all.
    assert!(policy_unit("block = [\"regfs/demo\"]", 30 * day).is_none());
}

/// A version of regfs/demo whose dist is `/<v>.zip`, reference `ref-<v>`,
/// `shasum` its own (the sha1 of the version string).
fn demo_version(v: &str) -> Value {
    // 1.x published on day 1, the others on day 19.
    let time = if v.starts_with("1.") {
        "1970-01-02T00:00:00+00:00"
    } else {
        "1970-01-20T00:00:00+00:00"
    };
    json!({"name": "regfs/demo", "version": v, "time": time,
        "require": {"php": ">=8"}, "source": {"type": "git", "url": "https://git.upstream.test/demo.git"},
        "dist": {"type": "zip", "url": format!("/{v}.zip"), "reference": format!("ref-{v}"),
                 "shasum": demo_sha1(v).hex()}})
}

fn demo_sha1(v: &str) -> Digest {
    let mut h = crate::digest::Hasher::new(crate::digest::Algo::Sha1);
    h.update(v.as_bytes());
    h.finish()
}

/// A minified p2 document of regfs/demo listing `versions`.
fn demo_p2(versions: &[&str]) -> Vec<u8> {
    let mut m = Minifier::default();
    let list: Vec<Value> = versions
        .iter()
        .map(|v| Value::Object(m.next(obj(demo_version(v)))))
        .collect();
    serde_json::to_vec(&json!({"minified": "composer/2.0", "packages": {"regfs/demo": list}}))
        .unwrap()
}

/// What one retain sync serves: each p2 document's versions (expanded, by
/// version), the dist directories in the tree, and what it reported
/// retained.
struct Synced {
    out: UnitOutput,
    tagged: Vec<Map<String, Value>>,
    dev: Option<Vec<Map<String, Value>>>,
    dists: Vec<String>,
    retained: (usize, Vec<Digest>),
}

impl Synced {
    fn versions(doc: &[Map<String, Value>]) -> Vec<&str> {
        doc.iter().map(|v| v["version"].as_str().unwrap()).collect()
    }
    fn tagged(&self) -> Vec<&str> {
        Synced::versions(&self.tagged)
    }
    fn dev(&self) -> Vec<&str> {
        Synced::versions(self.dev.as_deref().expect("a ~dev.json"))
    }
}

/// One sync of regfs/demo with upstream's documents `tagged` and `dev`
/// (`None`: 404) while `previous` is the generation served.
fn sync_over(
    keys: &str,
    tagged: &[&str],
    dev: Option<&[&str]>,
    previous: Vec<(String, Previous)>,
) -> Synced {
    let keys = format!("public_url = \"http://mirror.example/composer/\"\n{keys}");
    let a = testing::configure(&LAYOUT, UP, &keys, Composer::from_keys).unwrap();
    let mut src = Docs::new(UP)
        .with(
            "packages.json",
            br#"{"packages": [], "metadata-url": "/p2/%package%.json"}"#,
        )
        .with("/p2/regfs/demo.json", demo_p2(tagged));
    if let Some(dev) = dev {
        src = src.with("/p2/regfs/demo~dev.json", demo_p2(dev));
    }
    for (path, file) in previous {
        src = src.served(&path, file);
    }
    let out = block_on(a.unit("regfs/demo", &src, 400 * 86400, true))
        .unwrap()
        .unwrap();
    let doc = |p: &str| {
        out.entries
            .iter()
            .find(|e| e.path.as_str() == p)
            .map(|e| match &e.body {
                Body::Inline(b) => expand(b, "regfs/demo"),
                b => panic!("{p} is not inline: {b:?}"),
            })
    };
    let tagged = doc("p2/regfs/demo.json").expect("the tagged document");
    let dev = doc("p2/regfs/demo~dev.json");
    let mut dists: Vec<String> = out
        .entries
        .iter()
        .filter_map(|e| e.path.as_str().strip_prefix("dists/regfs/demo/"))
        .map(str::to_string)
        .collect();
    dists.sort();
    let retained = src
        .retained
        .lock()
        .unwrap()
        .remove("regfs/demo")
        .unwrap_or_default();
    Synced {
        out,
        tagged,
        dev,
        dists,
        retained,
    }
}

/// [`sync_over`] the generation `served` made, the dists of the versions
/// `cached` in the cache.
fn retain_sync(
    keys: &str,
    tagged: &[&str],
    dev: Option<&[&str]>,
    served: &UnitOutput,
    cached: &[&str],
) -> Synced {
    let files: Vec<String> = cached.iter().map(|v| format!("ref-{v}.zip")).collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    sync_over(
        keys,
        tagged,
        dev,
        testing::generation(&served.entries, &files),
    )
}

fn nothing_served() -> UnitOutput {
    UnitOutput {
        entries: vec![],
        rejected: 0,
        unchanged: false,
    }
}

const ADDITIVE: &str = "retain = \"additive\"";

#[test]
fn additive_keeps_a_removed_version_in_its_document_while_its_dist_is_cached() {
    let first = retain_sync(
        ADDITIVE,
        &["2.0.0", "1.0.0", "0.9.0"],
        Some(&["dev-main", "dev-old"]),
        &nothing_served(),
        &[],
    );
    assert_eq!(first.tagged(), ["2.0.0", "1.0.0", "0.9.0"]);
    assert_eq!(
        first.retained,
        (0, vec![]),
        "nothing served before: nothing retained"
    );
    // Upstream removes 1.0.0, 0.9.0 and dev-old; 1.0.0's and dev-old's dists are cached.
    let second = retain_sync(
        ADDITIVE,
        &["2.0.0"],
        Some(&["dev-main"]),
        &first.out,
        &["1.0.0", "dev-old"],
    );
    assert_eq!(
        second.tagged(),
        ["2.0.0", "1.0.0"],
        "the cached removed version stays, the uncached one goes"
    );
    assert_eq!(
        second.dev(),
        ["dev-main", "dev-old"],
        "in the document that served it"
    );
    assert_eq!(
        second.tagged[1], first.tagged[1],
        "its version object as it was served"
    );
    assert_eq!(
        second.dev.as_ref().unwrap()[1],
        first.dev.as_ref().unwrap()[1]
    );
    assert_eq!(
        second.tagged[1]["dist"]["url"],
        "http://mirror.example/composer/dists/regfs/demo/1.0.0/ref-1.0.0.zip"
    );
    assert_eq!(second.tagged[1]["dist"]["shasum"], demo_sha1("1.0.0").hex());
    assert_eq!(
        second.dists,
        [
            "1.0.0/ref-1.0.0.zip",
            "2.0.0/ref-2.0.0.zip",
            "dev-main/ref-dev-main.zip",
            "dev-old/ref-dev-old.zip"
        ]
    );
    assert_eq!(
        second.retained,
        (2, vec![demo_sha1("1.0.0"), demo_sha1("dev-old")])
    );
    // The dist: the upstream URL and digest it was served with.
    let e = second
        .out
        .entries
        .iter()
        .find(|e| e.path.as_str() == "dists/regfs/demo/1.0.0/ref-1.0.0.zip")
        .unwrap();
    assert_eq!(
        e.body,
        Body::Remote {
            url: "https://repo.upstream.test/1.0.0.zip".into(),
            size: None,
            digest: demo_sha1("1.0.0")
        }
    );
    // Still cached: still kept, from what the last generation served;
    // dev-old evicted since: gone.
    let third = retain_sync(
        ADDITIVE,
        &["2.0.0"],
        Some(&["dev-main"]),
        &second.out,
        &["1.0.0"],
    );
    assert_eq!(
        (third.tagged(), third.dev()),
        (vec!["2.0.0", "1.0.0"], vec!["dev-main"])
    );
    assert_eq!(third.tagged[1], first.tagged[1]);
    assert_eq!(third.retained, (1, vec![demo_sha1("1.0.0")]));
    let fourth = retain_sync(ADDITIVE, &["2.0.0"], Some(&["dev-main"]), &third.out, &[]);
    assert_eq!(fourth.tagged(), ["2.0.0"]);
    assert_eq!(
        fourth.dists,
        ["2.0.0/ref-2.0.0.zip", "dev-main/ref-dev-main.zip"]
    );
    assert_eq!(fourth.retained, (0, vec![]));
    // Back upstream: served as upstream has it (`source` dropped again), not counted.
    let back = retain_sync(
        ADDITIVE,
        &["2.0.0", "1.0.0"],
        Some(&["dev-main"]),
        &third.out,
        &["1.0.0"],
    );
    assert_eq!(back.tagged(), ["2.0.0", "1.0.0"]);
    assert_eq!(back.retained.0, 0);
    // Upstream's ~dev.json gone: the one served keeps its cached version alone.
    let no_dev = retain_sync(ADDITIVE, &["2.0.0"], None, &first.out, &["dev-old"]);
    assert_eq!(
        (no_dev.tagged(), no_dev.dev()),
        (vec!["2.0.0"], vec!["dev-old"])
    );
    assert_eq!(no_dev.retained, (1, vec![demo_sha1("dev-old")]));
    let none = retain_sync(ADDITIVE, &["2.0.0"], None, &first.out, &[]);
    assert!(none.dev.is_none(), "nothing kept: no ~dev.json");
    // Under `retain = "mirror"` removed versions go, cached or not.
    let mirror = retain_sync(
        "retain = \"mirror\"",
        &["2.0.0"],
        Some(&["dev-main"]),
        &first.out,
        &["1.0.0", "dev-old"],
    );
    assert_eq!(
        (mirror.tagged(), mirror.dev()),
        (vec!["2.0.0"], vec!["dev-main"])
    );
    assert_eq!(
        mirror.retained,
        (0, vec![]),
        "nothing reported under mirror retention"
    );
    // A package upstream removes entirely (404) is not retained.
    let keys = format!("public_url = \"http://mirror.example/composer/\"\n{ADDITIVE}");
    let a = testing::configure(&LAYOUT, UP, &keys, Composer::from_keys).unwrap();
    let mut src = Docs::new(UP).with(
        "packages.json",
        br#"{"packages": [], "metadata-url": "/p2/%package%.json"}"#,
    );
    for (path, file) in
        testing::generation(&second.out.entries, &["ref-1.0.0.zip", "ref-dev-old.zip"])
    {
        src = src.served(&path, file);
    }
    assert!(
        block_on(a.unit("regfs/demo", &src, 400 * 86400, true))
            .unwrap()
            .is_none()
    );
    assert!(src.retained.lock().unwrap().is_empty());
}

#[test]
fn a_removed_version_is_not_retained_from_other_bytes_or_an_unreadable_document() {
    let first = retain_sync(
        ADDITIVE,
        &["2.0.0", "1.0.0"],
        Some(&["dev-main", "dev-old"]),
        &nothing_served(),
        &[],
    );
    let cached = ["ref-1.0.0.zip", "ref-dev-old.zip"];
    // The cache holds bytes of another digest at 1.0.0's path.
    let mut other = testing::generation(&first.out.entries, &cached);
    for (path, file) in &mut other {
        if let (true, Previous::Artifact { digest, .. }) = (path.ends_with("ref-1.0.0.zip"), file) {
            *digest = demo_sha1("something else");
        }
    }
    let s = sync_over(ADDITIVE, &["2.0.0"], Some(&["dev-main"]), other);
    assert_eq!(
        (s.tagged(), s.dev()),
        (vec!["2.0.0"], vec!["dev-main", "dev-old"])
    );
    assert_eq!(s.retained, (1, vec![demo_sha1("dev-old")]));
    // The served tagged document cannot be read: it retains nothing, with
    // a WARN naming it; the dev document still retains.
    let mut broken = testing::generation(&first.out.entries, &cached);
    for (path, file) in &mut broken {
        if path.as_str() == "p2/regfs/demo.json" {
            *file = Previous::Doc(b"{\"packages\": ".to_vec());
        }
    }
    let (s, log) = logged(|| sync_over(ADDITIVE, &["2.0.0"], Some(&["dev-main"]), broken));
    assert_eq!(
        (s.tagged(), s.dev()),
        (vec!["2.0.0"], vec!["dev-main", "dev-old"])
    );
    assert_eq!(s.retained, (1, vec![demo_sha1("dev-old")]));
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("p2/regfs/demo.json")
            && l.contains("nothing retained")),
        "{log}"
    );
}

/// What `f` returns and what it logged.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let w = lines.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    let got = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    (got, text)
}

#[test]
fn retained_versions_pass_the_policy_like_upstreams() {
    let first = retain_sync(
        ADDITIVE,
        &["2.0.0", "1.1.0", "1.0.0", "2.1.0-beta1"],
        Some(&["dev-old"]),
        &nothing_served(),
        &[],
    );
    let cached = ["1.1.0", "1.0.0", "2.1.0-beta1", "dev-old"];
    // A blocked version and pre-releases (`dev-*` among them) are never retained.
    let keys = format!("{ADDITIVE}\nblock = [\"regfs/demo@1.1.0\"]\nprereleases = false");
    let s = retain_sync(&keys, &["2.0.0"], Some(&[]), &first.out, &cached);
    assert_eq!((s.tagged(), s.dev()), (vec!["2.0.0", "1.0.0"], vec![]));
    assert_eq!(s.dists, ["1.0.0/ref-1.0.0.zip", "2.0.0/ref-2.0.0.zip"]);
    assert_eq!(s.retained, (1, vec![demo_sha1("1.0.0")]));
    // Retained versions count towards keep_latest (by Composer's order).
    let keys = format!("{ADDITIVE}\nkeep_latest = 2\nprereleases = false");
    let s = retain_sync(&keys, &["2.0.0"], Some(&[]), &first.out, &cached);
    assert_eq!(s.tagged(), ["2.0.0", "1.1.0"]);
    assert_eq!(s.retained, (1, vec![demo_sha1("1.1.0")]));
    // A cooldown dates a retained version by its `time`: on day 400, 385
    // days hide what was published on day 19 (upstream's 2.0.0 too).
    let s = retain_sync(
        &format!("{ADDITIVE}\ncooldown = \"385d\""),
        &["2.0.0"],
        Some(&[]),
        &first.out,
        &cached,
    );
    assert_eq!((s.tagged(), s.dev()), (vec!["1.1.0", "1.0.0"], vec![]));
    assert_eq!(
        s.retained,
        (2, vec![demo_sha1("1.1.0"), demo_sha1("1.0.0")])
    );
}
