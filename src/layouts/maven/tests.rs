use super::*;
use crate::digest::Hasher;
use crate::layouts::testing;

const BASE: &str = "https://maven.upstream.test/maven2/";

fn adapter(filter: Option<&[&str]>) -> Maven {
    let keys = testing::filter("artifacts", filter);
    testing::configure(&LAYOUT, BASE, &keys, Maven::from_keys).unwrap()
}

fn upstream() -> testing::Docs {
    testing::Docs::new(BASE)
}

fn hash(algo: Algo, data: &[u8]) -> Digest {
    let mut h = Hasher::new(algo);
    h.update(data);
    h.finish()
}

fn run(a: &Maven, unit: &str, src: &testing::Docs) -> Result<Option<UnitOutput>, SyncError> {
    testing::block_on(a.unit(unit, src, 0, true))
}

fn paths(out: &UnitOutput) -> Vec<&str> {
    let mut v: Vec<&str> = out.entries.iter().map(|e| e.path.as_str()).collect();
    v.sort();
    v
}

#[test]
fn lookups_name_files_by_maven_rules_and_everything_else_is_a_directory() {
    let a = adapter(None);
    let v = "junit/junit/4.13.2";
    assert_eq!(
        a.lazy_unit(v, "junit-4.13.2.jar").as_deref(),
        Some("junit/junit/4.13.2/junit-4.13.2.jar")
    );
    assert_eq!(
        a.lazy_unit(v, "junit-4.13.2-sources.jar.sha1").as_deref(),
        Some("junit/junit/4.13.2/junit-4.13.2-sources.jar"),
        "a sidecar materializes its file"
    );
    assert_eq!(
        a.lazy_unit("junit/junit", "maven-metadata.xml.sha256")
            .as_deref(),
        Some("junit/junit/maven-metadata.xml")
    );
    let snap = "org/example/app/1.0-SNAPSHOT";
    assert!(a.lazy_unit(snap, "app-1.0-20260101.120000-3.jar").is_some());
    assert!(a.lazy_unit(snap, "maven-metadata.xml").is_some());
    // Not this artifact's files, or not files at all.
    for (dir, name) in [
        (v, "other-4.13.2.jar"),
        (v, "junit-4.13.2"),
        (v, "junit-4.13"),
        ("org/apache/maven/shared", "maven-shared-components"),
        ("g/a/1.0", "a-1.0-1.2"),
        ("", "maven-metadata.xml"),
        ("junit", "junit"),
        (v, ".."),
        ("junit/../junit/4.13.2", "junit-4.13.2.jar"),
        ("junit//4.13.2", "junit-4.13.2.jar"),
        (v, &format!("junit-4.13.2{}.jar", "x".repeat(240))),
    ] {
        assert_eq!(a.lazy_unit(dir, name), None, "{dir} {name}");
    }
    assert!(a.lazy_dir("", "org") && a.lazy_dir("org", "apache"));
    assert!(a.lazy_dir("junit/junit", "4.13.2"));
    assert!(a.lazy_dir("org/apache/maven/shared", "maven-shared-components"));
    for (dir, name) in [
        (v, "junit-4.13.2.jar"),
        ("org", "thing.jar"),
        ("org", "maven-metadata.xml.md5"),
        ("org", ".hidden"),
        ("org", "a\nb"),
    ] {
        assert!(!a.lazy_dir(dir, name), "{dir} {name}");
    }
    let deep = vec!["d"; MAX_DEPTH].join("/");
    assert!(!a.lazy_dir(&deep, "e"), "depth is bounded");
}

#[test]
fn the_artifacts_filter_limits_what_lookups_materialize() {
    let a = adapter(Some(&["org.apache.commons:*", "junit:junit"]));
    let lang = "org/apache/commons/commons-lang3/3.12.0";
    assert!(a.lazy_unit(lang, "commons-lang3-3.12.0.jar").is_some());
    assert!(
        a.lazy_unit("org/apache/commons/commons-lang3", "maven-metadata.xml")
            .is_some()
    );
    assert!(
        a.lazy_unit("org/other/x/1", "x-1.jar").is_none(),
        "org.other:x is not configured"
    );
    assert!(
        a.lazy_unit("org/apache/commons", "maven-metadata.xml")
            .is_some()
    );
    let seeds = testing::block_on(a.select(&upstream())).unwrap();
    assert_eq!(
        seeds,
        Selection::Lazy(vec!["junit/junit/maven-metadata.xml".into()]),
        "literal coordinates are synced, globs only allow"
    );
}

#[test]
fn sidecars_in_every_format_upstreams_write() {
    let d = hash(Algo::Sha1, b"x");
    let hex = d.hex();
    for text in [
        hex.clone(),
        format!("{hex}\n"),
        format!("{}  junit-4.13.2.jar\n", hex.to_uppercase()),
        format!("SHA1 (junit-4.13.2.jar) = {hex}"),
    ] {
        assert_eq!(
            parse_sidecar(Algo::Sha1, text.as_bytes()),
            Some(d.clone()),
            "{text}"
        );
    }
    assert_eq!(parse_sidecar(Algo::Sha1, b"<html>404</html>"), None);
    assert_eq!(
        parse_sidecar(Algo::Sha256, hex.as_bytes()),
        None,
        "wrong length"
    );
    assert_eq!(parse_sidecar(Algo::Sha1, b"\xff\xfe"), None);
}

