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
