//! The RPM adapter on real documents: tests/fixtures/rpm/ holds repodata
//! made by tests/fixtures/rpm/build.py (createrepo_c, rpmbuild, gpg; the
//! zstd primary is the gzip one recompressed with the `zstd` tool, which
//! this createrepo_c lacks) and a metalink from its template with
//! `*.upstream.test` mirrors.

use super::primary::{Package, PrimaryHandler, resolve};
use super::repomd::{parse_metalink, parse_repomd};
use super::xml::{self, Handler, Reader};
use super::*;
use crate::catalog::Body;
use crate::catalog::build;
use crate::digest::{Algo, Digest};
use crate::layouts::testing::{Docs, block_on, configure};

const FX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rpm/");
const BASE: &str = "http://rpm.upstream.test/pub/";

fn fx(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FX}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn adapter(upstream: &str, keys: &str) -> Result<Rpm, String> {
    configure(&LAYOUT, upstream, keys, Rpm::from_keys)
}

/// The href of repomd.xml's `kind` entry in `repomd`.
fn href(repomd: &[u8], kind: &str) -> String {
    let (data, _) = parse_repomd(repomd).unwrap();
    data.into_iter()
        .find(|d| d.kind == kind)
        .unwrap()
        .href
        .unwrap()
}

/// The os repository of the fixture under `prefix` (`""` or `os/`).
fn os_docs(prefix: &str) -> Docs {
    let repomd = fx("os-repomd.xml");
    Docs::new(BASE)
        .with(
            &format!("{prefix}{}", href(&repomd, "primary")),
            fx("os-primary.xml.gz"),
        )
        .with(
            &format!("{prefix}repodata/repomd.xml.asc"),
            fx("os-repomd.xml.asc"),
        )
        .with(&format!("{prefix}repodata/repomd.xml"), repomd)
}

fn packages(data: &[u8]) -> PrimaryHandler {
    let mut h = PrimaryHandler::new(vec![BASE.to_string()]);
    let mut sink = XmlSink::new(&mut h, Algo::Sha256, 1 << 20);
    decompress_into(data, &mut sink).unwrap();
    sink.finish().unwrap();
    h.finish()
}

#[test]
fn repomd_lists_every_data_file_with_size_and_checksums() {
    let (data, dropped) = parse_repomd(&fx("os-repomd.xml")).unwrap();
    assert!(dropped.is_empty());
    let kinds: Vec<&str> = data.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "primary",
            "filelists",
            "other",
            "primary_db",
            "filelists_db",
            "other_db"
        ]
    );
    let p = &data[0];
    assert!(p.href.as_deref().unwrap().starts_with("repodata/"));
    assert!(p.href.as_deref().unwrap().ends_with("-primary.xml.gz"));
    assert_eq!(p.size, Some(fx("os-primary.xml.gz").len() as u64));
    let c = p.checksum.as_ref().unwrap();
    assert_eq!(c.kind, "sha256");
    assert_eq!(
        repomd::trusted(c).unwrap(),
        Digest::sha256_of(&fx("os-primary.xml.gz"))
    );
    assert!(p.open_checksum.is_some() && p.open_size.is_some());
}

#[test]
fn gzip_xz_and_zstd_primaries_give_the_same_packages() {
    let gz = packages(&fx("os-primary.xml.gz"));
    let zst = packages(&fx("os-primary.xml.zst"));
    assert_eq!(gz.packages, zst.packages);
    let paths: Vec<&str> = gz.packages.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Packages/a/app-1.0-1.x86_64.rpm",
            "Packages/l/libfoo-1.0-1.noarch.rpm",
            "Packages/l/libfoo-1.1-1.noarch.rpm",
        ]
    );
    assert!(gz.packages.iter().all(|p| p.size.unwrap() > 1000));
    assert_eq!(gz.rejected, 0);
    let xz = packages(&fx("extras-primary.xml.xz"));
    assert_eq!(xz.packages.len(), 1);
    assert_eq!(xz.packages[0].path, "Packages/tool-1.0-1.noarch.rpm");
}

