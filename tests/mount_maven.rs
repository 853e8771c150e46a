//! Real-mount tests of a Maven mirror over a fixture repository whose jars
//! are built at test time by javac and jar, served on 127.0.0.1.

mod support;

use std::path::Path;

use support::upstream::Upstream;
use support::{Mount, errno, hex_of, maven, maven_mirror, mount_over, run, scratch};

const G: &str = "maven/org/regfs/demo/greeter";

fn mount_on(name: &str, root: &Path, extra: &str) -> (Upstream, Mount) {
    mount_over(name, root, "maven", |up| maven_mirror("maven", up, extra))
}

#[test]
fn paths_resolve_on_lookup_and_files_match_upstream() {
    let fx = maven();
    let (up, m) = mount_on("mvn-read", &fx.root, "");
    // Group and artifact directories exist before anything under them is known.
    assert!(m.path("maven/org/regfs").is_dir());
    for v in ["1.0", "1.1"] {
        for f in [
            format!("greeter-{v}.jar"),
            format!("greeter-{v}.pom"),
            format!("greeter-{v}-sources.jar"),
        ] {
            let rel = format!("org/regfs/demo/greeter/{v}/{f}");
            let want = &fx.manifest["files"][&rel];
            let p = m.path(&format!("maven/{rel}"));
            assert_eq!(
                std::fs::metadata(&p)
                    .unwrap_or_else(|e| panic!("{rel}: {e}"))
                    .len(),
                want["size"].as_u64().unwrap(),
                "stat tells the truth: {rel}"
            );
            let data = std::fs::read(&p).unwrap();
            assert_eq!(
                hex_of(regfs::digest::Algo::Sha1, &data),
                want["sha1"].as_str().unwrap(),
                "{rel}"
            );
            for ext in ["sha1", "md5", "sha256", "sha512"] {
                let side = format!("{rel}.{ext}");
                let served = std::fs::read(m.path(&format!("maven/{side}")));
                match fx.manifest["files"].get(&side) {
                    Some(_) => assert_eq!(served.unwrap(), fx.bytes(&side), "{side}"),
                    None => assert_eq!(
                        served.unwrap_err().raw_os_error(),
                        Some(libc::ENOENT),
                        "{side} is not upstream"
                    ),
                }
            }
        }
    }
    for rel in [
        "org/regfs/demo/greeter/maven-metadata.xml",
        "org/regfs/demo/greeter/maven-metadata.xml.sha1",
        "org/regfs/demo/greeter/maven-metadata.xml.md5",
        "org/regfs/plugins/maven-metadata.xml",
        "org/regfs/demo/greeter/2.0-SNAPSHOT/maven-metadata.xml",
        "org/regfs/demo/greeter/2.0-SNAPSHOT/greeter-2.0-20260101.120000-1.jar",
    ] {
        assert_eq!(
            std::fs::read(m.path(&format!("maven/{rel}"))).unwrap(),
            fx.bytes(rel),
            "{rel} is byte-identical"
        );
    }
    // Served from the cache and the catalog from now on.
    let before = up.total();
    let jar = m.path(&format!("{G}/1.1/greeter-1.1.jar"));
    std::fs::read(&jar).unwrap();
    assert_eq!(up.total(), before, "a second read asks upstream nothing");
    // A path upstream does not have: ENOENT, asked once, then remembered.
    let missing = m.path(&format!("{G}/9.9/greeter-9.9.jar"));
    assert_eq!(errno(&missing), Some(libc::ENOENT));
    let asked = up.total();
    assert!(asked > before, "the first lookup asked upstream");
    assert_eq!(errno(&missing), Some(libc::ENOENT));
    assert_eq!(up.total(), asked, "a known miss asks upstream nothing");
    // Not file-shaped for its directory: never asked at all.
    assert_eq!(
        errno(&m.path(&format!("{G}/1.1/other-1.1.jar"))),
        Some(libc::ENOENT)
    );
    assert_eq!(up.total(), asked);
    let st = &m.status()[0];
    assert!(st["artifacts"].as_u64().unwrap() >= 5, "the jars: {st}");
    assert!(
        st["units"].as_u64().unwrap() >= 10,
        "every file and metadata looked up: {st}"
    );
    m.stop();
}