#[test]
fn a_file_is_listed_with_its_strongest_sidecar_and_served_beside_them() {
    let jar = b"PK jar bytes";
    let unit = "junit/junit/4.13.2/junit-4.13.2.jar";
    let src = upstream()
        .with(
            &format!("{unit}.sha1"),
            hash(Algo::Sha1, jar).hex().as_bytes(),
        )
        .with(&format!("{unit}.md5"), b"0123456789abcdef0123456789abcdef")
        .with(
            &format!("{unit}.sha256"),
            hash(Algo::Sha256, jar).hex().as_bytes(),
        );
    let out = run(&adapter(None), unit, &src).unwrap().unwrap();
    assert_eq!(
        paths(&out),
        [
            unit,
            &format!("{unit}.md5"),
            &format!("{unit}.sha1"),
            &format!("{unit}.sha256")
        ]
    );
    let file = out
        .entries
        .iter()
        .find(|e| e.path.as_str() == unit)
        .unwrap();
    assert_eq!(
        file.body,
        Body::Remote {
            url: format!("{BASE}{unit}"),
            size: None,
            digest: hash(Algo::Sha256, jar)
        }
    );
    let sha1 = out
        .entries
        .iter()
        .find(|e| e.path.as_str().ends_with(".sha1"))
        .unwrap();
    assert_eq!(
        sha1.body,
        Body::Inline(hash(Algo::Sha1, jar).hex().into_bytes()),
        "byte-identical"
    );
}

#[test]
fn a_file_without_a_trusted_sidecar_is_not_served() {
    let unit = "g/a/1/a-1.jar";
    let md5_only = upstream().with(&format!("{unit}.md5"), b"0123456789abcdef0123456789abcdef");
    assert!(run(&adapter(None), unit, &md5_only).unwrap().is_none());
    assert!(run(&adapter(None), unit, &upstream()).unwrap().is_none());
    // A garbled SHA-1 sidecar is skipped and counted, the SHA-256 one used.
    let src = upstream()
        .with(&format!("{unit}.sha1"), b"<html>oops</html>")
        .with(
            &format!("{unit}.sha256"),
            hash(Algo::Sha256, b"j").hex().as_bytes(),
        );
    let out = run(&adapter(None), unit, &src).unwrap().unwrap();
    assert_eq!(out.rejected, 1);
    assert_eq!(paths(&out), [unit, &format!("{unit}.sha256")]);
}

#[test]
fn metadata_is_checked_against_its_sidecar() {
    let unit = "junit/junit/maven-metadata.xml";
    let xml = b"<?xml version=\"1.0\"?>\n<metadata>\n  <groupId>junit</groupId>\n</metadata>\n";
    let good = upstream().with(unit, xml).with(
        &format!("{unit}.sha1"),
        hash(Algo::Sha1, xml).hex().as_bytes(),
    );
    let out = run(&adapter(None), unit, &good).unwrap().unwrap();
    assert_eq!(paths(&out), [unit, &format!("{unit}.sha1")]);

    let stale = upstream().with(unit, xml).with(
        &format!("{unit}.sha1"),
        hash(Algo::Sha1, b"older").hex().as_bytes(),
    );
    let err = run(&adapter(None), unit, &stale).unwrap_err().to_string();
    assert!(
        err.contains("maven-metadata.xml") && err.contains("checksum"),
        "{err}"
    );

    let html = upstream().with(unit, b"<html><body>Welcome</body></html>");
    let err = run(&adapter(None), unit, &html).unwrap_err().to_string();
    assert!(err.contains("not an XML document"), "{err}");
    assert!(run(&adapter(None), unit, &upstream()).unwrap().is_none());
}

#[test]
fn a_pom_comes_with_its_sidecars_and_is_listed_only_as_verified_bytes() {
    let pom = b"<project><artifactId>a</artifactId></project>";
    let unit = "g/a/1/a-1.pom";
    let good = upstream().with(unit, pom).with(
        &format!("{unit}.sha1"),
        hash(Algo::Sha1, pom).hex().as_bytes(),
    );
    let out = run(&adapter(None), unit, &good).unwrap().unwrap();
    let e = out
        .entries
        .iter()
        .find(|e| e.path.as_str() == unit)
        .unwrap();
    assert_eq!(
        e.body,
        Body::Inline(pom.to_vec()),
        "fetched in the same round trip"
    );

    let bad = upstream().with(unit, b"<project>tampered</project>").with(
        &format!("{unit}.sha1"),
        hash(Algo::Sha1, pom).hex().as_bytes(),
    );
    let out = run(&adapter(None), unit, &bad).unwrap().unwrap();
    let e = out
        .entries
        .iter()
        .find(|e| e.path.as_str() == unit)
        .unwrap();
    assert_eq!(
        e.body,
        Body::Remote {
            url: format!("{BASE}{unit}"),
            size: None,
            digest: hash(Algo::Sha1, pom)
        },
        "the bad bytes are not served; a read fetches and verifies (EIO)"
    );
}

