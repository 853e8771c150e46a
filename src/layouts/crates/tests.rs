use super::*;
use crate::layouts::testing;

const BASE: &str = "https://index.upstream.test/";
const DL: &str = "https://dl.upstream.test/crates";

fn adapter(filter: Option<&[&str]>) -> Crates {
    let keys = testing::filter("crates", filter) + "public_url = \"http://mirror.example/crates\"";
    testing::configure(&LAYOUT, BASE, &keys, Crates::from_keys).unwrap()
}

fn line(name: &str, vers: &str, cksum: &str) -> String {
    format!(
        r#"{{"name":"{name}","vers":"{vers}","deps":[],"cksum":"{cksum}","features":{{}},"yanked":false}}"#
    )
}

#[test]
fn shards_follow_the_sparse_index_rules() {
    assert_eq!(shard("a"), "1");
    assert_eq!(shard("cc"), "2");
    assert_eq!(shard("syn"), "3/s");
    assert_eq!(shard("Serde"), "se/rd");
    assert_eq!(shard_prefix("Serde"), "Se/rd");
    let a = adapter(None);
    assert_eq!(
        a.lazy_unit("index/se/rd", "serde").as_deref(),
        Some("serde")
    );
    assert_eq!(a.lazy_unit("index/3/s", "syn").as_deref(), Some("syn"));
    assert_eq!(a.lazy_unit("index/1", "a").as_deref(), Some("a"));
    assert_eq!(a.lazy_unit("index/se/rd", "syn"), None, "wrong shard");
    assert_eq!(
        a.lazy_unit("index/se/rd", "Serde"),
        None,
        "index paths are lowercase"
    );
    assert_eq!(a.lazy_unit("dl", "Inflector").as_deref(), Some("inflector"));
    assert_eq!(
        a.lazy_unit("dl/serde", "serde-1.0.0.crate").as_deref(),
        Some("serde")
    );
    assert_eq!(a.lazy_unit("dl", "../x"), None);
    assert_eq!(a.lazy_unit("index/..", "x"), None);
    // Multi-byte names must not reach the byte slicing (a panic on lookup).
    assert_eq!(a.lazy_unit("index/3/\u{e9}", "\u{e9}a"), None);
    assert_eq!(a.lazy_unit("index/ab", "\u{e9}\u{e9}\u{e9}"), None);
    assert!(a.lazy_dir("", "index") && a.lazy_dir("index", "se") && a.lazy_dir("index/se", "rd"));
    assert!(a.lazy_dir("index", "3") && a.lazy_dir("index/3", "s"));
    assert!(
        !a.lazy_dir("index", "ser") && !a.lazy_dir("index/se/rd", "xx") && !a.lazy_dir("", "other")
    );
    let f = adapter(Some(&["serde*"]));
    assert!(f.lazy_unit("index/se/rd", "serde_json").is_some());
    assert_eq!(f.lazy_unit("index/3/s", "syn"), None, "not configured");
}

#[test]
fn index_lines_are_checked_one_by_one() {
    let good = "a".repeat(64);
    let text = [
        line("demo", "1.0.0", &good),
        line("demo", "1.1.0+build.5", &good),
        line("other", "1.0.0", &good),
        line("demo", "../../x", &good),
        line("demo", "2.0.0", "abcd"),
        "{not json".to_string(),
        String::new(),
    ]
    .join("\n");
    let (v, bad) = parse_index("demo", text.as_bytes());
    let vers: Vec<&str> = v.iter().map(|v| v.vers.as_str()).collect();
    assert_eq!(vers, ["1.0.0", "1.1.0+build.5"]);
    assert_eq!(bad.len(), 4, "{bad:?}");
}

#[test]
fn dl_templates_expand_like_cargo() {
    let v = Version {
        name: "Serde".into(),
        vers: "1.0.0".into(),
        cksum: Digest::from_hex(Algo::Sha256, &"b".repeat(64)).unwrap(),
        pubtime: None,
        line: 0..0,
    };
    assert_eq!(expand_dl(DL, &v), format!("{DL}/Serde/1.0.0/download"));
    assert_eq!(
        expand_dl(
            "https://h/{prefix}/{lowerprefix}/{crate}/{version}/{sha256-checksum}",
            &v
        ),
        format!("https://h/Se/rd/se/rd/Serde/1.0.0/{}", "b".repeat(64))
    );
}