#[test]
fn hostile_locations_are_withheld_and_the_good_package_kept() {
    let h = packages(&fx("hostile-primary.xml.gz"));
    let kept: Vec<&Package> = h.packages.iter().collect();
    assert_eq!(kept.len(), 1, "{:?}", h.reasons);
    assert_eq!(kept[0].path, "Packages/good-1.0-1.noarch.rpm");
    assert_eq!(h.rejected, 13, "{:?}", h.reasons);
    let all = h.reasons.join("\n");
    for why in [
        "absolute path",
        "URL outside this repository",
        "xml:base",
        "'%'",
        "'\\\\'",
        "inside repodata/",
        "twice with different checksums",
        "md5 checksum",
        "`.` or `..`",
        "longer than 255",
        "'\\u{7}'",
    ] {
        assert!(all.contains(why), "no reason with {why:?}:\n{all}");
    }
    let (data, _) = parse_repomd(&fx("hostile-repomd.xml")).unwrap();
    let urls = [BASE.to_string()];
    let withheld: Vec<String> = data
        .iter()
        .filter_map(|d| sync::listed(d, &urls).err())
        .collect();
    assert_eq!(withheld.len(), 2, "{withheld:?}");
}

#[test]
fn locations_resolve_only_inside_the_repository() {
    let repo = ["http://rpm.upstream.test/pub/os/".to_string()];
    let ok = |href, base| resolve(href, base, &repo);
    assert_eq!(ok("Packages/a/a.rpm", None).unwrap(), "Packages/a/a.rpm");
    assert_eq!(
        ok("a.rpm", Some("http://rpm.upstream.test/pub/os/Packages")).unwrap(),
        "Packages/a.rpm",
        "an xml:base at the repository itself"
    );
    assert_eq!(
        ok("http://rpm.upstream.test/pub/os/x/a.rpm", None).unwrap(),
        "x/a.rpm"
    );
    for (href, base) in [
        ("../a.rpm", None),
        ("x/./a.rpm", None),
        ("x//a.rpm", None),
        ("/a.rpm", None),
        ("http://rpm.upstream.test/pub/other/a.rpm", None),
        ("a.rpm", Some("http://rpm.upstream.test/pub/")),
        ("a.rpm", Some("https://evil.upstream.test/pub/os/")),
        ("a.rpm", Some("/srv/os/")),
        ("a.rpm", Some("../")),
        ("x%2f..%2fa.rpm", None),
        ("a.rpm?x=1", None),
        ("a.rpm#x", None),
        ("", None),
    ] {
        assert!(ok(href, base).is_err(), "{href:?} with base {base:?}");
    }
}

/// Records a document's events, for comparing readings.
#[derive(Default, PartialEq, Debug)]
struct Events(Vec<String>, bool);

impl Handler for Events {
    fn start(&mut self, name: &str, attrs: &[(String, String)]) {
        self.0.push(format!("<{name} {attrs:?}"));
        self.1 = true;
    }
    fn end(&mut self, name: &str) {
        self.0.push(format!("</{name}"));
    }
    fn text(&mut self, t: &str) {
        self.0.push(format!("text {t:?}"));
    }
    fn wants_text(&self) -> bool {
        self.1
    }
}

fn read(doc: &[u8], step: usize) -> Result<Events, xml::XmlError> {
    let mut e = Events::default();
    let mut r = Reader::new();
    for c in doc.chunks(step.max(1)) {
        r.feed(c, &mut e)?;
    }
    r.finish(&mut e)?;
    Ok(e)
}

