//! Real-mount tests of a Debian mirror over a fixture archive built at test
//! time with dpkg-deb, dpkg-source and apt-ftparchive, signed with a
//! throwaway gpg key, served on 127.0.0.1.

mod support;

use std::io::Read;
use std::process::Output;

use support::upstream::{Fault, Upstream};
use support::{Mount, config, debian, debian_mirror, run, scratch, sha256_hex};

fn options(suites: &str, keyring: &std::path::Path) -> String {
    format!(
        "suites = {suites}\ncomponents = [\"main\", \"contrib\"]\narchitectures = [\"amd64\", \"all\"]\nsources = true\nkeyring = \"{}\"\n",
        keyring.display()
    )
}

fn mount(name: &str) -> (Upstream, Mount) {
    let fx = debian();
    let up = Upstream::serve(&fx.root);
    let dir = scratch(name);
    let cfg = config(
        &dir,
        "",
        &debian_mirror(
            "debian",
            &up.url(),
            &options(r#"["bookworm", "bookworm-updates"]"#, &fx.keyring()),
        ),
    );
    let m = Mount::start(&dir, &cfg, "debian");
    m.wait_generation(1);
    (up, m)
}

fn sync(cfg: &std::path::Path) -> Output {
    run(cfg, &["sync"])
}

#[test]
fn dists_and_pool_look_like_a_full_mirror_and_verify() {
    let fx = debian();
    let (up, m) = mount("deb-read");
    let src = fx.root.join("debian/dists/bookworm");
    for name in ["InRelease", "Release", "Release.gpg"] {
        assert_eq!(
            std::fs::read(m.path(&format!("debian/dists/bookworm/{name}"))).unwrap(),
            std::fs::read(src.join(name)).unwrap(),
            "{name} is byte-identical"
        );
    }
    for suite in ["bookworm", "bookworm-updates"] {
        for idx in fx.manifest["indexes"][suite].as_array().unwrap() {
            let rel = idx["path"].as_str().unwrap();
            let p = m.path(&format!("debian/dists/{suite}/{rel}"));
            let size = idx["size"].as_u64().unwrap();
            assert_eq!(
                std::fs::metadata(&p)
                    .unwrap_or_else(|e| panic!("{suite}/{rel}: {e}"))
                    .len(),
                size,
                "{suite}/{rel}"
            );
            let data = std::fs::read(&p).unwrap();
            let sha = idx["sha256"].as_str().unwrap();
            assert_eq!(
                sha256_hex(&data),
                sha,
                "{suite}/{rel} (served upstream: {})",
                idx["served"]
            );
            let dir = rel
                .rsplit_once('/')
                .map_or(String::new(), |(d, _)| format!("{d}/"));
            let alias = m.path(&format!("debian/dists/{suite}/{dir}by-hash/SHA256/{sha}"));
            assert_eq!(
                std::fs::read(&alias).unwrap(),
                data,
                "by-hash of {suite}/{rel}"
            );
        }
    }
    let sha512_dir = m.path("debian/dists/bookworm/main/binary-amd64/by-hash/SHA512");
    assert!(
        std::fs::read_dir(&sha512_dir).unwrap().count() >= 3,
        "SHA512 aliases, as apt asks for the strongest hash"
    );
    for suite in ["bookworm", "bookworm-updates"] {
        for (file, size, sha) in fx.debs(suite) {
            let p = m.path(&format!("debian/{file}"));
            assert_eq!(std::fs::metadata(&p).unwrap().len(), size);
            assert_eq!(sha256_hex(&std::fs::read(&p).unwrap()), sha, "{file}");
        }
    }
    for s in fx.manifest["sources"].as_array().unwrap() {
        let p = m.path(&format!("debian/{}", s["filename"].as_str().unwrap()));
        assert_eq!(
            sha256_hex(&std::fs::read(&p).unwrap()),
            s["sha256"].as_str().unwrap()
        );
    }
    let mut pool: Vec<String> = std::fs::read_dir(m.path("debian/pool/main/libr"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pool.sort();
    assert_eq!(
        pool,
        ["libregfs"],
        "lib* sources live under a lib<letter> prefix"
    );
    assert_eq!(
        up.hits("debian/dists/bookworm/main/Contents-amd64.gz"),
        1,
        "lazy indexes are fetched when read"
    );
}

#[test]
fn bad_signatures_wrong_keys_and_stale_releases_are_refused() {
    let fx = debian();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("deb-trust");
    // A Release altered after signing.
    let good = options(r#"["bookworm"]"#, &fx.keyring());
    let cfg = config(&dir, "", &debian_mirror("debian", &up.url(), &good));
    let m = Mount::start(&dir, &cfg, "debian");
    m.wait_generation(1);
    let inrelease =
        std::fs::read_to_string(fx.root.join("debian/dists/bookworm/InRelease")).unwrap();
    let forged = inrelease.replacen("Suite: bookworm", "Suite: bookworm-evil", 1);
    assert_ne!(forged, inrelease);
    up.fault(
        "debian/dists/bookworm/InRelease",
        Fault::Body(forged.into_bytes()),
    );
    let out = sync(&cfg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad signature") && err.contains("dists/bookworm/InRelease"),
        "{err}"
    );
    assert_eq!(
        m.status()[0]["generation"].as_u64(),
        Some(1),
        "the served generation is kept"
    );
    assert_eq!(
        std::fs::read_to_string(m.path("debian/dists/bookworm/InRelease")).unwrap(),
        inrelease
    );
    drop(m);

    // Signed, but not by a key in the configured keyring.
    let wrong = fx.root.join(fx.manifest["wrong_keyring"].as_str().unwrap());
    let dir = scratch("deb-wrongkey");
    let cfg = config(
        &dir,
        "",
        &debian_mirror("debian", &up.url(), &options(r#"["bookworm"]"#, &wrong)),
    );
    up.clear("debian/dists/bookworm/InRelease");
    let out = sync(&cfg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not in the keyring"), "{err}");

    // Properly signed but past Valid-Until.
    let dir = scratch("deb-stale");
    let cfg = config(
        &dir,
        "",
        &debian_mirror("debian", &up.url(), &options(r#"["stale"]"#, &fx.keyring())),
    );
    let out = sync(&cfg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Valid-Until") && err.contains("stale"),
        "{err}"
    );
}

#[test]
fn an_unchanged_inrelease_costs_one_request_and_no_rebuild() {
    let (up, m) = mount("deb-unchanged");
    let before = up.total();
    let out = sync(&m.config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unchanged, generation 1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let reqs: Vec<String> = up.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(reqs.len(), 2, "one InRelease per suite: {reqs:?}");
    assert!(reqs.iter().all(|p| p.ends_with("/InRelease")));
}

#[test]
fn a_suite_update_swaps_atomically_while_a_reader_holds_the_old_packages() {
    let fx = debian();
    let (up, m) = mount("deb-update");
    let packages = m.path("debian/dists/bookworm/main/binary-amd64/Packages");
    let old_listed = fx.manifest["indexes"]["bookworm"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "main/binary-amd64/Packages")
        .unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let old_gz = fx.manifest["indexes"]["bookworm"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "main/binary-amd64/Packages.gz")
        .unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let mut reader = std::fs::File::open(&packages).unwrap();
    let mut head = vec![0u8; 16];
    reader.read_exact(&mut head).unwrap();

    let v2 = fx.manifest["v2"]["root"].as_str().unwrap();
    up.remap("debian/dists/bookworm/", &format!("{v2}/dists/bookworm/"));
    let out = sync(&m.config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("generation 2"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // New readers see the new suite, whole.
    let new = std::fs::read_to_string(&packages).unwrap();
    assert!(
        new.contains("Version: 1.1-1") && !new.contains("Package: hello-regfs\nVersion: 1.0-1"),
        "{new}"
    );
    let new_release = std::fs::read_to_string(m.path("debian/dists/bookworm/InRelease")).unwrap();
    assert_eq!(
        new_release,
        std::fs::read_to_string(fx.root.join(v2).join("dists/bookworm/InRelease")).unwrap()
    );
    // The reader that opened the old Packages reads it to the end, unchanged.
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    head.extend(rest);
    assert_eq!(sha256_hex(&head), old_listed);
    // An apt client still holding the old Release finds the old index by hash.
    let alias = m.path(&format!(
        "debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/{old_gz}"
    ));
    assert_eq!(sha256_hex(&std::fs::read(&alias).unwrap()), old_gz);
}

#[test]
fn a_cooldown_keeps_serving_the_old_signed_release_until_the_new_one_is_old_enough() {
    let fx = debian();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("deb-cooldown");
    let with = |cooldown: &str| {
        let opts = format!(
            "{}cooldown = \"{cooldown}\"\n",
            options(r#"["bookworm"]"#, &fx.keyring())
        );
        config(&dir, "", &debian_mirror("debian", &up.url(), &opts))
    };
    let cfg = with("1h");
    let m = Mount::start(&dir, &cfg, "debian");
    m.wait_generation(1);
    let inrelease = m.path("debian/dists/bookworm/InRelease");
    let old = std::fs::read(fx.root.join("debian/dists/bookworm/InRelease")).unwrap();
    assert_eq!(
        std::fs::read(&inrelease).unwrap(),
        old,
        "an empty mirror adopts at once"
    );

    let v2 = fx.manifest["v2"]["root"].as_str().unwrap();
    let new = std::fs::read(fx.root.join(v2).join("dists/bookworm/InRelease")).unwrap();
    up.remap("debian/dists/bookworm/", &format!("{v2}/dists/bookworm/"));
    let held = |m: &Mount| {
        let out = sync(&m.config);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = &m.status()[0];
        assert_eq!(s["generation"].as_u64(), Some(1), "{s}");
        assert_eq!(
            std::fs::read(&inrelease).unwrap(),
            old,
            "the old Release is served"
        );
        let packages =
            std::fs::read_to_string(m.path("debian/dists/bookworm/main/binary-amd64/Packages"))
                .unwrap();
        assert!(!packages.contains("Version: 1.1-1"), "{packages}");
        let message = s["sync"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("held by the cooldown"), "{s}");
        let (first_seen, adopt_at) = (
            s["held"]["first_seen"].as_u64().unwrap(),
            s["held"]["adopt_at"].as_u64().unwrap(),
        );
        assert!(adopt_at >= first_seen + 3600, "status shows the hold: {s}");
        message
    };
    let first = held(&m);
    let again = held(&m);
    assert_eq!(first, again, "later syncs keep the clock where it started");
    // The hold and its clock survive a restart.
    drop(m);
    let m = Mount::start(&dir, &cfg, "debian");
    m.wait_generation(1);
    assert_eq!(held(&m), first);

    // Once the new Release has been seen for the cooldown, a sync adopts it.
    drop(m);
    let cfg = with("1s");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let m = Mount::start(&dir, &cfg, "debian");
    m.wait_generation(1);
    let out = sync(&m.config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.wait_generation(2);
    assert_eq!(std::fs::read(&inrelease).unwrap(), new);
    assert!(m.status()[0]["held"].is_null(), "nothing held once adopted");
    let packages =
        std::fs::read_to_string(m.path("debian/dists/bookworm/main/binary-amd64/Packages"))
            .unwrap();
    assert!(packages.contains("Version: 1.1-1"), "{packages}");
}