#[test]
fn a_crate_unit_serves_its_index_file_and_crate_files() {
    let sum = Digest::sha256_of(b"crate bytes");
    let index = format!(
        "{}\n{}\n",
        line("demo", "0.1.0", &sum.hex()),
        line("demo", "0.2.0", &sum.hex())
    );
    let docs = testing::Docs::new(BASE)
        .with(
            "config.json",
            format!(r#"{{"dl":"{DL}","api":"https://api"}}"#),
        )
        .with("de/mo/demo", &index);
    let a = adapter(None);
    let out = testing::block_on(a.unit("demo", &docs, 0, true))
        .unwrap()
        .unwrap();
    let mut paths: Vec<&str> = out.entries.iter().map(|e| e.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "dl/demo/demo-0.1.0.crate",
            "dl/demo/demo-0.2.0.crate",
            "index/de/mo/demo"
        ]
    );
    let idx = out
        .entries
        .iter()
        .find(|e| e.path.as_str() == "index/de/mo/demo")
        .unwrap();
    assert_eq!(idx.body, Body::Inline(index.into_bytes()), "byte-identical");
    let c = out
        .entries
        .iter()
        .find(|e| e.path.as_str() == "dl/demo/demo-0.1.0.crate")
        .unwrap();
    assert_eq!(
        c.body,
        Body::Remote {
            url: format!("{DL}/demo/0.1.0/download"),
            size: None,
            digest: sum
        }
    );
    assert!(
        testing::block_on(a.unit("nothere", &docs, 0, true))
            .unwrap()
            .is_none()
    );

    // A relative `dl` resolves against config.json's URL.
    let docs = docs.with(
        "config.json",
        r#"{"dl":"../dl/{crate}/{crate}-{version}.crate"}"#,
    );
    let a = adapter(None);
    let out = testing::block_on(a.unit("demo", &docs, 0, true))
        .unwrap()
        .unwrap();
    let c = out
        .entries
        .iter()
        .find(|e| e.path.as_str() == "dl/demo/demo-0.2.0.crate")
        .unwrap();
    let Body::Remote { url, .. } = &c.body else {
        panic!()
    };
    assert_eq!(url, "https://index.upstream.test/dl/demo/demo-0.2.0.crate");
    let cfg = &a.root_entries(&[])[0];
    assert_eq!(cfg.path.as_str(), "index/config.json");
    let Body::Inline(b) = &cfg.body else { panic!() };
    let v: serde_json::Value = serde_json::from_slice(b).unwrap();
    assert_eq!(
        v["dl"],
        "http://mirror.example/crates/dl/{crate}/{crate}-{version}.crate"
    );
    assert!(v.get("api").is_none(), "no publishing through a mirror");
}

#[test]
fn a_policy_leaves_hidden_lines_out_of_the_index_file_and_the_tree() {
    let sum = Digest::sha256_of(b"crate bytes").hex();
    let dated = |vers: &str, day: i64| {
        line("demo", vers, &sum).replacen(
            "\"yanked\"",
            &format!(
                "\"pubtime\":\"{}\",\"yanked\"",
                crate::timestamp::format_rfc3339(day * 86400)
            ),
            1,
        )
    };
    let index = [
        dated("0.1.0", 1),
        dated("0.2.0", 2),
        line("demo", "0.2.5", &sum),
        dated("0.3.0-rc.1", 3),
        dated("0.3.0", 9),
    ]
    .join("\n")
        + "\n";
    let docs = || {
        testing::Docs::new(BASE)
            .with("config.json", format!(r#"{{"dl":"{DL}"}}"#))
            .with("de/mo/demo", &index)
    };
    let served = |keys: &str, now: i64| {
        let keys = format!("public_url = \"http://mirror.example/crates\"\n{keys}");
        let a = testing::configure(&LAYOUT, BASE, &keys, Crates::from_keys).unwrap();
        let out = testing::block_on(a.unit("demo", &docs(), (now * 86400) as u64, true))
            .unwrap()
            .unwrap();
        let mut crates = Vec::new();
        let mut file = String::new();
        for e in out.entries {
            match (&e.body, e.path.as_str().strip_prefix("dl/demo/demo-")) {
                (_, Some(c)) => crates.push(c.trim_end_matches(".crate").to_string()),
                (Body::Inline(b), None) => file = String::from_utf8(b.clone()).unwrap(),
                (b, None) => assert!(
                    keys.is_empty(),
                    "without a policy the file is stored as upstream sent it: {b:?}"
                ),
            }
        }
        crates.sort();
        (crates, file, a)
    };
    // A cooldown of 3 days on day 10: 0.3.0 is too young, 0.2.5 undated.
    let (crates, file, a) = served("cooldown = \"3d\"", 10);
    assert_eq!(crates, ["0.1.0", "0.2.0", "0.3.0-rc.1"]);
    assert_eq!(
        file,
        [dated("0.1.0", 1), dated("0.2.0", 2), dated("0.3.0-rc.1", 3)].join("\n") + "\n"
    );
    assert!(a.changes_with_time());
    let (crates, ..) = served(
        "keep_latest = 2\nprereleases = false\nblock = [\"demo@0.3.0\"]",
        10,
    );
    assert_eq!(crates, ["0.2.0", "0.2.5"]);
    let (crates, ..) = served("", 10);
    assert_eq!(crates.len(), 5);
    let (_, _, blocked) = served("block = [\"other\"]", 10);
    assert_eq!(
        blocked.lazy_unit("index/ot/he", "other"),
        None,
        "a blocked crate does not materialize"
    );
}
