//! The adapter on `PACKAGES` documents in the format `tools::write_PACKAGES`
//! writes (the real-mount tests use files R itself wrote, see
//! `tests/fixtures/cran/build.py`).

use std::collections::HashMap;
use std::io::Write;

use super::*;
use crate::digest::Algo;
use crate::layouts::testing::{self, Docs, block_on};

const BASE: &str = "https://cran.upstream.test/";

const PACKAGES: &str = "Package: fixdep\nVersion: 1.1\nDepends: R (>= 3.0)\nLicense: GPL-2\nMD5sum: 0cc175b9c0f1b6a831c399e269772661\nNeedsCompilation: no\n\nPackage: fixapp\nVersion: 0.2-1\nImports: fixdep (>= 1.1), stats\n        , utils\nMD5sum: 900150983cd24fb0d6963f7d28e17f72\n\nPackage: ../evil\nVersion: 1.0\n\nPackage: nomd5\nVersion: 2.0\n";

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn adapter(keys: &str) -> Cran {
    testing::configure(&LAYOUT, BASE, keys, Cran::from_keys).unwrap()
}

fn upstream() -> Docs {
    Docs::new(BASE)
        .with("src/contrib/PACKAGES", PACKAGES)
        .with("src/contrib/PACKAGES.gz", gz(PACKAGES.as_bytes()))
        .with("src/contrib/PACKAGES.rds", b"\xfd7zXZ\0rest")
        .with(
            "src/contrib/Archive/fixdep/",
            "<html><body><a href=\"../\">../</a>\n<a href=\"fixdep_1.0.tar.gz\">fixdep_1.0.tar.gz</a> 01-Jan-2024\n<a href='fixdep_0.9-2.tar.gz'>x</a><a href=\"../fixdep_2.0.tar.gz\">up</a><a href=\"sub/fixdep_3.0.tar.gz\">sub</a><a href=\"fixdepx_1.0.tar.gz\">no</a><a href=\"fixdep_1.0.tar.gz.sig\">no</a></body></html>",
        )
}

fn files(out: &UnitOutput) -> HashMap<String, Body> {
    out.entries
        .iter()
        .map(|e| (e.path.as_str().to_string(), e.body.clone()))
        .collect()
}

fn unit(a: &Cran, u: &str, src: &Docs) -> Result<Option<UnitOutput>, SyncError> {
    block_on(a.unit(u, src, 0, true))
}

#[test]
fn packages_records_give_name_version_and_md5() {
    let (listed, dropped) = parse(PACKAGES);
    let names: Vec<_> = listed.iter().map(|p| p.file()).collect();
    assert_eq!(
        names,
        [
            "fixdep_1.1.tar.gz",
            "fixapp_0.2-1.tar.gz",
            "nomd5_2.0.tar.gz"
        ]
    );
    assert_eq!(listed[0].md5.as_ref().unwrap().algo(), Algo::Md5);
    assert_eq!(listed[2].md5, None);
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(is_version("1.0-3") && !is_version("1") && !is_version("1..2") && !is_version("a.b"));
    assert!(is_package_name("R6") && is_package_name("data.table"));
    assert!(
        !is_package_name("x")
            && !is_package_name("a/b")
            && !is_package_name("1ab")
            && !is_package_name("ab.")
    );
}

#[test]
fn without_the_policy_only_the_packages_files_are_listed() {
    let a = adapter("");
    let out = unit(&a, INDEX, &upstream()).unwrap().unwrap();
    let f = files(&out);
    let mut names: Vec<_> = f.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "src/contrib/PACKAGES",
            "src/contrib/PACKAGES.gz",
            "src/contrib/PACKAGES.rds"
        ]
    );
    assert!(matches!(&f["src/contrib/PACKAGES"], Body::Inline(b) if b == PACKAGES.as_bytes()));
    assert_eq!(out.rejected, 1);
    assert_eq!(a.lazy_unit(ARCHIVE, "fixdep"), None);
    assert!(!a.lazy_dir(CONTRIB, "Archive"));
    assert_eq!(
        unit(&a, "Archive/fixdep", &upstream())
            .unwrap()
            .map(|o| o.entries.len()),
        None
    );
}

