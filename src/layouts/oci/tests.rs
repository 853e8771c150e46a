//! The adapter on real registry documents (tests/fixtures/oci/docs/:
//! manifests umoci and skopeo made, as docker-registry served them).

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::catalog::{Body, Entry};
use crate::digest::Digest;
use crate::layout::{Doc, DocError, DocRequest, Keep, Previous};
use crate::layouts::testing::{block_on, configure, generation, names_in};

const BASE: &str = "https://registry.upstream.test/";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn doc(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/oci/docs")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn sha(body: &[u8]) -> String {
    Digest::sha256_of(body).to_string()
}

#[derive(Clone)]
struct Reply {
    body: Vec<u8>,
    content_type: Option<String>,
    content_digest: Option<String>,
}

/// A registry from a map of request paths; records what was asked.
#[derive(Default)]
struct Registry {
    map: HashMap<String, Reply>,
    asked: Mutex<Vec<(String, Option<&'static str>)>>,
    /// The files of the generation being served, by mirror path.
    previous: HashMap<String, Previous>,
    /// What the adapter reported retained, by unit: (tags, blobs).
    retained: Mutex<HashMap<String, (usize, Vec<Digest>)>>,
}

impl Registry {
    /// A manifest under its tag (or digest) and its digest, as a registry
    /// serves it: Content-Type and Docker-Content-Digest.
    fn manifest(mut self, repo: &str, tags: &[&str], body: &[u8], media_type: &str) -> Registry {
        let d = sha(body);
        for r in tags.iter().copied().chain([d.as_str()]) {
            self.map.insert(
                format!("v2/{repo}/manifests/{r}"),
                Reply {
                    body: body.to_vec(),
                    content_type: Some(media_type.into()),
                    content_digest: Some(d.clone()),
                },
            );
        }
        self
    }

    fn raw(mut self, path: &str, body: &[u8], ctype: Option<&str>, dcd: Option<&str>) -> Registry {
        self.map.insert(
            path.to_string(),
            Reply {
                body: body.to_vec(),
                content_type: ctype.map(str::to_string),
                content_digest: dcd.map(str::to_string),
            },
        );
        self
    }

    fn tags(self, repo: &str, tags: &[&str]) -> Registry {
        let body = serde_json::to_vec(&serde_json::json!({"name": repo, "tags": tags})).unwrap();
        self.raw(
            &format!("v2/{repo}/tags/list"),
            &body,
            Some("application/json"),
            None,
        )
    }

    /// Serves `files` as the generation being served.
    fn served(mut self, files: Vec<(String, Previous)>) -> Registry {
        self.previous.extend(files);
        self
    }

    /// Upstream no longer has `path`.
    fn without(mut self, path: &str) -> Registry {
        self.map.remove(path);
        self
    }

    fn retained(&self, unit: &str) -> Option<(usize, Vec<Digest>)> {
        self.retained.lock().unwrap().get(unit).cloned()
    }

    fn asked(&self, path: &str) -> usize {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    }
}

impl DocSource for Registry {
    fn get(&self, req: DocRequest) -> BoxFuture<'_, Result<Doc, DocError>> {
        self.asked
            .lock()
            .unwrap()
            .push((req.path.clone(), req.accept));
        let url = format!("{BASE}{}", req.path);
        let r = match self.map.get(&req.path) {
            Some(r) => Ok(Doc {
                url,
                content_type: r.content_type.clone(),
                content_digest: r.content_digest.clone(),
                body: r.body.clone(),
                unchanged: false,
                stored: None,
                hold: Default::default(),
            }),
            None => Err(DocError::NotFound { url }),
        };
        Box::pin(async move { r })
    }

    fn previous(&self, path: &str) -> Option<Previous> {
        self.previous.get(path).cloned()
    }

    fn previous_files(&self, path: &str) -> Vec<String> {
        names_in(self.previous.keys(), path)
    }

    fn retained(&self, unit: &str, versions: usize, artifacts: Vec<Digest>) {
        let mut r = self.retained.lock().unwrap();
        r.insert(unit.to_string(), (versions, artifacts));
    }

    fn keep(&self, _sha256: &Digest, _size: u64) -> Result<Box<dyn Keep>, String> {
        Err("not in this test".into())
    }
}