#[test]
fn unverifiable_or_tampered_files_are_never_served() {
    let fx = maven();
    let (up, m) = mount_on("mvn-bad", &fx.root, "");
    let tampered = m.path("maven/org/regfs/demo/tampered/1.0/tampered-1.0.jar");
    assert_eq!(errno(&tampered), Some(libc::EIO), "jar and .sha1 disagree");
    assert_eq!(
        errno(&m.path("maven/org/regfs/demo/tampered/1.0/tampered-1.0.pom")),
        Some(libc::EIO),
        "pom and .sha1 disagree"
    );
    assert_eq!(
        errno(&m.path("maven/org/regfs/demo/md5only/1.0/md5only-1.0.jar")),
        Some(libc::ENOENT),
        "an MD5 sidecar alone does not make a file trustworthy"
    );
    assert_eq!(
        std::fs::read(m.path("maven/org/regfs/demo/md5only/1.0/md5only-1.0.jar.md5"))
            .err()
            .and_then(|e| e.raw_os_error()),
        Some(libc::ENOENT)
    );
    // Nothing unverified reached the cache: a second read asks upstream
    // again and fails again.
    let url = "/maven2/org/regfs/demo/tampered/1.0/tampered-1.0.jar";
    let asked = up.hits(url);
    assert!(asked >= 1);
    assert_eq!(errno(&tampered), Some(libc::EIO));
    assert!(up.hits(url) > asked, "the bad bytes were not kept");
    let log = m.stop();
    assert!(
        log.contains("tampered-1.0.jar"),
        "the failure is logged with its URL"
    );
}

#[test]
fn the_artifacts_filter_limits_lookups_and_syncs_literal_coordinates() {
    let fx = maven();
    let (up, m) = mount_on(
        "mvn-filter",
        &fx.root,
        "artifacts = [\"org.regfs.demo:greeter\"]",
    );
    assert!(
        up.hits("/maven2/org/regfs/demo/greeter/maven-metadata.xml") >= 1,
        "a literal coordinate's metadata is synced without a lookup"
    );
    let before = up.total();
    assert_eq!(
        errno(&m.path("maven/org/regfs/demo/md5only/1.0/md5only-1.0.jar")),
        Some(libc::ENOENT)
    );
    assert_eq!(
        up.total(),
        before,
        "coordinates outside the filter are not asked for"
    );
    let jar = m.path(&format!("{G}/1.0/greeter-1.0.jar"));
    assert_eq!(
        hex_of(regfs::digest::Algo::Sha1, &std::fs::read(jar).unwrap()),
        fx.manifest["files"]["org/regfs/demo/greeter/1.0/greeter-1.0.jar"]["sha1"]
            .as_str()
            .unwrap()
    );
    m.stop();
}

