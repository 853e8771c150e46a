//! Real-mount tests of a rustup mirror over a fixture dist server built at
//! test time (tests/fixtures/rustup/build.py: rust-installer tarballs,
//! channel manifests with .sha256 and a throwaway key's .asc), served on
//! 127.0.0.1.

mod support;

use std::path::Path;

use support::upstream::{Fault, Upstream};
use support::{Fixture, Mount, config, errno, fixture, run, scratch, sha256_hex};

const HOST: &str = "x86_64-unknown-linux-gnu";

fn rustup() -> &'static Fixture {
    fixture("rustup")
}

fn mirror(upstream: &str, keys: &str) -> String {
    format!(
        "[[mirror]]\nname = \"rustup\"\nlayout = \"rustup\"\nupstream = \"{upstream}\"\nsync_interval = \"1h\"\n{keys}\n"
    )
}

fn key(name: &str) -> String {
    rustup()
        .root
        .join(rustup().manifest[name].as_str().unwrap())
        .display()
        .to_string()
}

const CHANNELS: &str = "channels = [\"stable\", \"1.95.0\", \"beta\", \"nightly-2026-11-30\"]";

fn mount(name: &str, keys: &str) -> (Upstream, Mount) {
    let up = Upstream::serve(&rustup().root);
    let dir = scratch(name);
    let cfg = config(&dir, "", &mirror(&up.url(), keys));
    let m = Mount::start(&dir, &cfg, "rustup");
    m.wait_generation(1);
    (up, m)
}

