//! The adapter on a manifest written to the v2 format (with renames,
//! profiles, a wildcard target, artifacts and hostile entries), kept under
//! `tests/fixtures/rustup/`, and on scripted upstream answers.

use std::collections::BTreeSet;

use super::manifest::{self, Filter};
use super::*;
use crate::layouts::testing::{self, Docs, block_on};

const BASE: &str = "https://dist.upstream.test/";
const D: &str = "dist/2026-11-30/";

fn example() -> Vec<u8> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rustup/channel-rust-nightly-example.toml"
    );
    std::fs::read(p).unwrap()
}

fn paths(filter: &Filter) -> BTreeSet<String> {
    manifest::parse(&example(), filter)
        .unwrap()
        .files
        .iter()
        .map(|l| l.path.as_str().strip_prefix(D).unwrap().to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn strings(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

#[test]
fn without_filters_every_available_archive_and_artifact_is_listed_with_its_sha256() {
    let l = manifest::parse(&example(), &Filter::default()).unwrap();
    let rustc_zst = l
        .files
        .iter()
        .find(|f| f.path.as_str() == format!("{D}rustc-nightly-x86_64-unknown-linux-gnu.tar.zst"))
        .unwrap();
    assert_eq!(rustc_zst.digest.hex(), "5".repeat(64));
    let got = paths(&Filter::default());
    for want in [
        "rust-nightly-x86_64-unknown-linux-gnu.tar.gz",
        "rust-nightly-x86_64-unknown-linux-gnu.tar.xz",
        "rustc-nightly-x86_64-unknown-linux-gnu.tar.gz",
        "rustc-nightly-x86_64-unknown-linux-gnu.tar.xz",
        "rustc-nightly-aarch64-unknown-linux-gnu.tar.gz",
        "rust-std-nightly-wasm32-unknown-unknown.tar.xz",
        "rust-src-nightly.tar.xz",
        "rust-docs-nightly-x86_64-unknown-linux-gnu.tar.xz",
        "rustc-nightly-src.tar.gz",
        "rust-nightly-x86_64-pc-windows-msvc.msi",
    ] {
        assert!(got.contains(want), "{want} in {got:?}");
    }
    // riscv64's rustc is not available: nothing to list.
    assert!(!got.iter().any(|p| p.contains("riscv64")), "{got:?}");
}

#[test]
fn targets_keep_their_own_and_wildcard_packages() {
    let f = Filter {
        targets: strings(&["x86_64-unknown-linux-gnu"]),
        profiles: None,
    };
    let got = paths(&f);
    assert!(
        got.contains("rust-src-nightly.tar.xz"),
        "target \"*\" is kept"
    );
    assert!(
        got.contains("rustc-nightly-src.tar.gz"),
        "artifact for \"*\""
    );
    assert!(
        !got.iter()
            .any(|p| p.contains("aarch64") || p.contains("wasm32") || p.contains("msvc")),
        "{got:?}"
    );
}

#[test]
fn profiles_keep_their_packages_and_what_renames_map_them_to() {
    let f = Filter {
        targets: strings(&["x86_64-unknown-linux-gnu"]),
        profiles: strings(&["minimal"]),
    };
    assert_eq!(
        paths(&f),
        set(&[
            "rustc-nightly-x86_64-unknown-linux-gnu.tar.gz",
            "rustc-nightly-x86_64-unknown-linux-gnu.tar.xz",
            "rustc-nightly-x86_64-unknown-linux-gnu.tar.zst",
            "rust-std-nightly-x86_64-unknown-linux-gnu.tar.xz",
        ]),
        "minimal: no rust-docs, no combined `rust` installer, no artifacts"
    );
    let f = Filter {
        targets: strings(&["x86_64-unknown-linux-gnu"]),
        profiles: strings(&["default"]),
    };
    let got = paths(&f);
    assert!(got.contains("rust-docs-nightly-x86_64-unknown-linux-gnu.tar.xz"));
    // The profile says `rustfmt`; [renames] maps it to the package rustfmt-preview.
    assert!(
        got.contains("rustfmt-nightly-x86_64-unknown-linux-gnu.tar.xz"),
        "{got:?}"
    );
    assert!(!got.contains("rust-src-nightly.tar.xz"));
}

#[test]
fn a_profile_the_manifest_lacks_is_reported() {
    let f = Filter {
        targets: None,
        profiles: strings(&["minimal", "tiny"]),
    };
    let l = manifest::parse(&example(), &f).unwrap();
    assert_eq!(l.missing_profiles, vec!["tiny".to_string()]);
}

#[test]
fn hostile_urls_and_hashes_are_left_out_with_reasons_and_the_rest_is_listed() {
    let l = manifest::parse(&example(), &Filter::default()).unwrap();
    for f in &l.files {
        let p = f.path.as_str();
        assert!(
            p.starts_with("dist/") && !p.contains("..") && !p.contains('%'),
            "{p}"
        );
        assert!(
            !p.contains("evil") && !p.contains("short-hash") && !p.contains("xxxx"),
            "{p}"
        );
    }
    let why = l.rejected.join("\n");
    for reason in [
        "is not under /dist/",
        "has '%' in its path",
        "is not http(s)",
        "has '?' in its path",
        "is not a sha256",
        "xz_url without its hash",
        "longer than 255 bytes",
    ] {
        assert!(why.contains(reason), "{reason}: {why}");
    }
    assert_eq!(l.rejected.len(), 8, "{why}");
    assert_eq!(l.files.len(), 13, "the good entries stay");
}

#[test]
fn url_paths_must_be_plain_and_under_dist() {
    assert_eq!(
        manifest::path_of(
            "https://any.upstream.test/dist/2026-04-16/cargo-1.95.0-x86_64-unknown-linux-gnu.tar.xz"
        )
        .unwrap()
        .as_str(),
        "dist/2026-04-16/cargo-1.95.0-x86_64-unknown-linux-gnu.tar.xz"
    );
    for bad in [
        "https://h/dist/a/../../x",
        "https://h/dist/./x",
        "https:///dist/x",
        "https://h",
        "https://h/dist//x",
        "https://h/dist/a\u{7}b",
        "https://h/dist/x#y",
        "ftp://h/dist/x",
        "https://h/distx",
        "https://h/dist/channel-rust-stable.toml",
        "https://h/dist/2026-04-16/channel-rust-stable.toml.sha256",
    ] {
        assert!(manifest::path_of(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn bad_documents_fail_with_what_is_wrong() {
    let f = Filter::default();
    let e = manifest::parse(b"manifest-version = \"2\"\n[pkg.x\n", &f).unwrap_err();
    assert!(e.contains("not a channel manifest"), "{e}");
    let e = manifest::parse(b"manifest-version = \"1\"\n", &f).unwrap_err();
    assert!(e.contains("only \"2\""), "{e}");
    let e = manifest::parse(b"date = \"x\"\n", &f).unwrap_err();
    assert!(e.contains("manifest-version"), "{e}");
    let e = manifest::parse(b"\xff\xfe", &f).unwrap_err();
    assert!(e.contains("UTF-8"), "{e}");
    let e = manifest::parse(
        b"manifest-version = \"2\"\n[pkg.x.target.y]\navailable = true\nurl = 7\n",
        &f,
    )
    .unwrap_err();
    assert!(e.contains("not a channel manifest"), "{e}");
}

fn adapter(keys: &str) -> Result<Rustup, String> {
    testing::configure(&LAYOUT, BASE, keys, Rustup::from_keys)
}

#[test]
fn keys_are_checked_with_what_to_write() {
    let a = adapter("channels = [\"stable\", \"nightly-2026-11-30\"]\ntargets = [\"x86_64-unknown-linux-gnu\"]\nprofiles = [\"minimal\"]").unwrap();
    assert_eq!(a.opts.channels.len(), 2);
    assert_eq!(a.opts.filter.profiles, strings(&["minimal"]));
    for (keys, want) in [
        ("", "missing key `channels`"),
        ("channels = []", "lists no channel"),
        ("channels = [\"stable\", \"stable\"]", "listed twice"),
        ("channels = [\"latest\"]", "is not a channel"),
        ("channels = 3", "channels"),
        (
            "channels = \"stable\"\ntargets = [\"X86/../\"]",
            "not a target triple",
        ),
        (
            "channels = \"stable\"\nprofiles = [\"\"]",
            "not a profile name",
        ),
        (
            "channels = \"stable\"\nkeyring = \"/nonexistent/key.gpg\"",
            "cannot read /nonexistent/key.gpg",
        ),
        (
            "channels = \"stable\"\nkeyring = \"key.gpg\"",
            "absolute path",
        ),
        (
            "channels = \"stable\"\ncomponents = []",
            "unknown key `components`",
        ),
    ] {
        let e = adapter(keys)
            .err()
            .unwrap_or_else(|| panic!("{keys:?} accepted"));
        assert!(e.contains(want), "{keys:?}: {e}");
    }
}

fn sum(body: &[u8]) -> String {
    format!(
        "{}  channel-rust-nightly.toml\n",
        Digest::sha256_of(body).hex()
    )
}

#[test]
fn a_channel_lists_its_manifest_sidecars_and_archives_under_the_upstream_base() {
    let a = adapter("channels = [\"nightly-2026-11-30\"]\nprofiles = [\"minimal\"]").unwrap();
    let m = example();
    let src = Docs::new(BASE)
        .with(&format!("{D}channel-rust-nightly.toml"), &m)
        .with(&format!("{D}channel-rust-nightly.toml.sha256"), sum(&m));
    let out = block_on(a.unit("nightly-2026-11-30", &src, 0, true))
        .unwrap()
        .unwrap();
    let by_path: std::collections::HashMap<&str, &Body> = out
        .entries
        .iter()
        .map(|e| (e.path.as_str(), &e.body))
        .collect();
    assert!(
        matches!(by_path[&*format!("{D}channel-rust-nightly.toml")], Body::Inline(b) if *b == m)
    );
    assert!(by_path.contains_key(&*format!("{D}channel-rust-nightly.toml.sha256")));
    assert!(
        !by_path.contains_key(&*format!("{D}channel-rust-nightly.toml.asc")),
        "none upstream"
    );
    match by_path[&*format!("{D}rust-std-nightly-x86_64-unknown-linux-gnu.tar.xz")] {
        Body::Remote { url, size, digest } => {
            assert_eq!(
                url,
                &format!("{BASE}{D}rust-std-nightly-x86_64-unknown-linux-gnu.tar.xz")
            );
            assert_eq!(*size, None);
            assert_eq!(digest.hex(), "7".repeat(64));
        }
        other => panic!("{other:?}"),
    }
    assert!(!by_path.keys().any(|p| p.contains("rust-docs")));
    assert_eq!(out.rejected, 0, "the hostile package is in no profile");
    assert!(
        block_on(a.unit("stable", &src, 0, true)).unwrap().is_none(),
        "not configured"
    );
}

#[test]
fn a_manifest_that_is_not_what_its_sha256_says_fails_the_channel_naming_both() {
    let a = adapter("channels = [\"nightly-2026-11-30\"]").unwrap();
    let m = example();
    let src = Docs::new(BASE)
        .with(&format!("{D}channel-rust-nightly.toml"), &m)
        .with(
            &format!("{D}channel-rust-nightly.toml.sha256"),
            sum(b"other"),
        );
    let e = block_on(a.unit("nightly-2026-11-30", &src, 0, true))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("digest mismatch") && e.contains("channel-rust-nightly.toml.sha256"),
        "{e}"
    );
    assert!(
        e.starts_with(&format!("{BASE}{D}channel-rust-nightly.toml:")),
        "{e}"
    );
    let src = Docs::new(BASE)
        .with(&format!("{D}channel-rust-nightly.toml"), &m)
        .with(
            &format!("{D}channel-rust-nightly.toml.sha256"),
            "not a digest\n",
        );
    let e = block_on(a.unit("nightly-2026-11-30", &src, 0, true))
        .unwrap_err()
        .to_string();
    assert!(e.contains(".sha256: is not a sha256sum line"), "{e}");
    let src = Docs::new(BASE);
    let e = block_on(a.unit("nightly-2026-11-30", &src, 0, true))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("channel-rust-nightly.toml.sha256: not found upstream"),
        "{e}"
    );
}

#[test]
fn bad_toml_fails_the_channel_naming_its_url() {
    let a = adapter("channels = [\"stable\"]").unwrap();
    let m = b"manifest-version = \"2\"\n[pkg\n".to_vec();
    let src = Docs::new(BASE)
        .with("dist/channel-rust-stable.toml", &m)
        .with("dist/channel-rust-stable.toml.sha256", sum(&m));
    let e = block_on(a.unit("stable", &src, 0, true))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{BASE}dist/channel-rust-stable.toml: not a channel manifest"
        )),
        "{e}"
    );
}

#[test]
fn with_a_keyring_an_unsigned_manifest_fails() {
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rpm/keyring.asc"
    );
    let a = adapter(&format!("channels = [\"stable\"]\nkeyring = \"{key}\"")).unwrap();
    let m = example();
    let src = Docs::new(BASE)
        .with("dist/channel-rust-stable.toml", &m)
        .with("dist/channel-rust-stable.toml.sha256", sum(&m));
    let e = block_on(a.unit("stable", &src, 0, true))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("channel-rust-stable.toml.asc: not served, but a keyring is configured"),
        "{e}"
    );
    let src = src.with(
        "dist/channel-rust-stable.toml.asc",
        "-----BEGIN PGP SIGNATURE-----\nAAAA\n-----END PGP SIGNATURE-----\n",
    );
    let e = block_on(a.unit("stable", &src, 0, true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("channel-rust-stable.toml.asc:"), "{e}");
}