#[test]
fn the_xml_reader_does_not_care_where_chunks_break() {
    let mut doc = Vec::new();
    flate2::read::GzDecoder::new(&fx("hostile-primary.xml.gz")[..])
        .read_to_end(&mut doc)
        .unwrap();
    doc.extend_from_slice(b"<!-- trailing -->\n");
    let whole = read(&doc, doc.len()).unwrap();
    assert!(whole.0.len() > 100);
    for step in [1, 2, 3, 7, 64, 1000] {
        assert_eq!(read(&doc, step).unwrap(), whole, "chunks of {step}");
    }
    let odd = b"<?xml version='1.0'?><!DOCTYPE r [<!ENTITY x 'y'>]><r a = 'q&quot;&#x41;&#66;'>t&amp;<![CDATA[<&]]]>]]><!-- c -- -->u<e/></r>";
    let want = read(odd, odd.len()).unwrap();
    assert_eq!(
        want.0,
        [
            r#"<r [("a", "q\"AB")]"#,
            r#"text "t&<&]]]>u""#,
            "<e []",
            "</e",
            "</r"
        ]
    );
    for step in 1..odd.len() {
        assert_eq!(read(odd, step).unwrap(), want, "chunks of {step}");
    }
}

#[test]
fn malformed_xml_is_an_error_not_a_guess() {
    let long_tag = format!("<r><a b=\"{}\"/></r>", "x".repeat(xml::MAX_MARKUP));
    let deep = "<a>".repeat(xml::MAX_DEPTH + 1);
    for bad in [
        "<r><a></b></r>",
        "<r>",
        "<r/><s/>",
        "",
        "just text",
        "<r a=b/>",
        "<r a='1' a='2'/>",
        "<r>&nbsp;</r>",
        "<r a='&#0;'/>",
        "<r><!x></r>",
        "<r><a",
        long_tag.as_str(),
        deep.as_str(),
    ] {
        assert!(read(bad.as_bytes(), 5).is_err(), "{bad:.60}");
    }
    let mut r = Reader::new();
    let mut e = Events::default();
    assert!(r.feed(b"<r></x>", &mut e).is_err());
    assert!(r.feed(b"</r>", &mut e).is_err(), "an error sticks");
}

#[test]
fn metalinks_give_trusted_hashes_and_mirrors_best_first() {
    let m = parse_metalink(&fx("metalink.xml")).unwrap();
    let repomd = fx("os-repomd.xml");
    assert!(m.hashes.contains(&Digest::sha256_of(&repomd)));
    assert_eq!(
        m.hashes.len(),
        3,
        "sha256, sha512 and an alternate's sha256"
    );
    assert_eq!(m.weak, 2, "md5 and sha1 are not trusted");
    assert_eq!(m.urls.len(), 3);
    assert!(m.urls[0].starts_with("http://down.upstream.test/"));
    assert!(m.urls[2].starts_with("http://b.upstream.test/"));
    // RFC 5854: priority, lower first; IANA hash names.
    let v4 = format!(
        r#"<?xml version="1.0"?><metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="repomd.xml"><size>3</size><hash type="sha-256">{}</hash><url priority="2">http://two.upstream.test/r/repodata/repomd.xml</url><url priority="1">http://one.upstream.test/r/repodata/repomd.xml</url></file><file name="other"><url priority="0">http://no.upstream.test/</url></file></metalink>"#,
        "ab".repeat(32)
    );
    let m = parse_metalink(v4.as_bytes()).unwrap();
    assert_eq!(m.hashes.len(), 1);
    assert!(m.urls[0].contains("one.") && m.urls[1].contains("two.") && m.urls.len() == 2);
}