fn sync(cfg: &Path) -> String {
    let out = run(cfg, &["sync"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    said
}

/// (path, size, sha256) of every archive of a fixture release.
fn archives(release: &str) -> Vec<(String, u64, String)> {
    rustup().manifest["channels"][release]["archives"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(p, a)| {
            (
                p.clone(),
                a["size"].as_u64().unwrap(),
                a["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Would the minimal profile for the host keep this archive?
fn minimal_host(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap();
    name.contains(HOST)
        && ["rustc-", "cargo-", "rust-std-"]
            .iter()
            .any(|p| name.starts_with(p))
}

#[test]
fn manifests_are_byte_identical_and_archives_listed_by_target_and_profile_verified() {
    let fx = rustup();
    let keys = format!(
        "{CHANNELS}\ntargets = [\"{HOST}\"]\nprofiles = [\"minimal\"]\nkeyring = \"{}\"",
        key("keyring")
    );
    let (up, m) = mount("rustup-read", &keys);
    for manifest in [
        "dist/channel-rust-stable.toml",
        "dist/channel-rust-1.95.0.toml",
        "dist/channel-rust-beta.toml",
        "dist/2026-11-30/channel-rust-nightly.toml",
    ] {
        for ext in ["", ".sha256", ".asc"] {
            let rel = format!("{manifest}{ext}");
            assert_eq!(
                std::fs::read(m.path(&format!("rustup/{rel}"))).unwrap(),
                std::fs::read(fx.root.join(&rel)).unwrap(),
                "{rel} is byte-identical"
            );
        }
    }
    assert!(
        !m.path("rustup/dist/channel-rust-nightly.toml").exists(),
        "an unconfigured channel is not served"
    );
    let tampered: Vec<&str> = fx.manifest["tampered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let mut read = 0;
    for release in ["stable", "beta", "nightly"] {
        for (path, size, sha) in archives(release) {
            let p = m.path(&format!("rustup/{path}"));
            if !minimal_host(&path) {
                assert!(!p.exists(), "{path}: not in the minimal profile for {HOST}");
                continue;
            }
            if tampered.contains(&path.as_str()) {
                assert_eq!(errno(&p), Some(libc::EIO), "{path}: tampered");
                continue;
            }
            let before = up.hits(&path);
            assert_eq!(std::fs::metadata(&p).unwrap().len(), size, "{path}");
            let data = std::fs::read(&p).unwrap();
            assert_eq!(sha256_hex(&data), sha, "{path}");
            assert_eq!(
                up.hits(&path),
                before + 1,
                "{path}: fetched once, on its stat"
            );
            read += 1;
        }
    }
    // rustc, cargo and rust-std, gz and xz, of stable and nightly; beta's rustc and std.
    assert_eq!(read, 16);
    let log = m.log();
    assert!(
        log.contains("digest mismatch") && log.contains(tampered[0]),
        "the tampered archive is logged"
    );
}

#[test]
fn without_filters_every_target_package_and_the_combined_installer_are_listed() {
    let (_up, m) = mount("rustup-all", "channels = [\"stable\"]");
    for (path, size, _) in archives("stable") {
        let p = m.path(&format!("rustup/{path}"));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), size, "{path}");
    }
    // Served as upstream has it, though unchecked without a keyring.
    let asc = "dist/channel-rust-stable.toml.asc";
    assert_eq!(
        std::fs::read(m.path(&format!("rustup/{asc}"))).unwrap(),
        std::fs::read(rustup().root.join(asc)).unwrap()
    );
}

#[test]
fn an_unchanged_channel_costs_one_request_and_a_new_release_swaps_in_with_its_sidecars() {
    let fx = rustup();
    let keys = format!(
        "channels = [\"stable\", \"nightly-2026-11-30\"]\nkeyring = \"{}\"",
        key("keyring")
    );
    let (up, m) = mount("rustup-sync", &keys);
    let before = up.total();
    let out = sync(&m.config);
    assert!(out.contains("unchanged, generation 1"), "{out}");
    let reqs: Vec<String> = up.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    let mut reqs = reqs;
    reqs.sort();
    assert_eq!(
        reqs,
        [
            "/dist/2026-11-30/channel-rust-nightly.toml.sha256",
            "/dist/channel-rust-stable.toml.sha256"
        ],
        "only each channel's .sha256"
    );
    up.remap(
        "dist/channel-rust-stable.toml",
        "v2/dist/channel-rust-stable.toml",
    );
    sync(&m.config);
    m.wait_generation(2);
    for ext in ["", ".sha256", ".asc"] {
        let rel = format!("dist/channel-rust-stable.toml{ext}");
        m.wait_for(
            || {
                std::fs::read(m.path(&format!("rustup/{rel}"))).ok()
                    == std::fs::read(fx.root.join(format!("v2/{rel}"))).ok()
            },
            &format!("{rel} to be the new release's"),
        );
    }
    let new = format!("rustup/dist/2026-05-28/rustc-1.95.1-{HOST}.tar.xz");
    assert!(m.path(&new).exists(), "{new}");
    assert!(
        !m.path(&format!(
            "rustup/dist/2026-04-16/rustc-1.95.0-{HOST}.tar.xz"
        ))
        .exists(),
        "the old release's archives go with its manifest"
    );
}

#[test]
fn a_forged_manifest_or_a_wrong_key_keeps_the_channel_as_it_was() {
    let fx = rustup();
    let keys = format!(
        "channels = [\"stable\", \"nightly-2026-11-30\"]\nkeyring = \"{}\"",
        key("keyring")
    );
    let (up, m) = mount("rustup-forged", &keys);
    let served = std::fs::read(m.path("rustup/dist/channel-rust-stable.toml")).unwrap();
    // A manifest pointing rustc elsewhere, with a .sha256 that matches it
    // but the old signature.
    let text = String::from_utf8(served.clone()).unwrap();
    let forged = text.replacen("rustc-1.95.0", "rustc-1.95.0-evil", 1);
    up.fault(
        "dist/channel-rust-stable.toml",
        Fault::Body(forged.clone().into_bytes()),
    );
    up.fault(
        "dist/channel-rust-stable.toml.sha256",
        Fault::Body(
            format!(
                "{}  channel-rust-stable.toml\n",
                sha256_hex(forged.as_bytes())
            )
            .into_bytes(),
        ),
    );
    let out = sync(&m.config);
    assert!(out.contains("kept its previous contents"), "{out}");
    assert!(
        out.contains("channel-rust-stable.toml.asc"),
        "names the signature: {out}"
    );
    assert_eq!(
        std::fs::read(m.path("rustup/dist/channel-rust-stable.toml")).unwrap(),
        served
    );
    // A manifest whose .sha256 disagrees (upstream mid-update) is refused too.
    up.clear("dist/channel-rust-stable.toml.sha256");
    let out = sync(&m.config);
    assert!(out.contains("digest mismatch"), "{out}");
    assert_eq!(
        std::fs::read(m.path("rustup/dist/channel-rust-stable.toml")).unwrap(),
        served
    );
    drop(m);

    // Signed by a key that is not the configured one: nothing is served.
    let keys = format!(
        "channels = [\"stable\"]\nkeyring = \"{}\"",
        key("wrong_keyring")
    );
    let up = Upstream::serve(&fx.root);
    let dir = scratch("rustup-wrong-key");
    let cfg = config(&dir, "", &mirror(&up.url(), &keys));
    let out = run(&cfg, &["sync"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("not in the keyring"), "{said}");
    assert!(said.contains("dist/channel-rust-stable.toml.asc"), "{said}");
}