fn oci(keys: &str) -> Result<Oci, String> {
    configure(&LAYOUT, BASE, keys, Oci::from_keys)
}

/// The fixture's app repository: 1.0, multi (amd64 + arm64), the Cosign
/// signature tag and the referrers tag schema of 1.0.
fn app() -> Registry {
    let sig_tag = format!("sha256-{}.sig", &sha(&doc("app-1.0.json"))[7..]);
    let schema_tag = format!("sha256-{}", &sha(&doc("app-1.0.json"))[7..]);
    Registry::default()
        .tags("fixture/app", &["1.0", "multi", &sig_tag, &schema_tag])
        .manifest("fixture/app", &["1.0"], &doc("app-1.0.json"), OCI_MANIFEST)
        .manifest("fixture/app", &["multi"], &doc("app-multi.json"), OCI_INDEX)
        .manifest("fixture/app", &[], &doc("app-arm64.json"), OCI_MANIFEST)
        .manifest(
            "fixture/app",
            &[&sig_tag],
            &doc("cosign-sig.json"),
            OCI_MANIFEST,
        )
        .manifest("fixture/app", &[], &doc("referrer.json"), OCI_MANIFEST)
        .manifest(
            "fixture/app",
            &[&schema_tag],
            &doc("referrers-tag-schema.json"),
            OCI_INDEX,
        )
}

fn sync(o: &Oci, repo: &str, src: &dyn DocSource) -> Result<Option<UnitOutput>, SyncError> {
    block_on(o.unit(repo, src, 0, true))
}

fn files(out: &UnitOutput) -> HashMap<String, &Entry> {
    out.entries
        .iter()
        .map(|e| (e.path.as_str().to_string(), e))
        .collect()
}

fn bytes(e: &Entry) -> Vec<u8> {
    match &e.body {
        Body::Inline(b) => b.clone(),
        other => panic!("{}: {other:?}", e.path.as_str()),
    }
}

/// The blobs a manifest document lists: (digest, size).
fn blobs_of(body: &[u8]) -> Vec<(String, u64)> {
    let m: serde_json::Value = serde_json::from_slice(body).unwrap();
    let mut out = vec![];
    for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
        out.push((
            d["digest"].as_str().unwrap().to_string(),
            d["size"].as_u64().unwrap(),
        ));
    }
    out
}

#[test]
fn configuration_names_repositories_and_tag_patterns() {
    let o = oci("images = [\"fixture/app:1.*\", \"fixture/app:multi\", \"library/alpine:*\"]\nplatforms = [\"linux/amd64\", \"linux/arm/v7\"]\nsignatures = true").unwrap();
    assert_eq!(
        o.repositories.len(),
        2,
        "patterns are grouped by repository"
    );
    assert_eq!(o.patterns("fixture/app").unwrap().len(), 2);
    assert!(o.signatures);
    assert!(o.admits(Some(&("linux".into(), "arm".into(), Some("v7".into())))));
    assert!(!o.admits(Some(&("linux".into(), "arm64".into(), None))));
    assert!(o.admits(None), "an entry with no platform is always kept");
    for (keys, want) in [
        ("", "missing key `images`"),
        ("images = []", "images: names no image"),
        ("images = [\"fixture/app\"]", "\"fixture/app\" names no tag"),
        ("images = [\"Fixture/App:1\"]", "is not a repository name"),
        (
            "images = [\"registry.upstream.test:5000/a:1\"]",
            "is not a repository name",
        ),
        ("images = [\"a:b/c\"]", "is not a tag or tag pattern"),
        (
            "images = [\"a:1\", \"a/manifests/x:1\"]",
            "would share paths with \"a\"",
        ),
        (
            "images = [\"a:1\"]\nplatforms = [\"amd64\"]",
            "platforms: \"amd64\" is not a platform",
        ),
        (
            "images = [\"a:1\"]\nsignatures = \"yes\"",
            "signatures: expected true or false",
        ),
        (
            "images = [\"a:1\"]\ncredentials = \"x\"",
            "unknown key `credentials`",
        ),
    ] {
        let e = oci(keys)
            .err()
            .unwrap_or_else(|| panic!("{keys} was accepted"));
        assert!(e.contains(want), "{keys}: {e}");
        assert!(e.starts_with("a oci mirror"), "names the table: {e}");
    }
    // Through the config file: the error names the file and the mirror.
    let text = "[[mirror]]\nname = \"o\"\nlayout = \"oci\"\nupstream = \"https://registry.upstream.test/\"\nimages = [\"x\"]\n";
    let e = crate::config::Config::parse(std::path::Path::new("/etc/regfs.toml"), text)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/etc/regfs.toml") && e.contains("images"), "{e}");
}