#[test]
fn a_file_whose_sidecars_pass_path_max_is_no_unit() {
    // Its directory is within PATH_MAX, its `.md5` is not (4,097 bytes):
    // it names no unit (ENOENT), where materializing it used to panic.
    let deep = [vec!["d".repeat(255); 15], vec!["d".repeat(225)]]
        .concat()
        .join("/");
    let parent = format!("{deep}/org/regfs/1.0");
    let a = adapter(None);
    assert_eq!(parent.len() + 1 + "regfs-1.0.jar".len(), 4093);
    assert_eq!(a.lazy_unit(&parent, "regfs-1.0.jar"), None);
    assert!(!a.lazy_dir(&parent, "regfs-1.0.jar"));
    // A short enough one still is.
    let shallow = format!("{}/org/regfs/1.0", "d".repeat(255));
    assert!(a.lazy_unit(&shallow, "regfs-1.0.jar").is_some());
}

#[test]
fn sidecar_kinds_the_repository_never_has_stop_being_asked_for() {
    let a = adapter(None);
    let jar = b"jar";
    let mut src = upstream();
    for i in 0..80 {
        let unit = format!("g/a/{i}/a-{i}.jar");
        src = src.with(
            &format!("{unit}.sha1"),
            hash(Algo::Sha1, jar).hex().as_bytes(),
        );
    }
    // How many of the paths asked for since the last call end with each of `exts`.
    let asked_for = |src: &testing::Docs, exts: &[&str]| -> Vec<usize> {
        let asked = std::mem::take(&mut *src.asked.lock().unwrap());
        exts.iter()
            .map(|ext| asked.iter().filter(|p| p.ends_with(ext)).count())
            .collect()
    };
    for i in 0..ABSENT_STREAK {
        let unit = format!("g/a/{i}/a-{i}.jar");
        assert!(run(&a, &unit, &src).unwrap().is_some());
    }
    assert_eq!(asked_for(&src, &[".sha512"]), [ABSENT_STREAK as usize]);
    for i in ABSENT_STREAK..70 {
        let unit = format!("g/a/{i}/a-{i}.jar");
        let out = run(&a, &unit, &src).unwrap().unwrap();
        let file = out
            .entries
            .iter()
            .find(|e| e.path.as_str() == unit)
            .unwrap();
        assert!(
            matches!(&file.body, Body::Remote { digest, .. } if digest.algo() == Algo::Sha1),
            "still listed, verified by the kind the repository has"
        );
    }
    assert_eq!(
        asked_for(&src, &[".sha512", ".sha256", ".md5", ".sha1"]),
        [1, 1, 1, 70 - ABSENT_STREAK as usize],
        "absent kinds are only probed, once every {PROBE_EVERY} lookups"
    );

    // A repository that starts publishing a kind: the probe finds it, and
    // it is asked for again from then on.
    let unit = "g/b/1/b-1.jar";
    let src = upstream()
        .with(
            &format!("{unit}.sha1"),
            hash(Algo::Sha1, jar).hex().as_bytes(),
        )
        .with(
            &format!("{unit}.sha512"),
            hash(Algo::Sha512, jar).hex().as_bytes(),
        );
    for _ in 70..2 * PROBE_EVERY {
        run(&a, "g/c/1/c-1.jar", &src).unwrap();
    }
    let out = run(&a, unit, &src).unwrap().unwrap();
    let file = out
        .entries
        .iter()
        .find(|e| e.path.as_str() == unit)
        .unwrap();
    assert!(matches!(&file.body, Body::Remote { digest, .. } if digest.algo() == Algo::Sha512));
    src.asked.lock().unwrap().clear();
    run(&a, unit, &src).unwrap();
    assert_eq!(
        asked_for(&src, &[".sha512"]),
        [1],
        "asked for again after the probe found it"
    );
}

#[test]
fn a_repository_whose_trusted_kinds_all_went_missing_is_asked_for_every_kind() {
    // Only an untrusted kind keeps being found: every kind is asked for on
    // each lookup, so a trusted one is never skipped for want of a streak.
    let a = adapter(None);
    let md5_only = upstream();
    for i in 0..20 {
        let unit = format!("g/a/{i}/a-{i}.jar");
        let src = md5_only_with(&unit);
        assert!(run(&a, &unit, &src).unwrap().is_none());
    }
    let unit = "g/a/99/a-99.jar";
    let src = md5_only.with(
        &format!("{unit}.sha256"),
        hash(Algo::Sha256, b"j").hex().as_bytes(),
    );
    assert!(
        run(&a, unit, &src).unwrap().is_some(),
        "the SHA-256 is still asked for"
    );
}

fn md5_only_with(unit: &str) -> testing::Docs {
    upstream().with(&format!("{unit}.md5"), b"0123456789abcdef0123456789abcdef")
}
