//! Real-mount tests of a CRAN mirror over a fixture repository whose
//! packages are made by `R CMD build` and whose PACKAGES files by
//! `tools::write_PACKAGES` at test time (`tests/fixtures/cran/build.py`),
//! served on 127.0.0.1, and of the trust-on-first-use policy CRAN needs:
//! without it no tarball is listed; with it each is pinned to the SHA-256
//! of its first download, and only those bytes are served after.

mod support;

use support::upstream::{Fault, Upstream};
use support::{Fixture, Mount, errno, fixture, mount_over, sha256_hex};

fn fx() -> &'static Fixture {
    fixture("cran")
}

fn mount(name: &str, keys: &str) -> (Upstream, Mount) {
    mount_over(name, &fx().root, "cran", |url| {
        format!(
            "[[mirror]]\nname = \"cran\"\nlayout = \"cran\"\nupstream = \"{url}\"\nsync_interval = \"1h\"\n{keys}\n"
        )
    })
}

fn read(m: &Mount, rel: &str) -> std::io::Result<Vec<u8>> {
    std::fs::read(m.path(&format!("cran/{rel}")))
}

fn listing(m: &Mount, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(m.path(&format!("cran/{dir}")))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn status(m: &Mount) -> serde_json::Value {
    m.status()
        .into_iter()
        .find(|s| s["name"] == "cran")
        .unwrap()
}

fn verify_failures(m: &Mount) -> u64 {
    status(m)["counters"]["verify_failures"].as_u64().unwrap()
}

const INDEXES: [&str; 3] = ["PACKAGES", "PACKAGES.gz", "PACKAGES.rds"];

#[test]
fn without_the_policy_only_the_packages_files_are_served_and_a_sync_says_why_once() {
    let (_up, m) = mount("cran-strict", "");
    assert_eq!(listing(&m, "src/contrib"), INDEXES);
    for f in INDEXES {
        let rel = format!("src/contrib/{f}");
        assert_eq!(
            read(&m, &rel).unwrap(),
            fx().bytes(&rel),
            "{f} byte-identical"
        );
    }
    assert_eq!(
        errno(&m.path("cran/src/contrib/fixdep_1.1.tar.gz")),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno(&m.path("cran/src/contrib/Archive/fixdep/fixdep_1.0.tar.gz")),
        Some(libc::ENOENT)
    );
    let s = status(&m);
    assert_eq!(
        (s["weak_digest"].as_u64(), s["tofu_pinned"].as_u64()),
        (Some(0), Some(0))
    );
    let log = m.stop();
    assert_eq!(
        log.matches("CRAN gives no digest regfs trusts").count(),
        1,
        "one WARN for the sync, not one per package:\n{log}"
    );
}

#[test]
fn first_use_pins_and_later_only_the_pinned_bytes_are_served() {
    let (up, m) = mount("cran-tofu", "trust_on_first_use = true");
    let mut want: Vec<String> = INDEXES.iter().map(|s| s.to_string()).collect();
    want.extend(
        [
            "fixapp_0.2.tar.gz",
            "fixbad_1.0.tar.gz",
            "fixdep_1.1.tar.gz",
            "fixextra_1.0.tar.gz",
        ]
        .map(String::from),
    );
    want.sort();
    assert_eq!(listing(&m, "src/contrib"), want);
    let s = status(&m);
    assert_eq!(
        (s["weak_digest"].as_u64(), s["tofu_pinned"].as_u64()),
        (Some(4), Some(0))
    );

    // First read: checked against PACKAGES' MD5sum, pinned, served.
    let cur = "src/contrib/fixdep_1.1.tar.gz";
    let old = "src/contrib/Archive/fixdep/fixdep_1.0.tar.gz";
    assert_eq!(read(&m, cur).unwrap(), fx().bytes(cur));
    assert_eq!(status(&m)["tofu_pinned"], 1);
    let pins = std::fs::read_to_string(m.dir.join("state/mirrors/cran/pins")).unwrap();
    assert!(
        pins.contains(&format!("{} ", sha256_hex(&fx().bytes(cur)))),
        "{pins}"
    );
    assert!(pins.contains(cur), "{pins}");

    // A tarball whose bytes are not the MD5sum PACKAGES gives: EIO, not pinned.
    let before = verify_failures(&m);
    assert_eq!(
        errno(&m.path("cran/src/contrib/fixbad_1.0.tar.gz")),
        Some(libc::EIO)
    );
    // (Counted per attempt: the stat's download, then the read's.)
    assert!(verify_failures(&m) > before);
    assert_eq!(status(&m)["tofu_pinned"], 1);

    // An archived version (no digest at all): materialized on lookup, pinned.
    assert_eq!(
        listing(&m, "src/contrib/Archive/fixdep"),
        ["fixdep_1.0.tar.gz", "index.html"]
    );
    // Beside it a listing of its own, which the export serves as the
    // directory's index: what a mirror of this mirror reads Archive/<pkg>/ from.
    let index =
        String::from_utf8(read(&m, "src/contrib/Archive/fixdep/index.html").unwrap()).unwrap();
    assert_eq!(
        regfs::layouts::cran::parse_listing("fixdep", &index),
        ["fixdep_1.0.tar.gz"]
    );
    assert_eq!(read(&m, old).unwrap(), fx().bytes(old));
    assert_eq!(status(&m)["tofu_pinned"], 2);
    let dir = m.dir.clone();
    let (config, log) = (m.config.clone(), m.stop());
    assert!(log.contains("trusted on first use: pinned"), "{log}");

    // The cache wiped, upstream changed both files: after a restart the
    // pins still hold, and the new bytes are verification failures.
    std::fs::remove_dir_all(dir.join("cache")).unwrap();
    up.fault(cur, Fault::Body(b"a different tarball".to_vec()));
    up.fault(old, Fault::Corrupt);
    let m = Mount::start(&dir, &config, "cran");
    assert_eq!(status(&m)["tofu_pinned"], 2, "pins survive a restart");
    let before = verify_failures(&m);
    assert_eq!(errno(&m.path(&format!("cran/{cur}"))), Some(libc::EIO));
    let after_one = verify_failures(&m);
    assert!(after_one > before);
    listing(&m, "src/contrib/Archive/fixdep");
    assert_eq!(errno(&m.path(&format!("cran/{old}"))), Some(libc::EIO));
    assert!(verify_failures(&m) > after_one);
    assert!(
        m.log().contains(&format!("{}{cur}", up.url())),
        "the WARN names the URL"
    );

    // Upstream back to the pinned bytes: served again.
    up.clear(cur);
    assert_eq!(read(&m, cur).unwrap(), fx().bytes(cur));
    // `regfs verify` owns the pinned object and finds it sound.
    let out = support::run(&config, &["verify"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("not owned"), "{text}");
}

#[test]
fn a_mirror_that_drops_the_policy_serves_no_weak_file_it_listed() {
    let (_up, m) = mount("cran-drop", "trust_on_first_use = true");
    let cur = "src/contrib/fixdep_1.1.tar.gz";
    assert_eq!(read(&m, cur).unwrap(), fx().bytes(cur));
    let (dir, config) = (m.dir.clone(), m.config.clone());
    m.stop();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("trust_on_first_use = true", "")).unwrap();
    let m = Mount::start(&dir, &config, "cran");
    // The generation on disk still lists it until the next sync: refused.
    assert_eq!(
        errno(&m.path(&format!("cran/{cur}"))),
        Some(libc::EIO),
        "a weak-digest file is not served without the policy"
    );
    let out = support::run(&config, &["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(errno(&m.path(&format!("cran/{cur}"))), Some(libc::ENOENT));
}