#[test]
fn a_tag_becomes_a_directory_holding_its_manifest_named_by_digest_and_media_type() {
    let o = oci("images = [\"fixture/app:1.0\", \"fixture/dockerfmt:1.0\"]").unwrap();
    let src = app();
    let out = sync(&o, "fixture/app", &src).unwrap().unwrap();
    let f = files(&out);
    let m = doc("app-1.0.json");
    let d = sha(&m);
    for p in [
        format!("v2/fixture/app/manifests/1.0/{d}.oci-manifest"),
        format!("v2/fixture/app/manifests/{d}/{d}.oci-manifest"),
    ] {
        assert_eq!(bytes(f[&p]), m, "{p}: the bytes upstream sent");
    }
    for (digest, size) in blobs_of(&m) {
        let p = format!("v2/fixture/app/blobs/{digest}");
        match &f[&p].body {
            Body::Remote {
                url,
                size: s,
                digest: dg,
            } => {
                assert_eq!(url, &format!("{BASE}{p}"));
                assert_eq!(*s, Some(size), "the descriptor's size");
                assert_eq!(dg.to_string(), digest);
            }
            other => panic!("{p}: {other:?}"),
        }
    }
    let list: serde_json::Value =
        serde_json::from_slice(&bytes(f["v2/fixture/app/tags/list"])).unwrap();
    assert_eq!(
        list,
        serde_json::json!({"name": "fixture/app", "tags": ["1.0"]})
    );
    assert_eq!(
        out.entries.len(),
        2 + 4 + 1,
        "two manifest files, four blobs, tags/list"
    );
    assert!(
        src.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.contains("/manifests/"))
            .all(|(_, a)| *a == Some(names::ACCEPT)),
        "every manifest request accepts all four kinds"
    );
    assert_eq!(
        src.asked(&format!("v2/fixture/app/referrers/{d}")),
        0,
        "signatures off"
    );

    let dm = doc("dockerfmt-1.0.json");
    let src = Registry::default()
        .tags("fixture/dockerfmt", &["1.0", "2.0"])
        .manifest("fixture/dockerfmt", &["1.0"], &dm, DOCKER_MANIFEST);
    let out = sync(&o, "fixture/dockerfmt", &src).unwrap().unwrap();
    let path = format!(
        "v2/fixture/dockerfmt/manifests/1.0/{}.docker-manifest",
        sha(&dm)
    );
    assert!(files(&out).contains_key(&path), "{:?}", files(&out).keys());
    assert_eq!(
        src.asked("v2/fixture/dockerfmt/manifests/2.0"),
        0,
        "not a configured tag"
    );
}

#[test]
fn an_index_is_followed_to_the_configured_platforms_only() {
    let src = app();
    let (index, amd, arm) = (
        doc("app-multi.json"),
        doc("app-1.0.json"),
        doc("app-arm64.json"),
    );
    let o = oci("images = [\"fixture/app:multi\"]\nplatforms = [\"linux/amd64\"]").unwrap();
    let out = sync(&o, "fixture/app", &src).unwrap().unwrap();
    let f = files(&out);
    let (di, da, dr) = (sha(&index), sha(&amd), sha(&arm));
    assert!(f.contains_key(&format!("v2/fixture/app/manifests/multi/{di}.oci-index")));
    assert!(f.contains_key(&format!("v2/fixture/app/manifests/{da}/{da}.oci-manifest")));
    assert!(!f.contains_key(&format!("v2/fixture/app/manifests/{dr}/{dr}.oci-manifest")));
    assert_eq!(
        src.asked(&format!("v2/fixture/app/manifests/{dr}")),
        0,
        "arm64 not fetched"
    );
    let arm_config = &blobs_of(&arm)[0].0;
    assert!(!f.contains_key(&format!("v2/fixture/app/blobs/{arm_config}")));

    let all = oci("images = [\"fixture/app:multi\"]").unwrap();
    let f2 = sync(&all, "fixture/app", &src).unwrap().unwrap();
    let f2 = files(&f2);
    assert!(f2.contains_key(&format!("v2/fixture/app/manifests/{dr}/{dr}.oci-manifest")));
    assert!(f2.contains_key(&format!("v2/fixture/app/blobs/{arm_config}")));
}