#[test]
fn under_the_policy_tarballs_are_listed_with_their_md5_or_none() {
    let a = adapter("trust_on_first_use = true\npackages = [\"fix*\", \"nomd5\"]");
    let out = unit(&a, INDEX, &upstream()).unwrap().unwrap();
    let f = files(&out);
    match &f["src/contrib/fixapp_0.2-1.tar.gz"] {
        Body::Remote { url, size, digest } => {
            assert_eq!(
                url,
                "https://cran.upstream.test/src/contrib/fixapp_0.2-1.tar.gz"
            );
            assert_eq!(*size, None);
            assert_eq!(digest.to_string(), "md5:900150983cd24fb0d6963f7d28e17f72");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&f["src/contrib/nomd5_2.0.tar.gz"], Body::Remote { digest, .. } if *digest == Digest::none())
    );
    // The filter limits tarballs, never the PACKAGES files.
    let only = adapter("trust_on_first_use = true\npackages = [\"fixapp\"]");
    let f = files(&unit(&only, INDEX, &upstream()).unwrap().unwrap());
    assert!(f.contains_key("src/contrib/fixapp_0.2-1.tar.gz"));
    assert!(!f.contains_key("src/contrib/fixdep_1.1.tar.gz"));
    assert!(f.contains_key("src/contrib/PACKAGES"));
}

#[test]
fn archive_directories_are_read_from_their_listing() {
    let a = adapter("trust_on_first_use = true");
    assert!(a.lazy_dir(CONTRIB, "Archive"));
    assert_eq!(
        a.lazy_unit(ARCHIVE, "fixdep").as_deref(),
        Some("Archive/fixdep")
    );
    assert_eq!(a.lazy_unit(ARCHIVE, "../x"), None);
    let out = unit(&a, "Archive/fixdep", &upstream()).unwrap().unwrap();
    let mut names: Vec<_> = files(&out).into_keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "src/contrib/Archive/fixdep/fixdep_0.9-2.tar.gz",
            "src/contrib/Archive/fixdep/fixdep_1.0.tar.gz",
            "src/contrib/Archive/fixdep/index.html"
        ]
    );
    let tarballs = out
        .entries
        .iter()
        .filter(|e| e.path.as_str().ends_with(".tar.gz"));
    assert!(
        tarballs
            .clone()
            .all(|e| matches!(&e.body, Body::Remote { digest, .. } if *digest == Digest::none()))
    );
    // The listing the mirror serves is one a mirror of this mirror reads
    // alike (the shipped nginx config serves it as the directory's index).
    let Some(Body::Inline(html)) = files(&out).remove("src/contrib/Archive/fixdep/index.html")
    else {
        panic!("no inline index.html")
    };
    let tier2 = Docs::new(BASE).with("src/contrib/Archive/fixdep/", html);
    let again = unit(&a, "Archive/fixdep", &tier2).unwrap().unwrap();
    assert_eq!(
        files(&again)
            .keys()
            .collect::<std::collections::BTreeSet<_>>(),
        files(&out).keys().collect()
    );
    assert_eq!(tarballs.count(), 2);
    assert!(unit(&a, "Archive/nothere", &upstream()).unwrap().is_none());
    // A page that links to none of the package's tarballs is not its listing.
    let src = upstream().with("src/contrib/Archive/fixdep/", "<html>maintenance</html>");
    let e = unit(&a, "Archive/fixdep", &src).unwrap_err().to_string();
    assert!(e.contains("links to no fixdep_<version>.tar.gz"), "{e}");
}

#[test]
fn a_packages_gz_that_is_not_packages_fails_the_index() {
    let a = adapter("trust_on_first_use = true");
    let src = upstream().with(
        "src/contrib/PACKAGES.gz",
        gz(b"Package: other\nVersion: 1.0\n"),
    );
    let e = unit(&a, INDEX, &src).unwrap_err().to_string();
    assert!(e.contains("PACKAGES.gz") && e.contains("compressed"), "{e}");
    let src = upstream().with("src/contrib/PACKAGES.rds", b"<html>");
    let e = unit(&a, INDEX, &src).unwrap_err().to_string();
    assert!(e.contains("PACKAGES.rds"), "{e}");
}

#[test]
fn a_literal_package_name_is_checked() {
    let e = testing::configure(&LAYOUT, BASE, "packages = [\"a/b\"]", Cran::from_keys)
        .err()
        .unwrap();
    assert!(
        e.contains("packages") && e.contains("not an R package name"),
        "{e}"
    );
}