#[test]
fn snapshot_metadata_refreshes_on_sync_and_survives_upstream_loss() {
    let fx = maven();
    // A private copy of the repository that this test may change.
    let root = scratch("mvn-snap-up");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(fx.root.join("maven2"))
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    let (up, m) = mount_on("mvn-snap", &root, "");
    let rel = "org/regfs/demo/greeter/2.0-SNAPSHOT/maven-metadata.xml";
    let served = |m: &Mount| std::fs::read(m.path(&format!("maven/{rel}"))).unwrap();
    assert_eq!(served(&m), fx.bytes(rel));
    let jar = format!("{G}/1.1/greeter-1.1.jar");
    let jar_bytes = std::fs::read(m.path(&jar)).unwrap();

    // A new snapshot build is published upstream.
    let newer = String::from_utf8(fx.bytes(rel))
        .unwrap()
        .replace("<buildNumber>1<", "<buildNumber>2<");
    let up_path = root.join("maven2").join(rel);
    std::fs::write(&up_path, &newer).unwrap();
    std::fs::write(
        root.join("maven2").join(format!("{rel}.sha1")),
        hex_of(regfs::digest::Algo::Sha1, newer.as_bytes()),
    )
    .unwrap();
    let out = run(&m.config, &["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.wait_for(
        || served(&m) == newer.as_bytes(),
        "the new snapshot metadata",
    );

    // Upstream gone: what was seen keeps being served, a sync fails cleanly.
    up.set_down(true);
    let out = run(&m.config, &["sync"]);
    assert!(!out.status.success());
    assert_eq!(served(&m), newer.as_bytes());
    assert_eq!(std::fs::read(m.path(&jar)).unwrap(), jar_bytes);
    m.stop();
}

#[test]
fn additive_keeps_a_version_upstream_deleted_while_its_files_are_cached() {
    let fx = maven();
    let (up, m) = mount_on("mvn-retain", &fx.root, "retain = \"additive\"");
    let v = "org/regfs/demo/greeter/1.0";
    let files = ["greeter-1.0.jar", "greeter-1.0.pom"];
    let read = |f: &str| {
        std::fs::read(m.path(&format!("maven/{v}/{f}"))).unwrap_or_else(|e| panic!("{f}: {e}"))
    };
    let sha1 = |f: &str| {
        std::fs::read(m.path(&format!("maven/{v}/{f}.sha1")))
            .unwrap_or_else(|e| panic!("{f}.sha1: {e}"))
    };
    let before: Vec<(Vec<u8>, Vec<u8>)> = files.iter().map(|f| (read(f), sha1(f))).collect();
    // Upstream deletes the version: every file and checksum file answers 404.
    for f in files {
        for ext in ["", ".sha512", ".sha256", ".sha1", ".md5"] {
            up.fault(
                &format!("/maven2/{v}/{f}{ext}"),
                support::upstream::Fault::Status(404),
            );
        }
    }
    let out = run(&m.config, &["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits = up.total();
    let listed: Vec<String> = std::fs::read_dir(m.path(&format!("maven/{v}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for f in files {
        for name in [f.to_string(), format!("{f}.sha1")] {
            assert!(listed.contains(&name), "{name} is listed: {listed:?}");
        }
    }
    for (f, (bytes, sum)) in files.iter().zip(&before) {
        assert_eq!(&read(f), bytes, "{f} is served from the cache");
        assert_eq!(&sha1(f), sum, "{f}.sha1 as it was served");
    }
    assert_eq!(up.total(), hits, "upstream is not asked");
    // Two files retained: the jar, and the POM.
    m.expect_retained(2);
    // Evicted: the jar goes at the next generation.
    m.evict_all_and_sync();
    m.wait_for(
        || !m.path(&format!("maven/{v}/greeter-1.0.jar")).exists(),
        "the evicted jar to go",
    );
    // The POM is a document the mirror keeps (never evicted): it stays.
    assert_eq!(read("greeter-1.0.pom"), before[1].0);
    m.expect_retained(1);
    m.stop();
}

#[test]
fn a_file_upstream_deleted_leaves_the_listing_and_the_tree_at_the_next_sync() {
    let fx = maven();
    let (up, m) = mount_on("mvn-deleted", &fx.root, "");
    let v = "org/regfs/demo/greeter/1.0";
    let jar = m.path(&format!("maven/{v}/greeter-1.0.jar"));
    std::fs::read(&jar).unwrap();
    for ext in ["", ".sha512", ".sha256", ".sha1", ".md5"] {
        up.fault(
            &format!("/maven2/{v}/greeter-1.0.jar{ext}"),
            support::upstream::Fault::Status(404),
        );
    }
    let out = run(&m.config, &["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Its directory (a placeholder before it materialized) lists nothing of
    // the previous generation, and the path is gone.
    let listed: Vec<String> = std::fs::read_dir(m.path(&format!("maven/{v}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !listed.iter().any(|n| n.starts_with("greeter-1.0.jar")),
        "{listed:?}"
    );
    assert_eq!(errno(&jar), Some(libc::ENOENT));
    m.stop();
}