#[test]
fn signatures_and_referrers_travel_with_the_image() {
    let o = oci("images = [\"fixture/app:1.0\"]\nsignatures = true").unwrap();
    let m = doc("app-1.0.json");
    let d = sha(&m);
    let referrer = doc("referrer.json");
    let dref = sha(&referrer);
    // Upstream without the referrers API: the tag schema's index.
    let src = app();
    let out = sync(&o, "fixture/app", &src).unwrap().unwrap();
    let f = files(&out);
    let hex = &d[7..];
    let sig = doc("cosign-sig.json");
    assert!(f.contains_key(&format!(
        "v2/fixture/app/manifests/sha256-{hex}.sig/{}.oci-manifest",
        sha(&sig)
    )));
    for (b, _) in blobs_of(&sig).into_iter().chain(blobs_of(&referrer)) {
        assert!(f.contains_key(&format!("v2/fixture/app/blobs/{b}")), "{b}");
    }
    assert!(f.contains_key(&format!(
        "v2/fixture/app/manifests/{dref}/{dref}.oci-manifest"
    )));
    let index: serde_json::Value =
        serde_json::from_slice(&bytes(f[&format!("v2/fixture/app/referrers/{d}")])).unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    let r = &index["manifests"][0];
    assert_eq!(r["digest"], dref.as_str());
    assert_eq!(r["size"], referrer.len());
    assert_eq!(
        r["artifactType"],
        "application/vnd.example.signature.v1+json"
    );
    assert_eq!(
        r["annotations"]["org.opencontainers.image.created"],
        "2026-01-01T00:00:00Z"
    );
    let list: serde_json::Value =
        serde_json::from_slice(&bytes(f["v2/fixture/app/tags/list"])).unwrap();
    let tags: Vec<&str> = list["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            "1.0",
            &format!("sha256-{hex}"),
            &format!("sha256-{hex}.sig")
        ]
    );

    // Upstream with the referrers API: its answer counts, and a referrer
    // whose subject is another manifest is left out.
    let other = referrer
        .windows(hex.len())
        .position(|w| w == hex.as_bytes())
        .map(|i| {
            let mut b = referrer.clone();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            b
        })
        .unwrap();
    let api = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": dref, "size": referrer.len()},
        {"mediaType": OCI_MANIFEST, "digest": sha(&other), "size": other.len()},
    ]});
    let src = Registry::default()
        .tags("fixture/app", &["1.0"])
        .manifest("fixture/app", &["1.0"], &m, OCI_MANIFEST)
        .manifest("fixture/app", &[], &referrer, OCI_MANIFEST)
        .manifest("fixture/app", &[], &other, OCI_MANIFEST)
        .raw(
            &format!("v2/fixture/app/referrers/{d}"),
            &serde_json::to_vec(&api).unwrap(),
            Some(OCI_INDEX),
            None,
        );
    let out = sync(&o, "fixture/app", &src).unwrap().unwrap();
    assert_eq!(out.rejected, 1, "the referrer of another subject");
    let f = files(&out);
    let index: serde_json::Value =
        serde_json::from_slice(&bytes(f[&format!("v2/fixture/app/referrers/{d}")])).unwrap();
    let listed: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [dref.as_str()]);
    assert!(!f.keys().any(|p| p.contains(&sha(&other))), "not mirrored");
}

