//! The adapter on real documents: `/versions`, `/info` files and a quick
//! spec written by the fixture builder (`tests/fixtures/rubygems/build.py`:
//! gems made by RubyGems, the classic index by `gem generate_index`), kept
//! under `tests/fixtures/rubygems/`.

use std::collections::HashMap;
use std::sync::Mutex;

use super::index::{Versions, parse_info};
use super::*;
use crate::digest::Algo;
use crate::layout::{Doc, DocError, DocRequest, Keep};
use crate::layouts::testing::{self, Docs, block_on};

const BASE: &str = "https://rubygems.upstream.test/";

fn fx(name: &str) -> Vec<u8> {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rubygems/");
    std::fs::read(format!("{p}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn adapter(keys: &str) -> RubyGems {
    testing::configure(&LAYOUT, BASE, keys, RubyGems::from_keys).unwrap()
}

fn upstream() -> Docs {
    Docs::new(BASE)
        .with("versions", fx("versions"))
        .with("names", b"---\nfixapp\nfixbad\nfixlib\nfixnative\n")
        .with("info/fixlib", fx("info-fixlib"))
        .with("info/fixnative", fx("info-fixnative"))
        .with("info/fixapp", fx("info-fixapp"))
        .with("specs.4.8.gz", fx("specs.4.8.gz"))
        .with(
            "quick/Marshal.4.8/fixnative-1.0.0-x86_64-linux.gemspec.rz",
            fx("fixnative-1.0.0-x86_64-linux.gemspec.rz"),
        )
}

fn unit(a: &RubyGems, unit: &str, src: &dyn DocSource) -> Result<Option<UnitOutput>, SyncError> {
    block_on(a.unit(unit, src, 0, true))
}

fn files(out: &UnitOutput) -> HashMap<String, Body> {
    out.entries
        .iter()
        .map(|e| (e.path.as_str().to_string(), e.body.clone()))
        .collect()
}

fn inline(b: &Body) -> &[u8] {
    match b {
        Body::Inline(bytes) => bytes,
        other => panic!("not inline: {other:?}"),
    }
}

/// Answers each path with its scripted bodies in turn (the last repeats),
/// counting requests.
struct Script {
    bodies: HashMap<&'static str, Vec<Vec<u8>>>,
    asked: Mutex<Vec<String>>,
}

impl Script {
    fn new(bodies: &[(&'static str, Vec<Vec<u8>>)]) -> Script {
        Script {
            bodies: bodies.iter().cloned().collect(),
            asked: Mutex::default(),
        }
    }

    fn asked(&self, path: &str) -> usize {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

impl DocSource for Script {
    fn get(&self, req: DocRequest) -> BoxFuture<'_, Result<Doc, DocError>> {
        let n = self.asked(&req.path);
        self.asked.lock().unwrap().push(req.path.clone());
        let url = format!("{BASE}{}", req.path);
        let r = match self.bodies.get(req.path.as_str()) {
            Some(list) => Ok(Doc {
                url,
                content_type: None,
                content_digest: None,
                body: list[n.min(list.len() - 1)].clone(),
                unchanged: false,
                stored: None,
                hold: Default::default(),
            }),
            None => Err(DocError::NotFound { url }),
        };
        Box::pin(async move { r })
    }

    fn keep(&self, _: &Digest, _: u64) -> Result<Box<dyn Keep>, String> {
        Err("not in this test".into())
    }
}

use crate::digest::Digest;

#[test]
fn names_stems_and_what_a_lookup_materializes() {
    for good in ["rails", "net-http", "RedCloth", "a_b.c", "x1"] {
        assert!(is_gem_name(good), "{good}");
    }
    for bad in [
        "", ".hidden", "-x", "a/b", "a b", "a:b", "é", ":index", "..",
    ] {
        assert!(!is_gem_name(bad), "{bad:?}");
    }
    for (stem, gem) in [
        ("fixnative-1.0.0-x86_64-linux", Some("fixnative")),
        ("net-http-0.4.1", Some("net-http")),
        ("a-1-2.0", Some("a-1")),
        ("nokogiri-1.15.0-universal-darwin-22", Some("nokogiri")),
        ("rails-7.1.0.beta1", Some("rails")),
        ("no-version", None),
        ("x-1.0-", None),
        ("../x-1.0", None),
    ] {
        assert_eq!(gem_of_stem(stem), gem, "{stem}");
    }
    let a = adapter("quick_specs = true");
    assert_eq!(a.lazy_unit("info", "fixlib").as_deref(), Some("fixlib"));
    assert_eq!(a.lazy_unit("info", "a:b"), None);
    assert_eq!(
        a.lazy_unit("gems", "fixnative-1.0.0-x86_64-linux.gem")
            .as_deref(),
        Some("fixnative")
    );
    assert_eq!(a.lazy_unit("gems", "fixlib-1.0.0.tgz"), None);
    assert_eq!(
        a.lazy_unit(QUICK, "fixlib-1.1.0.gemspec.rz").as_deref(),
        Some("quick/fixlib-1.1.0")
    );
    assert_eq!(a.lazy_unit("", "fixlib"), None);
    assert_eq!(a.lazy_unit("info/fixlib", "x"), None);
    assert!(a.lazy_dir("", "info") && a.lazy_dir("", "gems") && a.lazy_dir("quick", "Marshal.4.8"));
    assert!(!a.lazy_dir("", "other") && !a.lazy_dir("gems", "x"));

    let off = adapter("");
    assert_eq!(off.lazy_unit(QUICK, "fixlib-1.1.0.gemspec.rz"), None);
    assert!(!off.lazy_dir("", "quick"), "no quick/ without quick_specs");
    let f = adapter("gems = [\"fixl*\"]\nquick_specs = true");
    assert!(f.lazy_unit("info", "fixlib").is_some());
    assert_eq!(f.lazy_unit("info", "fixapp"), None, "outside the filter");
    assert_eq!(f.lazy_unit("gems", "fixapp-1.0.0.gem"), None);
    assert_eq!(f.lazy_unit(QUICK, "fixapp-1.0.0.gemspec.rz"), None);
}

#[test]
fn keys_are_checked_and_the_classic_index_needs_every_gem() {
    let err = |keys: &str| {
        testing::configure(&LAYOUT, BASE, keys, RubyGems::from_keys)
            .err()
            .unwrap_or_else(|| panic!("accepted {keys:?}"))
    };
    let e = err("gems = [\"rails\"]\nclassic_index = true");
    assert!(e.contains("classic_index") && e.contains("gems"), "{e}");
    let e = err("gems = [\"a/b\"]");
    assert!(e.contains("gems") && e.contains("a/b"), "{e}");
    let e = err("quick_specs = \"yes\"");
    assert!(
        e.contains("quick_specs") && e.contains("true or false"),
        "{e}"
    );
    let e = err("packages = [\"x\"]");
    assert!(
        e.contains("unknown key `packages`") && e.contains("gems"),
        "{e}"
    );
    assert!(
        adapter("classic_index = true").quick_specs,
        "the classic index needs its quick specs"
    );
    assert!(!adapter("").quick_specs && !adapter("").classic_index);
}

#[test]
fn versions_take_the_last_md5_and_merge_appended_lines() {
    let v2 = fx("versions-v2");
    let v = Versions::parse(&v2, |g| g.starts_with("fixl")).unwrap();
    assert_eq!(v.header, b"created_at: 2026-01-01T00:00:00Z\n---\n");
    let want = md5::md5(&fx("info-fixlib-v2"));
    assert_eq!(v.md5_of("fixlib"), Some(want), "the appended line's MD5");
    assert_eq!(v.md5_of("fixapp"), Some(md5::md5(&fx("info-fixapp"))));
    assert_eq!(v.md5_of("nope"), None);
    assert_eq!(v.selected.len(), 1);
    assert_eq!(
        v.selected["fixlib"].versions,
        ["1.1.0", "1.2.0"],
        "1.0.0 yanked"
    );
    assert_eq!(
        String::from_utf8(v.render_selected()).unwrap(),
        format!(
            "created_at: 2026-01-01T00:00:00Z\n---\nfixlib 1.1.0,1.2.0 {}\n",
            md5::md5_hex(&fx("info-fixlib-v2"))
        )
    );
    assert_eq!(v.render_names(), b"---\nfixlib\n");

    let odd = b"---\nok 1.0 0cc175b9c0f1b6a831c399e269772661\nbad line\n../x 1.0 0cc175b9c0f1b6a831c399e269772661\nshort 1.0 abc\ngone 1.0 0cc175b9c0f1b6a831c399e269772661\ngone -1.0 0cc175b9c0f1b6a831c399e269772661\n";
    let v = Versions::parse(odd, |_| true).unwrap();
    assert_eq!(v.rejected, 3);
    assert!(v.md5_of("ok").is_some() && v.md5_of("../x").is_none());
    assert_eq!(
        v.selected_names().collect::<Vec<_>>(),
        ["ok"],
        "a gem with every version yanked is not listed"
    );
    assert!(Versions::parse(b"created_at: x\nfixlib 1.0 abc\n", |_| true).is_err());
    assert!(Versions::parse(&[0xff, b'\n', b'-', b'-', b'-', b'\n'], |_| true).is_err());
}

#[test]
fn info_lines_name_gem_files_and_hostile_ones_are_dropped() {
    let (v, dropped) = parse_info("fixnative", &fx("info-fixnative"));
    assert!(dropped.is_empty(), "{dropped:?}");
    let stems: Vec<&str> = v.iter().map(|v| v.stem.as_str()).collect();
    assert_eq!(stems, ["fixnative-1.0.0", "fixnative-1.0.0-x86_64-linux"]);
    assert_eq!(v[1].sha256.algo(), Algo::Sha256);

    let (v, dropped) = parse_info("fixhostile", &fx("info-fixhostile"));
    assert_eq!(
        v.iter().map(|v| v.stem.as_str()).collect::<Vec<_>>(),
        ["fixhostile-1.0.0"]
    );
    assert_eq!(dropped.len(), 11, "{dropped:#?}");
    assert!(dropped.iter().any(|d| d.contains("listed twice")));
    assert!(dropped.iter().any(|d| d.contains("no checksum")));
    assert!(
        dropped.iter().all(|d| d.len() < 200),
        "messages stay short: {dropped:?}"
    );
}

#[test]
fn a_gem_is_its_info_byte_identical_and_its_gems_by_their_checksums() {
    let a = adapter("");
    let src = upstream();
    let out = unit(&a, "fixnative", &src).unwrap().unwrap();
    let f = files(&out);
    assert_eq!(f.len(), 3);
    assert_eq!(inline(&f["info/fixnative"]), fx("info-fixnative"));
    let Body::Remote { url, size, digest } = &f["gems/fixnative-1.0.0-x86_64-linux.gem"] else {
        panic!("{f:?}")
    };
    assert_eq!(url, &format!("{BASE}gems/fixnative-1.0.0-x86_64-linux.gem"));
    assert_eq!(*size, None, "RubyGems publishes no sizes");
    let line = String::from_utf8(fx("info-fixnative")).unwrap();
    assert!(line.contains(&format!("1.0.0-x86_64-linux |checksum:{}", digest.hex())));
    assert!(unit(&a, "no-such-gem", &src).unwrap().is_none());
}

#[test]
fn an_info_that_disagrees_with_versions_is_refused_after_one_fresh_look() {
    let a = adapter("");
    // Upstream's /info of fixlib is the later one, /versions the earlier
    // one, both times: inconsistent.
    let src = Script::new(&[
        ("versions", vec![fx("versions")]),
        ("info/fixlib", vec![fx("info-fixlib-v2")]),
    ]);
    let e = unit(&a, "fixlib", &src).unwrap_err().to_string();
    assert!(e.contains(&format!("{BASE}info/fixlib")), "{e}");
    assert!(e.contains(&md5::md5_hex(&fx("info-fixlib-v2"))), "{e}");
    assert!(e.contains(&md5::md5_hex(&fx("info-fixlib"))), "{e}");
    assert_eq!(src.asked("versions"), 2, "one fresh look at /versions");
    assert!(unit(&a, "fixlib", &src).is_err());
    assert_eq!(
        src.asked("versions"),
        2,
        "the same /info is refused again without another look"
    );

    // A gem /versions does not list at all.
    let src = Script::new(&[
        ("versions", vec![fx("versions")]),
        ("info/fixhostile", vec![fx("info-fixhostile")]),
    ]);
    let e = unit(&a, "fixhostile", &src).unwrap_err().to_string();
    assert!(e.contains("no line for it"), "{e}");
}

#[test]
fn a_gem_published_since_the_last_sync_is_served_after_versions_is_fetched_again() {
    let a = adapter("");
    let src = Script::new(&[
        ("versions", vec![fx("versions"), fx("versions-v2")]),
        ("info/fixlib", vec![fx("info-fixlib"), fx("info-fixlib-v2")]),
        ("info/fixapp", vec![fx("info-fixapp")]),
    ]);
    assert_eq!(
        block_on(a.select(&src)).unwrap(),
        Selection::Lazy(vec![INDEX.into()])
    );
    unit(&a, "fixlib", &src).unwrap().unwrap();
    assert_eq!(src.asked("versions"), 1, "the sync's /versions matched");
    // fixlib 1.2.0 is published: its /info is newer than that /versions.
    let out = unit(&a, "fixlib", &src).unwrap().unwrap();
    assert!(files(&out).contains_key("gems/fixlib-1.2.0.gem"));
    assert!(!files(&out).contains_key("gems/fixlib-1.0.0.gem"), "yanked");
    assert_eq!(src.asked("versions"), 2);
    unit(&a, "fixapp", &src).unwrap().unwrap();
    assert_eq!(
        src.asked("versions"),
        2,
        "what matches costs no other request"
    );
    // The served /versions is still the sync's.
    let index = files(&unit(&a, INDEX, &src).unwrap().unwrap());
    assert_eq!(inline(&index["versions"]), fx("versions"));
}

#[test]
fn without_gems_the_index_is_upstreams_byte_identical() {
    let a = adapter("classic_index = true");
    let src = upstream();
    block_on(a.select(&src)).unwrap();
    let out = unit(&a, INDEX, &src).unwrap().unwrap();
    let f = files(&out);
    assert_eq!(inline(&f["versions"]), fx("versions"));
    assert_eq!(
        inline(&f["names"]),
        b"---\nfixapp\nfixbad\nfixlib\nfixnative\n"
    );
    assert_eq!(inline(&f["specs.4.8.gz"]), fx("specs.4.8.gz"));
    assert_eq!(
        f.len(),
        3,
        "latest_specs and prerelease_specs are not upstream here"
    );
    let src = upstream().with("latest_specs.4.8.gz", b"<html>not found</html>");
    let out = unit(&a, INDEX, &src).unwrap().unwrap();
    assert_eq!(out.rejected, 1, "an HTML page is no classic index");
    assert!(!files(&out).contains_key("latest_specs.4.8.gz"));
    assert!(
        !files(&unit(&adapter(""), INDEX, &src).unwrap().unwrap()).contains_key("specs.4.8.gz")
    );
}

#[test]
fn with_gems_versions_and_names_list_the_selected_gems_alone() {
    let a = adapter("gems = [\"fixl*\", \"fixapp\", \"absent\"]");
    let src = upstream();
    let Selection::Lazy(seeds) = block_on(a.select(&src)).unwrap() else {
        panic!()
    };
    assert_eq!(seeds, [INDEX, "fixapp", "fixlib"]);
    let f = files(&unit(&a, INDEX, &src).unwrap().unwrap());
    let versions = String::from_utf8(inline(&f["versions"]).to_vec()).unwrap();
    assert_eq!(
        versions,
        format!(
            "created_at: 2026-01-01T00:00:00Z\n---\nfixapp 1.0.0 {}\nfixlib 1.0.0,1.1.0 {}\n",
            md5::md5_hex(&fx("info-fixapp")),
            md5::md5_hex(&fx("info-fixlib"))
        ),
        "each MD5 is that of the /info file the mirror serves"
    );
    assert_eq!(inline(&f["names"]), b"---\nfixapp\nfixlib\n");
    assert!(
        unit(&a, "fixnative", &src).unwrap().is_none(),
        "outside the filter"
    );
}

#[test]
fn a_quick_spec_is_served_byte_identical_if_it_is_a_deflated_marshal_stream() {
    let a = adapter("quick_specs = true");
    let src = upstream().with("quick/Marshal.4.8/fixlib-1.1.0.gemspec.rz", b"<html>");
    let stem = "quick/fixnative-1.0.0-x86_64-linux";
    let f = files(&unit(&a, stem, &src).unwrap().unwrap());
    assert_eq!(
        inline(&f["quick/Marshal.4.8/fixnative-1.0.0-x86_64-linux.gemspec.rz"]),
        fx("fixnative-1.0.0-x86_64-linux.gemspec.rz")
    );
    let e = unit(&a, "quick/fixlib-1.1.0", &src)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fixlib-1.1.0.gemspec.rz") && e.contains("Marshal"),
        "{e}"
    );
    assert!(unit(&a, "quick/fixlib-9.0", &src).unwrap().is_none());
    assert!(
        unit(&adapter(""), stem, &src).unwrap().is_none(),
        "quick_specs off"
    );
}

#[test]
fn mutated_documents_never_panic_the_parsers() {
    // Invariant 9, deterministically: the real documents with bytes
    // flipped, dropped and repeated.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let docs = [
        fx("versions-v2"),
        fx("info-fixhostile"),
        fx("info-fixnative"),
    ];
    for round in 0..3000 {
        let mut doc = docs[round % docs.len()].clone();
        for _ in 0..1 + next() % 8 {
            let i = (next() as usize) % doc.len().max(1);
            match next() % 4 {
                0 if !doc.is_empty() => doc[i] = next() as u8,
                1 if !doc.is_empty() => {
                    doc.remove(i);
                }
                2 => doc.insert(
                    i.min(doc.len()),
                    [b'-', b'\n', b' ', b'|', b','][next() as usize % 5],
                ),
                _ => doc.truncate(i),
            }
        }
        if let Ok(v) = Versions::parse(&doc, |_| true) {
            let _ = (v.render_selected(), v.render_names(), v.md5_of("fixlib"));
        }
        let (kept, _) = parse_info("fixhostile", &doc);
        for k in kept {
            assert!(crate::path::RelPath::new(format!("gems/{}.gem", k.stem)).is_ok());
        }
        let stem = String::from_utf8_lossy(&doc[..doc.len().min(40)]).into_owned();
        let _ = gem_of_stem(&stem);
    }
}