#[test]
fn a_sync_lists_repodata_and_packages_with_sizes_and_digests() {
    let a = adapter(BASE, "repos = [\"os\"]").unwrap();
    let docs = os_docs("os/");
    let out = block_on(a.unit("os", &docs, 1_800_000_000, true))
        .unwrap()
        .unwrap();
    let find = |p: &str| out.entries.iter().find(|e| e.path.as_str() == p);
    assert!(matches!(
        find("os/repodata/repomd.xml").unwrap().body,
        Body::Inline(_)
    ));
    assert!(find("os/repodata/repomd.xml.asc").is_some());
    let (data, _) = parse_repomd(&fx("os-repomd.xml")).unwrap();
    for d in &data {
        let e = find(&format!("os/{}", d.href.as_ref().unwrap())).unwrap();
        assert_eq!(e.mtime, Some(1_800_000_000), "stamped: {}", e.path);
        if let Body::Remote { url, size, .. } = &e.body {
            assert_eq!(*size, d.size);
            assert_eq!(*url, format!("{BASE}os/{}", d.href.as_ref().unwrap()));
        }
    }
    let app = find("os/Packages/a/app-1.0-1.x86_64.rpm").unwrap();
    match &app.body {
        Body::Remote { url, size, digest } => {
            assert_eq!(url, &format!("{BASE}os/Packages/a/app-1.0-1.x86_64.rpm"));
            assert!(size.unwrap() > 1000);
            assert_eq!(digest.algo(), Algo::Sha256);
        }
        b => panic!("{b:?}"),
    }
    assert_eq!(out.entries.len(), 2 + data.len() + 3);
}