#[test]
fn a_manifest_that_fails_a_check_is_refused_with_its_tag_and_the_others_stay() {
    let o = oci("images = [\"fixture/app:*\"]").unwrap();
    let m = doc("app-1.0.json");
    let index = doc("app-multi.json");
    let d = sha(&m);
    let mut dup = m[..m.len() - 1].to_vec();
    dup.extend_from_slice(b",\"layers\":[]}");
    let layer = blobs_of(&m)[1].0.clone();
    let upper = String::from_utf8(m.clone())
        .unwrap()
        .replace(&layer[7..], &layer[7..].to_uppercase());
    let other = sha(b"something else");
    // tag, body, Content-Type, Docker-Content-Digest
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("dcd", m.clone(), Some(OCI_MANIFEST), Some(other.as_str())),
        ("dcd-bad", m.clone(), Some(OCI_MANIFEST), Some("sha256:../../x")),
        ("type", m.clone(), Some(OCI_INDEX), None),
        ("dup", dup, Some(OCI_MANIFEST), None),
        ("upper", upper.into_bytes(), Some(OCI_MANIFEST), None),
        ("html", b"<html></html>".to_vec(), Some(OCI_MANIFEST), None),
        ("v1", br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#.to_vec(), None, None),
        ("big-size", br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":-1},"layers":[]}"#.to_vec(), None, None),
    ];
    let mut src = Registry::default()
        .manifest("fixture/app", &["ok"], &m, OCI_MANIFEST)
        // An index whose child is not what its descriptor says.
        .raw(
            "v2/fixture/app/manifests/multi",
            &index,
            Some(OCI_INDEX),
            None,
        )
        .raw(
            &format!("v2/fixture/app/manifests/{}", sha(&doc("app-arm64.json"))),
            b"{}",
            Some(OCI_MANIFEST),
            None,
        );
    let mut tags = vec!["ok", "multi", "../x", "a/b", "nul\0", ""];
    for (tag, body, ctype, dcd) in &cases {
        src = src.raw(
            &format!("v2/fixture/app/manifests/{tag}"),
            body,
            *ctype,
            *dcd,
        );
        tags.push(tag);
    }
    let src = src.tags("fixture/app", &tags);
    let out = sync(&o, "fixture/app", &src).unwrap().unwrap();
    let f = files(&out);
    let list: serde_json::Value =
        serde_json::from_slice(&bytes(f["v2/fixture/app/tags/list"])).unwrap();
    assert_eq!(list["tags"], serde_json::json!(["ok"]));
    assert_eq!(
        out.rejected,
        4 + cases.len() + 1,
        "four names, the cases, the index"
    );
    for p in f.keys() {
        assert!(!p.contains("..") && !p.contains('\0'), "{p}");
    }
    // Without Content-Type and mediaType (umoci's manifests on a plain
    // static server) the structure decides.
    let src = Registry::default().tags("fixture/app", &["1.0"]).raw(
        "v2/fixture/app/manifests/1.0",
        &m,
        Some("application/octet-stream"),
        None,
    );
    let out = sync(&o, "fixture/app", &src).unwrap().unwrap();
    assert!(files(&out).contains_key(&format!("v2/fixture/app/manifests/1.0/{d}.oci-manifest")));
}

#[test]
fn unknown_repositories_and_vanished_tags_are_not_errors_but_upstream_failures_are() {
    let o = oci("images = [\"fixture/app:*\", \"fixture/none:1\"]").unwrap();
    assert!(
        sync(&o, "fixture/none", &Registry::default())
            .unwrap()
            .is_none()
    );
    assert!(sync(&o, "not/configured", &app()).unwrap().is_none());
    let src = Registry::default().tags("fixture/app", &["gone"]);
    let out = sync(&o, "fixture/app", &src).unwrap().unwrap();
    assert_eq!((out.rejected, out.entries.len()), (0, 1), "just tags/list");
    let sel = block_on(o.select(&src)).unwrap();
    assert_eq!(
        sel,
        Selection::Units(vec!["fixture/app".into(), "fixture/none".into()])
    );
    struct Failing;
    impl DocSource for Failing {
        fn get(&self, req: DocRequest) -> BoxFuture<'_, Result<Doc, DocError>> {
            let url = format!("{BASE}{}", req.path);
            Box::pin(async move { Err(DocError::Status { url, status: 503 }) })
        }
        fn keep(&self, _: &Digest, _: u64) -> Result<Box<dyn Keep>, String> {
            Err("no".into())
        }
    }
    let e = sync(&o, "fixture/app", &Failing).unwrap_err().to_string();
    assert!(
        e.contains("v2/fixture/app/tags/list") && e.contains("503"),
        "{e}"
    );
}

