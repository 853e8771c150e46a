use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::layouts::testing::{self, Docs, block_on};

const UP: &str = "https://cpan.upstream.test/";

/// A throwaway GNUPGHOME with one key, removed on drop.
struct Key(PathBuf);

impl Key {
    fn new(tag: &str) -> Key {
        let dir =
            std::env::temp_dir().join(format!("regfs-cpan-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let gpg = |args: &[&str]| {
            let st = Command::new("gpg")
                .arg("--homedir")
                .arg(&dir)
                .args([
                    "--batch",
                    "--quiet",
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    "",
                ])
                .args(args)
                .status()
                .expect("gpg is installed");
            assert!(st.success(), "gpg {args:?}");
        };
        gpg(&[
            "--quick-gen-key",
            &format!("{tag} <{tag}@upstream.test>"),
            "ed25519",
            "sign",
            "never",
        ]);
        gpg(&[
            "--output",
            dir.join("pub.gpg").to_str().unwrap(),
            "--export",
        ]);
        Key(dir)
    }

    fn keyring(&self) -> PathBuf {
        self.0.join("pub.gpg")
    }

    fn clearsign(&self, text: &str) -> Vec<u8> {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(&self.0)
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .arg("--clearsign")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(text.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success());
        let mut signed = b"0&&<<''; # this PGP-signed message is also valid perl\n".to_vec();
        signed.extend(out.stdout);
        signed
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn adapter(keyring: &Path, filter: Option<&[&str]>) -> Cpan {
    let keys = testing::filter("authors", filter) + &format!("keyring = {:?}\n", keyring);
    testing::configure(&LAYOUT, UP, &keys, Cpan::from_keys).unwrap()
}

fn checksums(dir: &str, files: &[(&str, &[u8])]) -> String {
    let mut s = "# CHECKSUMS file written on Wed Dec  2 03:00:00 2026 GMT by CPAN::Checksums (v2.14)\n$cksum = {\n".to_string();
    let items: Vec<String> = files
        .iter()
        .map(|(n, body)| {
            format!(
                "  '{n}' => {{\n    'cpan_path' => '{dir}',\n    'md5' => '00',\n    'mtime' => '2026-12-02',\n    'sha256' => '{}',\n    'size' => {}\n  }}",
                Digest::sha256_of(body).hex(),
                body.len()
            )
        })
        .collect();
    s.push_str(&items.join(",\n"));
    s.push_str("\n};\n__END__\n");
    s
}

fn recent(mark: &str, min: f64, max: f64, events: &[(f64, &str)]) -> String {
    let mut s = format!(
        "---\nmeta:\n  dirtymark: {mark}\n  interval: 1h\n  minmax:\n    max: {max}\n    min: {min}\n  protocol: 1\nrecent:\n"
    );
    for (e, p) in events {
        s.push_str(&format!("  - epoch: {e}\n    path: {p}\n    type: new\n"));
    }
    s
}

#[test]
fn names_and_lookups() {
    for good in ["AB", "ABCD", "A-B1", "XYZZY123"] {
        assert!(is_author(good), "{good}");
    }
    for bad in [
        "",
        "A",
        "abcd",
        "1ABC",
        "AB/C",
        "AB.C",
        "..",
        "ABCDEFGHIJKLMNOPQ",
    ] {
        assert!(!is_author(bad), "{bad:?}");
    }
    assert_eq!(author_dir("ABCD"), "A/AB/ABCD");
    assert_eq!(author_of("id/A/AB/ABCD/Foo-1.0.tar.gz"), Some("ABCD"));
    assert_eq!(author_of("authors/id/A/AB/ABCD/CHECKSUMS"), Some("ABCD"));
    assert_eq!(author_of("id/A/AX/ABCD/x"), None);
    assert_eq!(author_of("01mailrc.txt.gz"), None);
    let key = Key::new("names");
    let a = adapter(&key.keyring(), None);
    assert_eq!(
        a.lazy_unit("authors/id/A/AB", "ABCD").as_deref(),
        Some("ABCD")
    );
    assert_eq!(a.lazy_unit("authors/id/A/AB", "XBCD"), None);
    assert_eq!(a.lazy_unit("authors/id/A/AB", "abcd"), None);
    assert_eq!(a.lazy_unit("authors/id/A", "AB"), None);
    assert!(a.lazy_dir("authors", "id") && a.lazy_dir("authors/id", "A"));
    assert!(a.lazy_dir("authors/id/A", "AB") && !a.lazy_dir("authors/id/A", "BB"));
    assert!(!a.lazy_dir("authors/id", "..") && !a.lazy_dir("authors/id", "a"));
    let f = adapter(&key.keyring(), Some(&["abc*"]));
    assert!(f.lazy_unit("authors/id/A/AB", "ABCD").is_some());
    assert!(f.lazy_unit("authors/id/A/AB", "ABXY").is_none());
    let no_key = testing::configure(&LAYOUT, UP, "", Cpan::from_keys)
        .err()
        .unwrap();
    assert!(no_key.contains("keyring"), "{no_key}");
    let bad = testing::configure(
        &LAYOUT,
        UP,
        &format!("keyring = {:?}\nauthors = [\"a/b\"]\n", key.keyring()),
        Cpan::from_keys,
    )
    .err()
    .unwrap();
    assert!(bad.contains("authors") && bad.contains("PAUSE ID"), "{bad}");
}

#[test]
fn an_author_directory_verified_by_its_signed_checksums() {
    let key = Key::new("pause");
    let other = Key::new("forger");
    let a = adapter(&key.keyring(), None);
    let dist: &[u8] = b"dist bytes";
    let text = checksums(
        "A/AB/ABCD",
        &[("Foo-1.0.tar.gz", dist), ("Foo-1.0.meta", b"{}")],
    );
    let signed = key.clearsign(&text);
    let docs = Docs::new(UP).with("authors/id/A/AB/ABCD/CHECKSUMS", &signed);
    let out = block_on(a.unit("ABCD", &docs, 0, true)).unwrap().unwrap();
    assert_eq!(out.rejected, 0);
    let find = |p: &str| out.entries.iter().find(|e| e.path.as_str() == p);
    match &find("authors/id/A/AB/ABCD/Foo-1.0.tar.gz").unwrap().body {
        Body::Remote { url, size, digest } => {
            assert_eq!(url, &format!("{UP}authors/id/A/AB/ABCD/Foo-1.0.tar.gz"));
            assert_eq!(*size, Some(dist.len() as u64));
            assert_eq!(*digest, Digest::sha256_of(dist));
        }
        b => panic!("{b:?}"),
    }
    match &find("authors/id/A/AB/ABCD/CHECKSUMS").unwrap().body {
        Body::Inline(b) => assert_eq!(b, &signed),
        b => panic!("{b:?}"),
    }
    assert_eq!(out.entries.len(), 3);

    // Signed by another key, altered after signing, unsigned, or another
    // directory's: the directory is refused, naming the URL.
    let tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replace("'size' => 10", "'size' => 11");
    let other_dir = key.clearsign(&checksums("X/XY/XYZ", &[("Foo-1.0.tar.gz", dist)]));
    for body in [
        other.clearsign(&text),
        tampered.into_bytes(),
        text.clone().into_bytes(),
        other_dir,
    ] {
        let docs = Docs::new(UP).with("authors/id/A/AB/ABCD/CHECKSUMS", &body);
        let e = block_on(a.unit("ABCD", &docs, 0, true))
            .unwrap_err()
            .to_string();
        assert!(e.contains("authors/id/A/AB/ABCD/CHECKSUMS"), "{e}");
    }
    // Evaluable Perl, even signed, is not data.
    let evil = key.clearsign("$cksum = { 'a' => { 'size' => `rm -rf /` } };\n");
    let docs = Docs::new(UP).with("authors/id/A/AB/ABCD/CHECKSUMS", &evil);
    assert!(block_on(a.unit("ABCD", &docs, 0, true)).is_err());
    // Upstream without that author: not materialized.
    assert!(
        block_on(a.unit("ABCD", &Docs::new(UP), 0, true))
            .unwrap()
            .is_none()
    );
}

#[test]
fn syncs_refresh_only_what_the_recent_files_name() {
    let key = Key::new("recent");
    let a = adapter(&key.keyring(), None);
    let cs = |dir: &str| key.clearsign(&checksums(dir, &[("D-1.tar.gz", b"x")]));
    let packages = [0x1f, 0x8b, 0];
    let base = |r1h: String| {
        Docs::new(UP)
            .with("modules/02packages.details.txt.gz", packages)
            .with("authors/id/A/AB/ABCD/CHECKSUMS", cs("A/AB/ABCD"))
            .with("authors/id/X/XY/XYZ/CHECKSUMS", cs("X/XY/XYZ"))
            .with("authors/RECENT-1h.yaml", r1h)
    };
    // No previous sync: a full pass, RECENT-1h read for its baseline only.
    let docs = base(recent(
        "100.5",
        1000.0,
        2000.0,
        &[(2000.0, "id/A/AB/ABCD/D-1.tar.gz")],
    ));
    let sel = block_on(a.select(&docs)).unwrap();
    assert_eq!(sel, Selection::Lazy(vec![INDEX.to_string()]));
    assert_eq!(a.seen.lock().unwrap().plan, Some(Plan::Full));
    assert_eq!(*docs.asked.lock().unwrap(), ["authors/RECENT-1h.yaml"]);

    // Next: 1h reaches back to 2000 and names XYZ only.
    let docs = base(recent(
        "100.5",
        1500.0,
        3000.0,
        &[
            (3000.0, "id/X/XY/XYZ/D-1.tar.gz"),
            (1500.0, "id/A/AB/ABCD/x"),
        ],
    ));
    block_on(a.select(&docs)).unwrap();
    let only = |ids: &[&str]| Some(Plan::Only(ids.iter().map(|s| s.to_string()).collect()));
    assert_eq!(a.seen.lock().unwrap().plan, only(&["XYZ"]));
    let out = block_on(a.unit("ABCD", &docs, 0, false)).unwrap().unwrap();
    assert!(out.unchanged && out.entries.is_empty());
    let out = block_on(a.unit("XYZ", &docs, 0, false)).unwrap().unwrap();
    assert!(!out.unchanged && out.entries.len() == 2);
    assert_eq!(
        *docs.asked.lock().unwrap(),
        ["authors/RECENT-1h.yaml", "authors/id/X/XY/XYZ/CHECKSUMS"]
    );
    // An author whose refresh failed is tried again at the next sync, even
    // where no RECENT file names it any more.
    let broken = base(recent(
        "100.5",
        1500.0,
        3000.0,
        &[(3000.0, "id/A/AB/ABCD/y")],
    ))
    .with("authors/id/A/AB/ABCD/CHECKSUMS", "garbage");
    block_on(a.select(&broken)).unwrap();
    assert_eq!(a.seen.lock().unwrap().plan, only(&["ABCD"]));
    assert!(block_on(a.unit("ABCD", &broken, 0, false)).is_err());
    let docs = base(recent(
        "100.5",
        2900.0,
        3100.0,
        &[(3100.0, "id/X/XY/XYZ/D-1.tar.gz")],
    ));
    block_on(a.select(&docs)).unwrap();
    assert_eq!(a.seen.lock().unwrap().plan, only(&["ABCD", "XYZ"]));
    assert!(
        !block_on(a.unit("ABCD", &docs, 0, false))
            .unwrap()
            .unwrap()
            .unchanged
    );
    let docs = base(recent(
        "100.5",
        3000.0,
        3100.0,
        &[(3100.0, "id/X/XY/XYZ/D-1.tar.gz")],
    ));
    block_on(a.select(&docs)).unwrap();
    assert_eq!(a.seen.lock().unwrap().plan, only(&["XYZ"]));
    let docs = base(recent(
        "100.5",
        1500.0,
        3000.0,
        &[
            (3000.0, "id/X/XY/XYZ/D-1.tar.gz"),
            (1500.0, "id/A/AB/ABCD/x"),
        ],
    ));
    // A lazy lookup (full) is never skipped.
    assert!(
        !block_on(a.unit("ABCD", &docs, 0, true))
            .unwrap()
            .unwrap()
            .unchanged
    );

    // 1h no longer reaches back to 3000: the longer files are read in turn,
    // their events added up, until one does.
    let docs = base(recent(
        "100.5",
        5000.0,
        6000.0,
        &[(6000.0, "id/A/AB/ABCD/y")],
    ))
    .with(
        "authors/RECENT-6h.yaml",
        recent("100.5", 4000.0, 5500.0, &[(5500.0, "id/Q/QQ/QQQ/z")]),
    )
    .with(
        "authors/RECENT-1d.yaml",
        recent(
            "100.5",
            2000.0,
            5000.0,
            &[(3500.0, "id/X/XY/XYZ/z"), (2500.0, "id/Z/ZZ/ZZZ/old")],
        ),
    );
    block_on(a.select(&docs)).unwrap();
    assert_eq!(a.seen.lock().unwrap().plan, only(&["ABCD", "QQQ", "XYZ"]));
    assert_eq!(docs.asked.lock().unwrap().len(), 3);

    // None reaches back (the last sync was before 1Y's range): full pass.
    let docs = base(recent("100.5", 9000.0, 9500.0, &[]));
    block_on(a.select(&docs)).unwrap();
    assert_eq!(a.seen.lock().unwrap().plan, Some(Plan::Full));
    // A changed dirtymark: full pass, whatever the range.
    let docs = base(recent("777.1", 0.0, 9600.0, &[]));
    block_on(a.select(&docs)).unwrap();
    assert_eq!(a.seen.lock().unwrap().plan, Some(Plan::Full));
    // A broken RECENT file fails the sync, naming it.
    let docs = base("meta: &x\n".into());
    let e = block_on(a.select(&docs)).unwrap_err().to_string();
    assert!(e.contains("authors/RECENT-1h.yaml"), "{e}");
}

#[test]
fn the_indexes_are_served_byte_identical() {
    let key = Key::new("index");
    let a = adapter(&key.keyring(), None);
    let gz = [0x1f, 0x8b, 8, 0, 1, 2];
    let docs = Docs::new(UP)
        .with("modules/02packages.details.txt.gz", gz)
        .with("authors/01mailrc.txt.gz", gz);
    let out = block_on(a.unit(INDEX, &docs, 0, false)).unwrap().unwrap();
    let paths: Vec<&str> = out.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "modules/02packages.details.txt.gz",
            "authors/01mailrc.txt.gz"
        ]
    );
    let e = block_on(a.unit(INDEX, &Docs::new(UP), 0, false))
        .unwrap_err()
        .to_string();
    assert!(e.contains("02packages"), "{e}");
    let docs = Docs::new(UP).with("modules/02packages.details.txt.gz", b"plain");
    assert!(block_on(a.unit(INDEX, &docs, 0, false)).is_err());
}
