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

/// A line of `demo` at `vers`, its cksum its own.
fn own(vers: &str) -> String {
    line("demo", vers, &Digest::sha256_of(vers.as_bytes()).hex())
}

/// One sync of `demo` over the index file of `lines` while the generation
/// `served` (a sync's output) is served, the `.crate` files (by version)
/// in `cached` in the cache: what it serves, the versions in the tree, the
/// index file and what it reported retained.
fn retain_sync(
    keys: &str,
    lines: &[String],
    served: &UnitOutput,
    cached: &[&str],
) -> (UnitOutput, Vec<String>, String, (usize, Vec<Digest>)) {
    let index = lines.join("\n") + "\n";
    let mut docs = testing::Docs::new(BASE)
        .with("config.json", format!(r#"{{"dl":"{DL}"}}"#))
        .with("de/mo/demo", &index);
    let cached: Vec<String> = cached.iter().map(|v| format!("demo-{v}.crate")).collect();
    let cached: Vec<&str> = cached.iter().map(String::as_str).collect();
    for (path, file) in testing::generation(&served.entries, &cached) {
        docs = docs.served(&path, file);
    }
    let keys = format!("public_url = \"http://mirror.example/crates\"\n{keys}");
    let a = testing::configure(&LAYOUT, BASE, &keys, Crates::from_keys).unwrap();
    let out = testing::block_on(a.unit("demo", &docs, 400 * 86400, true))
        .unwrap()
        .unwrap();
    let mut crates = Vec::new();
    let mut file = String::new();
    for e in &out.entries {
        match (&e.body, e.path.as_str().strip_prefix("dl/demo/demo-")) {
            (_, Some(c)) => crates.push(c.trim_end_matches(".crate").to_string()),
            (Body::Inline(b), None) => file = String::from_utf8(b.clone()).unwrap(),
            (b, None) => panic!("the index file is not inline: {b:?}"),
        }
    }
    crates.sort();
    let r = docs
        .retained
        .lock()
        .unwrap()
        .remove("demo")
        .unwrap_or_default();
    (out, crates, file, r)
}

fn nothing_served() -> UnitOutput {
    UnitOutput {
        entries: vec![],
        rejected: 0,
        unchanged: false,
    }
}

#[test]
fn additive_keeps_a_removed_line_while_its_crate_is_cached_byte_identical() {
    let keys = "retain = \"additive\"";
    let all = [own("0.1.0"), own("0.2.0"), own("0.3.0")];
    let (first, crates, _, r) = retain_sync(keys, &all, &nothing_served(), &[]);
    assert_eq!(crates, ["0.1.0", "0.2.0", "0.3.0"]);
    assert_eq!(r, (0, vec![]), "nothing served before: nothing retained");
    // Upstream deletes 0.1.0 and 0.2.0; only 0.1.0's .crate is cached.
    let (second, crates, file, (versions, artifacts)) =
        retain_sync(keys, &[own("0.3.0")], &first, &["0.1.0"]);
    assert_eq!(
        crates,
        ["0.1.0", "0.3.0"],
        "the cached removed version stays, the uncached one goes"
    );
    assert_eq!(
        file,
        [own("0.3.0"), own("0.1.0")].join("\n") + "\n",
        "upstream's lines, then the retained one, byte-identical"
    );
    assert_eq!(
        (versions, artifacts),
        (1, vec![Digest::sha256_of(b"0.1.0")])
    );
    let c = second
        .entries
        .iter()
        .find(|e| e.path.as_str() == "dl/demo/demo-0.1.0.crate")
        .unwrap();
    assert_eq!(
        c.body,
        Body::Remote {
            url: format!("{DL}/demo/0.1.0/download"),
            size: None,
            digest: Digest::sha256_of(b"0.1.0")
        },
        "the .crate as it was served"
    );
    // Still cached: still kept; evicted since: gone at the next generation.
    let (third, crates, _, (versions, _)) = retain_sync(keys, &[own("0.3.0")], &second, &["0.1.0"]);
    assert_eq!(
        (crates, versions),
        (vec!["0.1.0".to_string(), "0.3.0".to_string()], 1)
    );
    let (_, crates, file, r) = retain_sync(keys, &[own("0.3.0")], &third, &[]);
    assert_eq!(crates, ["0.3.0"]);
    assert_eq!(file, own("0.3.0") + "\n");
    assert_eq!(r, (0, vec![]));
    // Yanked upstream is not removed: served as upstream has it, not retained.
    let yanked = own("0.1.0").replace("\"yanked\":false", "\"yanked\":true");
    let (_, crates, file, (versions, _)) =
        retain_sync(keys, &[yanked.clone(), own("0.3.0")], &third, &["0.1.0"]);
    assert_eq!(crates, ["0.1.0", "0.3.0"]);
    assert_eq!(file, [yanked, own("0.3.0")].join("\n") + "\n");
    assert_eq!(versions, 0);
}

#[test]
fn a_blocked_line_is_never_retained_and_mirror_retention_drops_removed_lines() {
    let all = [own("0.1.0"), own("0.2.0-rc.1"), own("0.3.0")];
    let (first, ..) = retain_sync("retain = \"additive\"", &all, &nothing_served(), &[]);
    let cached = ["0.1.0", "0.2.0-rc.1"];
    let strict = "retain = \"additive\"\nblock = [\"demo@0.1.0\"]\nprereleases = false";
    let (_, crates, file, r) = retain_sync(strict, &[own("0.3.0")], &first, &cached);
    assert_eq!(
        crates,
        ["0.3.0"],
        "the blocked version and the pre-release are not retained"
    );
    assert_eq!(file, own("0.3.0") + "\n");
    assert_eq!(r, (0, vec![]));
    let (_, crates, _, (versions, _)) = retain_sync(
        "retain = \"additive\"\nkeep_latest = 2",
        &[own("0.3.0")],
        &first,
        &cached,
    );
    assert_eq!(
        crates,
        ["0.2.0-rc.1", "0.3.0"],
        "retained versions count towards keep_latest"
    );
    assert_eq!(versions, 1);
    let (_, crates, _, r) = retain_sync("retain = \"mirror\"", &[own("0.3.0")], &first, &cached);
    assert_eq!(crates, ["0.3.0"]);
    assert_eq!(r, (0, vec![]), "nothing reported under mirror retention");
}