#[test]
fn a_tag_is_known_by_the_digest_its_registry_states_sha512_too() {
    let o = oci("images = [\"fixture/app:1.0\"]").unwrap();
    let m = doc("app-1.0.json");
    let d512 = names::digest_of(crate::digest::Algo::Sha512, &m).to_string();
    let src = Registry::default().tags("fixture/app", &["1.0"]).raw(
        "v2/fixture/app/manifests/1.0",
        &m,
        Some(OCI_MANIFEST),
        Some(&d512),
    );
    let out = sync(&o, "fixture/app", &src).unwrap().unwrap();
    let f = files(&out);
    assert!(f.contains_key(&format!("v2/fixture/app/manifests/1.0/{d512}.oci-manifest")));
    assert!(f.contains_key(&format!(
        "v2/fixture/app/manifests/{d512}/{d512}.oci-manifest"
    )));
    assert!(d512.starts_with("sha512:") && d512.len() == 7 + 128);
}

/// `retain = "additive"`: the served generation is what the first sync of
/// `app()` made, its blobs cached but for those named in `uncached`; then
/// upstream's tags/list is `tags` (and it no longer has the removed tags).
fn resync(
    keys: &str,
    uncached: &[&str],
    tags: &[&str],
) -> (Registry, Option<UnitOutput>, UnitOutput) {
    let first = oci(keys).unwrap();
    let before = sync(&first, "fixture/app", &app()).unwrap().unwrap();
    let blobs: Vec<String> = before
        .entries
        .iter()
        .filter(|e| e.path.as_str().contains("/blobs/"))
        .map(|e| e.path.file_name().to_string())
        .filter(|b| !uncached.contains(&b.as_str()))
        .collect();
    let cached: Vec<&str> = blobs.iter().map(String::as_str).collect();
    let mut src = app()
        .tags("fixture/app", tags)
        .served(generation(&before.entries, &cached));
    for gone in ["1.0", "multi"].into_iter().filter(|t| !tags.contains(t)) {
        src = src.without(&format!("v2/fixture/app/manifests/{gone}"));
    }
    let out = sync(&oci(keys).unwrap(), "fixture/app", &src).unwrap();
    (src, out, before)
}

fn tags_of(out: &UnitOutput) -> serde_json::Value {
    let list: serde_json::Value =
        serde_json::from_slice(&bytes(files(out)["v2/fixture/app/tags/list"])).unwrap();
    list["tags"].clone()
}

fn sorted(out: &UnitOutput) -> Vec<Entry> {
    let mut v = out.entries.clone();
    v.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
    v
}

#[test]
fn a_tag_removed_upstream_stays_as_served_while_its_manifests_and_blobs_are_here() {
    let keys = "images = [\"fixture/app:1.0\", \"fixture/app:multi\"]\nretain = \"additive\"";
    let (src, out, before) = resync(keys, &[], &["1.0"]);
    let out = out.unwrap();
    assert_eq!(
        sorted(&out),
        sorted(&before),
        "multi, its children and their blobs, as served"
    );
    assert_eq!(tags_of(&out), serde_json::json!(["1.0", "multi"]));
    let (n, blobs) = src.retained("fixture/app").unwrap();
    let mut want: Vec<String> = (blobs_of(&doc("app-1.0.json")).into_iter())
        .chain(blobs_of(&doc("app-arm64.json")))
        .map(|b| b.0)
        .collect();
    want.sort();
    want.dedup();
    let mut got: Vec<String> = blobs.iter().map(Digest::to_string).collect();
    got.sort();
    assert_eq!((n, got), (1, want), "one tag, its blobs (both platforms)");
    assert_eq!(src.asked("v2/fixture/app/manifests/multi"), 0);

    // Both removed: both stay, sorted as the mirror sorts tags.
    let (src, out, before) = resync(keys, &[], &[]);
    assert_eq!(sorted(&out.unwrap()), sorted(&before));
    assert_eq!(src.retained("fixture/app").unwrap().0, 2);

    // Without retain, or once no `images` pattern admits it, it goes.
    let (_, out, _) = resync(
        "images = [\"fixture/app:1.0\", \"fixture/app:multi\"]",
        &[],
        &["1.0"],
    );
    assert_eq!(tags_of(&out.unwrap()), serde_json::json!(["1.0"]));
    let o = oci("images = [\"fixture/app:1.0\"]\nretain = \"additive\"").unwrap();
    let (src, _, _) = resync(keys, &[], &["1.0"]);
    let out = sync(&o, "fixture/app", &src).unwrap().unwrap();
    assert_eq!(tags_of(&out), serde_json::json!(["1.0"]));
    assert_eq!(src.retained("fixture/app").unwrap().0, 0);
}