#[test]
fn signatures_must_verify_against_the_keyring() {
    let keyring = format!("keyring = \"{FX}keyring.asc\"");
    let a = adapter(BASE, &keyring).unwrap();
    block_on(a.unit(ROOT_UNIT, &os_docs(""), 0, true)).unwrap();
    let mut forged = fx("os-repomd.xml");
    forged.extend_from_slice(b"\n");
    let docs = os_docs("").with("repodata/repomd.xml", forged);
    let e = block_on(a.unit(ROOT_UNIT, &docs, 0, true))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad signature") && e.contains("repomd.xml.asc"),
        "{e}"
    );
    let mut unsigned = os_docs("");
    unsigned.map.remove("repodata/repomd.xml.asc");
    let e = block_on(a.unit(ROOT_UNIT, &unsigned, 0, true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be signed"), "{e}");
    let wrong = adapter(BASE, &format!("keyring = \"{FX}wrong-keyring.gpg\"")).unwrap();
    let e = block_on(wrong.unit(ROOT_UNIT, &os_docs(""), 0, true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not in the keyring"), "{e}");
}

#[test]
fn a_primary_that_does_not_match_repomd_fails_the_sync() {
    let a = adapter(BASE, "").unwrap();
    let repomd = fx("os-repomd.xml");
    let docs = os_docs("").with(&href(&repomd, "primary"), fx("extras-primary.xml.xz"));
    let e = block_on(a.unit(ROOT_UNIT, &docs, 0, true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match repomd.xml"), "{e}");
}

#[test]
fn a_metalink_picks_the_first_mirror_whose_repomd_it_lists() {
    let link = "http://ml.upstream.test/metalink?repo=os&arch=x86_64";
    let a = adapter(
        "http://down.upstream.test/os/",
        &format!("metalink = \"{link}\""),
    )
    .unwrap();
    let good = "http://b.upstream.test/pub/os/";
    let repomd = fx("os-repomd.xml");
    let mut stale = repomd.clone();
    stale.extend_from_slice(b" ");
    let docs = Docs::new("http://down.upstream.test/os/")
        .with(link, fx("metalink.xml"))
        .with(&format!("{good}repodata/repomd.xml"), &repomd)
        .with(
            &format!("{good}{}", href(&repomd, "primary")),
            fx("os-primary.xml.gz"),
        );
    let out = block_on(a.unit(ROOT_UNIT, &docs, 0, true))
        .unwrap()
        .unwrap();
    let app = out
        .entries
        .iter()
        .find(|e| e.path.as_str() == "Packages/a/app-1.0-1.x86_64.rpm")
        .unwrap();
    assert!(matches!(&app.body, Body::Remote { url, .. } if url.starts_with(good)));
    let learnt: Vec<String> = a
        .fallback_upstreams()
        .iter()
        .map(|u| u.to_string())
        .collect();
    assert_eq!(learnt, ["http://down.upstream.test/os/", good]);
    // A mirror serving a repomd.xml the metalink does not list is passed over.
    let docs = docs.with(&format!("{good}repodata/repomd.xml"), stale);
    let e = block_on(a.unit(ROOT_UNIT, &docs, 0, true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not the repomd.xml the metalink lists"), "{e}");
}

#[test]
fn keys_are_checked_strictly() {
    assert_eq!(
        adapter(BASE, "").unwrap().opts.repos,
        [String::new()],
        "no repos: the upstream itself"
    );
    let a = adapter(
        BASE,
        "repos = [\"/BaseOS/x86_64/os/\", \"AppStream/x86_64/os\"]",
    )
    .unwrap();
    assert_eq!(a.opts.repos, ["BaseOS/x86_64/os", "AppStream/x86_64/os"]);
    for (keys, want) in [
        ("repos = []", "at least one"),
        ("repos = [\"a/../b\"]", "not a path"),
        ("repos = [\"a\", \"a/b\"]", "overlap"),
        ("keyring = \"/no/such/key\"", "cannot read"),
        ("keyring = \"rel\"", "absolute path"),
        ("metalink = \"ftp://x/\"", "not an http(s) URL"),
        (
            "repos = [\"a\"]\nmetalink = \"http://m.upstream.test/ml\"",
            "drop `repos`",
        ),
        ("repodata_grace = \"soon\"", "duration"),
        ("suites = [\"x\"]", "unknown key `suites`"),
    ] {
        let e = adapter(BASE, keys).err().unwrap_or_default();
        assert!(e.contains(want) && e.contains("rpm mirror"), "{keys}: {e}");
    }
}

#[test]
fn superseded_repodata_outlives_its_repomd_for_the_grace_period() {
    let a = adapter(BASE, "repodata_grace = \"1h\"").unwrap();
    let entries = |t: u32, files: &[&str]| -> Vec<Entry> {
        let mut v: Vec<&str> = vec!["repodata/repomd.xml"];
        v.extend(files);
        v.iter()
            .map(|p| Entry {
                path: RelPath::new(*p).unwrap(),
                mtime: Some(t),
                body: Body::Remote {
                    url: format!("{BASE}{p}"),
                    size: Some(1),
                    digest: Digest::sha256_of(p.as_bytes()),
                },
            })
            .collect()
    };
    let t0: u32 = 1_800_000_000;
    let g1 = build(
        1,
        1,
        t0,
        entries(t0, &["repodata/a-primary.xml.gz", "repodata/c-comps.xml"]),
        vec![],
        None,
    )
    .unwrap()
    .generation;
    // A new repomd.xml lists b instead of a: a retires (just before the new stamp).
    let t1 = t0 + 60;
    let e2 = entries(t1, &["repodata/b-primary.xml.gz", "repodata/c-comps.xml"]);
    let carried = a.carry_over(&g1, &e2, u64::from(t1));
    assert_eq!(carried.len(), 1);
    assert_eq!(carried[0].path.as_str(), "repodata/a-primary.xml.gz");
    assert_eq!(carried[0].mtime, Some(t1 - 1));
    let mut all = e2.clone();
    all.extend(carried);
    let g2 = build(1, 2, t1, all, vec![], Some(&g1)).unwrap().generation;
    // Another publish half an hour later: a keeps its retirement time, b retires.
    let t2 = t1 + 1800;
    let e3 = entries(t2, &["repodata/d-primary.xml.gz", "repodata/c-comps.xml"]);
    let mut carried = a.carry_over(&g2, &e3, u64::from(t2));
    carried.sort_by(|x, y| x.path.cmp(&y.path));
    let got: Vec<(&str, Option<u32>)> =
        carried.iter().map(|e| (e.path.as_str(), e.mtime)).collect();
    assert_eq!(
        got,
        [
            ("repodata/a-primary.xml.gz", Some(t1 - 1)),
            ("repodata/b-primary.xml.gz", Some(t2 - 1))
        ]
    );
    let mut all = e3.clone();
    all.extend(carried);
    let g3 = build(1, 3, t2, all, vec![], Some(&g2)).unwrap().generation;
    // Past a's hour, b's still running.
    let late = a.carry_over(&g3, &e3, u64::from(t1 + 3700));
    let got: Vec<&str> = late.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(got, ["repodata/b-primary.xml.gz"]);
}

use std::io::Read;

#[test]
fn mutated_documents_never_panic_and_read_the_same_however_cut() {
    // A small deterministic fuzzer over real documents (the fuzz target
    // rpm_metadata does this at scale): flipped, dropped and duplicated
    // bytes, then readings in chunks of 1, 3 and 17 bytes.
    let mut doc = Vec::new();
    flate2::read::GzDecoder::new(&fx("os-primary.xml.gz")[..])
        .read_to_end(&mut doc)
        .unwrap();
    let docs = [doc, fx("os-repomd.xml"), fx("metalink.xml")];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let read_primary = |d: &[u8], step: usize| {
        let mut h = PrimaryHandler::new(vec![BASE.to_string()]);
        let mut r = Reader::new();
        let ok = d.chunks(step).all(|c| r.feed(c, &mut h).is_ok()) && r.finish(&mut h).is_ok();
        let h = h.finish();
        (ok, h.packages, h.rejected)
    };
    for round in 0..600 {
        let mut d = docs[round % docs.len()].clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() as usize) % d.len();
            match next() % 4 {
                0 => d[i] = next() as u8,
                1 => d[i] = b"<>&\"'/=;#!?[]-"[(next() % 14) as usize],
                2 => drop(d.remove(i)),
                _ => d.truncate(i),
            }
            if d.is_empty() {
                d.push(b'<');
            }
        }
        let whole = read_primary(&d, d.len());
        for step in [1, 3, 17] {
            assert_eq!(
                read_primary(&d, step),
                whole,
                "round {round}, chunks of {step}"
            );
        }
        for p in &whole.1 {
            assert!(RelPath::new(p.path.as_str()).is_ok(), "{:?}", p.path);
        }
        let _ = parse_repomd(&d);
        let _ = parse_metalink(&d);
    }
}

/// A repository whose primary.xml (uncompressed) is `primary`.
fn synthetic(prefix: &str, primary: &str) -> Docs {
    let sha = Digest::sha256_of(primary.as_bytes()).hex();
    let repomd = format!(
        r#"<repomd><data type="primary"><checksum type="sha256">{sha}</checksum><location href="repodata/{sha}-primary.xml"/><size>{}</size></data></repomd>"#,
        primary.len()
    );
    Docs::new(BASE)
        .with(&format!("{prefix}repodata/repomd.xml"), repomd)
        .with(&format!("{prefix}repodata/{sha}-primary.xml"), primary)
}

#[test]
fn a_location_too_long_under_its_repository_is_skipped_not_a_panic() {
    let pkg = |href: &str| {
        format!(
            r#"<package><name>p</name><checksum type="sha256">{}</checksum><size package="1"/><location href="{href}"/></package>"#,
            "ab".repeat(32)
        )
    };
    let long = format!("{}x.rpm", "a/".repeat(2045));
    assert!(long.len() < crate::path::MAX_PATH && long.len() + 10 > crate::path::MAX_PATH);
    let doc = format!("<metadata>{}{}</metadata>", pkg(&long), pkg("ok.rpm"));
    let a = adapter(BASE, "repos = [\"some/repo/path\"]").unwrap();
    let docs = synthetic("some/repo/path/", &doc);
    let out = block_on(a.unit("some/repo/path", &docs, 0, true))
        .unwrap()
        .unwrap();
    assert_eq!(out.rejected, 1);
    assert!(
        out.entries
            .iter()
            .any(|e| e.path.as_str() == "some/repo/path/ok.rpm")
    );
    let e = adapter(BASE, &format!("repos = [\"{}\"]", "r/".repeat(2040)))
        .err()
        .unwrap();
    assert!(e.contains("not a path"), "{e}");
}
