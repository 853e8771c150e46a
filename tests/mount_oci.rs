//! Real-mount tests of an OCI mirror over the static export of a
//! docker-registry filled by umoci and skopeo (tests/fixtures/oci/build.py;
//! each manifest served with the Content-Type and Docker-Content-Digest the
//! registry sent), on 127.0.0.1. The same tree through nginx to skopeo and
//! podman, from the live registry with token auth: scripts/oci-e2e.

mod support;

use std::path::Path;

use serde_json::Value;
use support::upstream::{Fault, Upstream};
use support::{Fixture, Mount, fixture, mount_over, run};

fn oci() -> &'static Fixture {
    fixture("oci")
}

/// A mirror of the fixture with its own keys (`images`, …).
fn mount(test: &str, keys: &str) -> (Upstream, Mount) {
    let fx = oci();
    mount_over(test, &fx.root, "oci", |up| {
        format!(
            "[[mirror]]\nname = \"oci\"\nlayout = \"oci\"\nupstream = \"{up}\"\nsync_interval = \"1h\"\n{keys}\n"
        )
    })
}

/// The fixture's facts about a reference (`fixture/app:1.0`).
fn image(reference: &str) -> &'static Value {
    &oci().manifest["images"][reference]
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

/// The names in a directory of the mount.
fn names(m: &Mount, rel: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(m.path(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn upstream_bytes(rel: &str) -> Vec<u8> {
    std::fs::read(oci().root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn each_reference_is_a_directory_with_one_file_named_by_digest_and_media_type() {
    let fx = oci();
    let (up, m) = mount_over("oci-tree", &fx.root, "oci", |u| fx.mirror("oci", u, ""));
    for (reference, ext) in [
        ("fixture/app:1.0", "oci-manifest"),
        ("fixture/app:multi", "oci-index"),
        ("fixture/base:stable", "oci-manifest"),
        ("fixture/dockerfmt:1.0", "docker-manifest"),
    ] {
        let (repo, tag) = reference.split_once(':').unwrap();
        let d = s(&image(reference)["digest"]);
        let file = format!("{d}.{ext}");
        for r in [tag, d] {
            let dir = format!("oci/v2/{repo}/manifests/{r}");
            assert_eq!(names(&m, &dir), vec![file.clone()], "{dir}");
            assert_eq!(
                std::fs::read(m.path(&format!("{dir}/{file}"))).unwrap(),
                upstream_bytes(&format!("v2/{repo}/manifests/{r}")),
                "{reference} byte-identical"
            );
        }
    }
    // The index's amd64 child is mirrored, its arm64 child is not
    // (platforms = ["linux/amd64"]), nor the arm64 config.
    let children = image("fixture/app:multi")["children"].as_array().unwrap();
    let by_arch = |a: &str| {
        children
            .iter()
            .find(|c| c["platform"]["architecture"] == a)
            .unwrap()
    };
    let (amd, arm) = (by_arch("amd64"), by_arch("arm64"));
    let manifests = names(&m, "oci/v2/fixture/app/manifests");
    assert!(manifests.contains(&s(&amd["digest"]).to_string()));
    assert!(!manifests.contains(&s(&arm["digest"]).to_string()));
    let blobs = names(&m, "oci/v2/fixture/app/blobs");
    assert!(!blobs.contains(&s(&arm["config"]["digest"]).to_string()));
    // Every blob a mirrored manifest lists, with its size before any read.
    let app = image("fixture/app:1.0");
    for b in std::iter::once(&app["config"]).chain(app["layers"].as_array().unwrap()) {
        let rel = format!("v2/fixture/app/blobs/{}", s(&b["digest"]));
        let meta = std::fs::metadata(m.path(&format!("oci/{rel}"))).unwrap();
        assert_eq!(meta.len(), b["size"].as_u64().unwrap(), "{rel}");
        assert_eq!(up.hits(&rel), 0, "{rel}: stat fetched nothing");
    }
    // tags/list names the mirrored tags, the signature tags among them.
    let list: Value =
        serde_json::from_slice(&std::fs::read(m.path("oci/v2/fixture/app/tags/list")).unwrap())
            .unwrap();
    let sigs = &fx.manifest["signatures"];
    assert_eq!(
        list,
        serde_json::json!({"name": "fixture/app", "tags":
            ["1.0", "multi", s(&sigs["schema_tag"]), s(&sigs["cosign_tag"])]})
    );
    let list: Value =
        serde_json::from_slice(&std::fs::read(m.path("oci/v2/fixture/base/tags/list")).unwrap())
            .unwrap();
    assert_eq!(
        list["tags"],
        serde_json::json!(["1.1", "stable"]),
        "only the configured tags"
    );
    // Manifests are kept at sync time: served with upstream down.
    up.set_down(true);
    let tag_file = format!(
        "oci/v2/fixture/app/manifests/1.0/{}.oci-manifest",
        s(&app["digest"])
    );
    assert_eq!(
        std::fs::read(m.path(&tag_file)).unwrap(),
        upstream_bytes("v2/fixture/app/manifests/1.0")
    );
}

#[test]
fn without_platforms_every_child_of_an_index_is_mirrored() {
    let (_up, m) = mount("oci-platforms", "images = [\"fixture/app:multi\"]");
    let manifests = names(&m, "oci/v2/fixture/app/manifests");
    for c in image("fixture/app:multi")["children"].as_array().unwrap() {
        assert!(manifests.contains(&s(&c["digest"]).to_string()), "{c}");
        let config = format!("oci/v2/fixture/app/blobs/{}", s(&c["config"]["digest"]));
        assert!(m.path(&config).exists(), "{config}");
    }
    assert_eq!(
        names(&m, "oci/v2/fixture/app/manifests").len(),
        1 + 1 + 2,
        "multi, the index by digest, its two children"
    );
    assert!(
        !m.path("oci/v2/fixture/app/referrers").exists(),
        "signatures off"
    );
}

fn referrers_of(m: &Mount, subject: &str) -> Vec<String> {
    let p = m.path(&format!("oci/v2/fixture/app/referrers/{subject}"));
    let index: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| s(&d["digest"]).to_string())
        .collect()
}

#[test]
fn signatures_travel_with_the_image_from_the_referrers_api_or_the_tag_schema() {
    let sigs = &oci().manifest["signatures"];
    let subject = s(&sigs["subject"]);
    let referrer = s(&sigs["referrer"]["digest"]).to_string();
    let keys = "images = [\"fixture/app:1.0\", \"fixture/app:multi\"]\nsignatures = true";
    let (up, m) = mount("oci-referrers-api", keys);
    assert_eq!(referrers_of(&m, subject), vec![referrer.clone()]);
    assert_eq!(up.hits(&format!("v2/fixture/app/referrers/{subject}")), 1);
    let cosign = format!("oci/v2/fixture/app/manifests/{}", s(&sigs["cosign_tag"]));
    assert_eq!(
        names(&m, &cosign),
        [format!("{}.oci-manifest", s(&sigs["cosign"]["digest"]))]
    );
    for b in sigs["referrer_blobs"].as_array().unwrap() {
        assert!(
            m.path(&format!("oci/v2/fixture/app/blobs/{}", s(b)))
                .exists(),
            "{b}"
        );
    }
    // Every mirrored manifest has a referrers index, an empty one if need
    // be; signatures are not followed to their own signatures.
    let multi = s(&image("fixture/app:multi")["digest"]);
    assert_eq!(referrers_of(&m, multi), Vec::<String>::new());
    let sig_digest = s(&sigs["cosign"]["digest"]);
    assert!(
        !m.path(&format!("oci/v2/fixture/app/referrers/{sig_digest}"))
            .exists()
    );
    drop(m);

    // An upstream without the referrers API (docker-registry has none):
    // the tag schema's index says the same.
    let up = Upstream::serve(&oci().root);
    up.fault(
        &format!("v2/fixture/app/referrers/{subject}"),
        Fault::Status(404),
    );
    let dir = support::scratch("oci-referrers-schema");
    let cfg = support::config(
        &dir,
        "",
        &format!(
            "[[mirror]]\nname = \"oci\"\nlayout = \"oci\"\nupstream = \"{}\"\nsync_interval = \"1h\"\n{keys}\n",
            up.url()
        ),
    );
    let m = Mount::start(&dir, &cfg, "oci");
    m.wait_generation(1);
    assert_eq!(referrers_of(&m, subject), [referrer]);
    assert!(
        up.hits(&format!(
            "v2/fixture/app/manifests/{}",
            s(&sigs["schema_tag"])
        )) >= 1
    );
}

#[test]
fn hostile_tags_and_manifests_are_left_out_with_a_warning_and_the_rest_is_served() {
    let (_up, m) = mount("oci-hostile", "images = [\"fixture/hostile:*\"]");
    let h = &oci().manifest["hostile_tags"];
    let ok = s(&h["ok"]);
    assert_eq!(
        names(&m, "oci/v2/fixture/hostile/manifests"),
        ["ok".to_string(), ok.into()]
    );
    let list: Value =
        serde_json::from_slice(&std::fs::read(m.path("oci/v2/fixture/hostile/tags/list")).unwrap())
            .unwrap();
    assert_eq!(list["tags"], serde_json::json!(["ok"]));
    let log = m.log();
    for tag in h["rejected"].as_array().unwrap() {
        let line = log
            .lines()
            .find(|l| {
                l.contains("leaving out the tag") && l.contains(&format!("tag=\"{}\"", s(tag)))
            })
            .unwrap_or_else(|| panic!("no WARN for {tag}:\n{log}"));
        assert!(line.contains("WARN"), "{line}");
    }
    assert!(
        log.contains("not a tag name"),
        "the hostile names are reported:\n{log}"
    );
    let st = &m.status()[0];
    assert!(st["sync"]["ok"].as_bool().unwrap(), "{st}");
}

#[test]
fn a_tag_that_moves_upstream_moves_in_the_next_generation_and_what_it_left_goes() {
    let fx = oci();
    let (up, m) = mount_over("oci-move", &fx.root, "oci", |u| fx.mirror("oci", u, ""));
    let (old, new) = (
        s(&image("fixture/base:stable")["digest"]),
        s(&image("fixture/base:1.1")["digest"]),
    );
    let stable = "oci/v2/fixture/base/manifests/stable";
    assert_eq!(names(&m, stable), [format!("{old}.oci-manifest")]);
    let old_config = format!(
        "oci/v2/fixture/base/blobs/{}",
        s(&image("fixture/base:stable")["config"]["digest"])
    );
    assert!(m.path(&old_config).exists());
    assert!(!m.path("oci/v2/fixture/base/manifests/latest").exists());
    for r in fx.manifest["update"]["remap"].as_array().unwrap() {
        up.remap(s(&r[0]), s(&r[1]));
    }
    let out = run(&m.config, &["sync", "oci"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.wait_for(
        || names(&m, stable) == [format!("{new}.oci-manifest")],
        "stable to name base 1.1",
    );
    assert_eq!(
        names(&m, "oci/v2/fixture/base/manifests/latest"),
        [format!("{new}.oci-manifest")]
    );
    assert!(
        !m.path(&format!("oci/v2/fixture/base/manifests/{old}"))
            .exists(),
        "no tag names it"
    );
    assert!(!m.path(&old_config).exists(), "its config went with it");
    let file = Path::new(stable).join(format!("{new}.oci-manifest"));
    assert_eq!(
        std::fs::read(m.path(file.to_str().unwrap())).unwrap(),
        upstream_bytes("v2/fixture/base/manifests/1.1")
    );
}

#[test]
fn a_manifest_that_does_not_match_its_digest_header_is_refused_with_its_tag() {
    let fx = oci();
    let (up, m) = mount_over("oci-dcd", &fx.root, "oci", |u| fx.mirror("oci", u, ""));
    let d = s(&image("fixture/app:1.0")["digest"]);
    let dir = "oci/v2/fixture/app/manifests/1.0";
    assert_eq!(names(&m, dir), [format!("{d}.oci-manifest")]);
    // Upstream now sends other bytes under the same Docker-Content-Digest.
    up.fault("v2/fixture/app/manifests/1.0", Fault::Corrupt);
    let out = run(&m.config, &["sync", "oci"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.wait_for(
        || m.log().contains("its Docker-Content-Digest says"),
        "the mismatch to be logged",
    );
    assert!(
        !m.path(dir).exists(),
        "a tag whose manifest fails its check is not served"
    );
    assert!(
        m.path(&format!("oci/v2/fixture/app/manifests/{d}"))
            .exists(),
        "by digest it is still reached through the index (multi)"
    );
}

#[test]
fn additive_retention_keeps_a_deleted_tag_pullable_from_the_cache_until_it_is_evicted() {
    let (up, m) = mount(
        "oci-retain",
        "images = [\"fixture/base:*\"]\nretain = \"additive\"",
    );
    let img = image("fixture/base:1.1");
    let d = s(&img["digest"]);
    let file = format!("{d}.oci-manifest");
    let blobs: Vec<&str> = std::iter::once(&img["config"])
        .chain(img["layers"].as_array().unwrap())
        .map(|b| s(&b["digest"]))
        .collect();
    let pull = || {
        for r in ["1.1", d] {
            let dir = format!("oci/v2/fixture/base/manifests/{r}");
            assert_eq!(names(&m, &dir), [file.as_str()], "{dir}");
            assert_eq!(
                std::fs::read(m.path(&format!("{dir}/{file}"))).unwrap(),
                upstream_bytes("v2/fixture/base/manifests/1.1"),
                "{dir}: as served"
            );
        }
        for b in &blobs {
            let bytes = std::fs::read(m.path(&format!("oci/v2/fixture/base/blobs/{b}"))).unwrap();
            assert_eq!(format!("sha256:{}", support::sha256_hex(&bytes)), *b);
        }
    };
    let tags = || -> Value {
        let p = m.path("oci/v2/fixture/base/tags/list");
        serde_json::from_slice::<Value>(&std::fs::read(p).unwrap()).unwrap()["tags"].clone()
    };
    pull();
    // Upstream deletes tag 1.1: its manifest and the blobs only it lists.
    up.fault(
        "v2/fixture/base/tags/list",
        Fault::Body(br#"{"name":"fixture/base","tags":["1.0","stable"]}"#.to_vec()),
    );
    let shared = image("fixture/base:1.0")["layers"].as_array().unwrap();
    let own: Vec<&str> = blobs
        .iter()
        .copied()
        .filter(|b| !shared.iter().any(|l| s(&l["digest"]) == *b))
        .collect();
    assert_eq!(own.len(), 2, "its config and its own layer");
    for gone in ["manifests/1.1".to_string(), format!("manifests/{d}")]
        .into_iter()
        .chain(own.iter().map(|b| format!("blobs/{b}")))
    {
        up.fault(&format!("v2/fixture/base/{gone}"), Fault::Status(404));
    }
    support::run_ok(&m.config, &["sync"]);
    assert_eq!(tags(), serde_json::json!(["1.0", "1.1", "stable"]));
    // And at the next sync, from what the retaining generation serves.
    support::run_ok(&m.config, &["sync"]);
    assert_eq!(tags(), serde_json::json!(["1.0", "1.1", "stable"]));
    let asked = up.total();
    pull();
    assert_eq!(
        up.total(),
        asked,
        "pulled from the cache, nothing asked of upstream"
    );
    m.expect_retained(1);
    // Evicted from the cache: gone at the next generation.
    m.evict_all_and_sync();
    assert_eq!(tags(), serde_json::json!(["1.0", "stable"]));
    assert!(!m.path("oci/v2/fixture/base/manifests/1.1").exists());
    assert!(
        !m.path(&format!("oci/v2/fixture/base/manifests/{d}"))
            .exists()
    );
    for b in &own {
        assert!(
            !m.path(&format!("oci/v2/fixture/base/blobs/{b}")).exists(),
            "{b}"
        );
    }
    m.expect_retained(0);
}