#[test]
fn a_removed_tag_goes_when_one_of_its_blobs_or_manifests_is_not_here() {
    let keys = "images = [\"fixture/app:1.0\", \"fixture/app:multi\"]\nretain = \"additive\"";
    let arm = doc("app-arm64.json");
    let arm_config = blobs_of(&arm)[0].0.clone();
    let (src, out, _) = resync(keys, &[&arm_config], &[]);
    let out = out.unwrap();
    assert_eq!(
        tags_of(&out),
        serde_json::json!(["1.0"]),
        "multi's arm64 config was evicted"
    );
    let f = files(&out);
    let da = sha(&doc("app-1.0.json"));
    assert!(!f.keys().any(|p| p.contains("/manifests/multi")));
    assert!(
        !f.keys()
            .any(|p| p.contains(&arm_config) || p.contains(&sha(&arm)))
    );
    assert!(f.contains_key(&format!("v2/fixture/app/manifests/1.0/{da}.oci-manifest")));
    assert_eq!(src.retained("fixture/app").unwrap().0, 1);

    // A layer both tags list: neither stays.
    let layer = blobs_of(&doc("app-1.0.json"))[1].0.clone();
    let (src, out, _) = resync(keys, &[&layer], &[]);
    let out = out.unwrap();
    assert_eq!(tags_of(&out), serde_json::json!([]));
    assert_eq!(out.entries.len(), 1, "just tags/list");
    assert_eq!(src.retained("fixture/app"), Some((0, vec![])));

    // A child manifest missing from the served generation: the index goes.
    let (mut src, _, _) = resync(keys, &[], &[]);
    let dr = sha(&arm);
    src.previous
        .remove(&format!("v2/fixture/app/manifests/{dr}/{dr}.oci-manifest"));
    let out = sync(&oci(keys).unwrap(), "fixture/app", &src)
        .unwrap()
        .unwrap();
    assert_eq!(tags_of(&out), serde_json::json!(["1.0"]));
}

#[test]
fn a_repository_upstream_removed_is_not_retained_and_a_moved_tag_moves() {
    let keys = "images = [\"fixture/app:1.0\", \"fixture/app:multi\"]\nretain = \"additive\"";
    let (mut src, _, _) = resync(keys, &[], &["multi"]);
    src.retained
        .lock()
        .unwrap()
        .insert("fixture/app".into(), (1, vec![]));
    src = src.without("v2/fixture/app/tags/list");
    assert!(
        sync(&oci(keys).unwrap(), "fixture/app", &src)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        src.retained("fixture/app"),
        Some((0, vec![])),
        "counted no more"
    );

    // 1.0 now names the arm64 manifest: it moves, and the manifest it
    // named is not kept under it (only by digest, as multi's amd64 child).
    let arm = doc("app-arm64.json");
    let (src, _, _) = resync(keys, &[], &["1.0", "multi"]);
    let src = src.manifest("fixture/app", &["1.0"], &arm, OCI_MANIFEST);
    let out = sync(&oci(keys).unwrap(), "fixture/app", &src)
        .unwrap()
        .unwrap();
    let tag_dir: Vec<String> = files(&out)
        .into_keys()
        .filter(|p| p.starts_with("v2/fixture/app/manifests/1.0/"))
        .collect();
    assert_eq!(
        tag_dir,
        [format!(
            "v2/fixture/app/manifests/1.0/{}.oci-manifest",
            sha(&arm)
        )]
    );
    assert_eq!(tags_of(&out), serde_json::json!(["1.0", "multi"]));
    assert_eq!(src.retained("fixture/app").unwrap().0, 0);
}
