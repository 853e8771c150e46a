use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::FetchSettings;
use crate::digest::Digest;
use crate::fetch::fake::{Fake, Reply, ok};

const BASE: &str = "http://up.test/";
const JSON: &str = "application/vnd.pypi.simple.v1+json";

struct Harness {
    fake: Arc<Fake>,
    fs: Arc<Fs>,
    mirror: Arc<Mirror>,
}

static N: AtomicUsize = AtomicUsize::new(0);

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "regfs-fs-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn harness(filter: Option<&[&str]>) -> Harness {
    let dir = tmpdir();
    let fake = Arc::new(Fake::default());
    let settings = FetchSettings {
        idle_timeout: std::time::Duration::from_millis(500),
        ..FetchSettings::default()
    };
    let fetcher = crate::fetch::Fetcher::new(fake.clone(), settings);
    let config = crate::layouts::testing::mirror(
        "pypi",
        BASE,
        &crate::layouts::testing::filter("projects", filter),
    );
    let mirror = Arc::new(Mirror::open(config, 1, &dir.join("state")).unwrap());
    let store = Arc::new(Store::open(&dir.join("cache"), None).unwrap());
    let fs = Fs::new(
        vec![mirror.clone()],
        store,
        fetcher,
        Box::new(crate::dashboard::reports(Default::default())),
    );
    Harness { fake, fs, mirror }
}

/// A project page with one wheel, in PEP 691 JSON.
fn publish(h: &Harness, project: &str, file: &str, body: &[u8]) -> String {
    let sha = Digest::sha256_of(body).hex();
    let path = format!("packages/{}/{}/{}/{file}", &sha[..2], &sha[2..4], &sha[4..]);
    let page = serde_json::json!({
        "meta": {"api-version": "1.1"}, "name": project, "versions": ["1.0"],
        "files": [{"filename": file, "url": format!("../../{path}"), "hashes": {"sha256": sha}, "size": body.len(), "upload-time": "2024-01-02T03:04:05Z"}]
    });
    h.fake.route(
        &format!("{BASE}simple/{project}/"),
        vec![Reply {
            content_type: Some(JSON.into()),
            ..ok(page.to_string().as_bytes())
        }],
    );
    h.fake.route(&format!("{BASE}{path}"), vec![ok(body)]);
    path
}

async fn resolve(fs: &Arc<Fs>, path: &str) -> Result<Attr, FsError> {
    let mut ino = ROOT_INO;
    let mut attr = fs.clone().getattr(ino).await?;
    for c in path.split('/') {
        attr = fs.clone().lookup(ino, c.to_string()).await?;
        ino = attr.ino;
    }
    Ok(attr)
}

async fn read_all(fs: &Arc<Fs>, ino: u64) -> Result<Vec<u8>, FsError> {
    let o = fs.clone().open(ino, false).await?;
    let mut out = Vec::new();
    let result = loop {
        match fs.clone().read(o.fh, out.len() as u64, 4096).await {
            Ok(chunk) if chunk.is_empty() => break Ok(out),
            Ok(chunk) => out.extend(chunk),
            Err(e) => break Err(e),
        }
    };
    fs.release(o.fh);
    result
}

struct Names(Vec<(String, u64)>);

impl DirSink for Names {
    fn add(&mut self, _ino: u64, offset: u64, _kind: Kind, name: &str) -> bool {
        self.0.push((name.to_string(), offset));
        false
    }
}

fn list(fs: &Fs, ino: u64, offset: u64) -> Vec<String> {
    let mut n = Names(Vec::new());
    fs.readdir(ino, offset, &mut n).unwrap();
    n.0.into_iter().map(|(name, _)| name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synced_tree_reads_verified_bytes_once() {
    let h = harness(Some(&["demo"]));
    let body = b"wheel bytes".repeat(1000);
    let path = publish(&h, "demo", "demo-1.0-py3-none-any.whl", &body);
    h.mirror.sync(h.fs.fetcher()).await.unwrap();

    assert_eq!(list(&h.fs, ROOT_INO, 0), [".", "..", ".regfs", "pypi"]);
    let simple = resolve(&h.fs, "pypi/simple").await.unwrap();
    assert_eq!(
        list(&h.fs, simple.ino, 0),
        [
            ".",
            "..",
            "demo",
            "index.html",
            "index.v1_html",
            "index.v1_json"
        ]
    );
    assert_eq!(
        list(&h.fs, simple.ino, 3),
        ["index.html", "index.v1_html", "index.v1_json"],
        "readdir resumes at an offset"
    );

    let file = resolve(&h.fs, &format!("pypi/{path}")).await.unwrap();
    assert_eq!(
        file.size,
        body.len() as u64,
        "stat tells the truth before any read"
    );
    assert_eq!(
        file.mtime,
        crate::timestamp::parse_rfc3339("2024-01-02T03:04:05Z").unwrap() as u32
    );
    let before = h.fake.count.load(Ordering::SeqCst);
    assert_eq!(read_all(&h.fs, file.ino).await.unwrap(), body);
    assert_eq!(read_all(&h.fs, file.ino).await.unwrap(), body);
    assert_eq!(
        h.fake.count.load(Ordering::SeqCst),
        before + 1,
        "one upstream GET, then the cache"
    );
    let c = h.mirror.counters.snapshot();
    assert_eq!((c.misses, c.hits), (1, 1));

    let page = resolve(&h.fs, "pypi/simple/demo/index.v1_json")
        .await
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&read_all(&h.fs, page.ino).await.unwrap()).unwrap();
    assert_eq!(v["files"][0]["url"], format!("../../{path}"));
    assert_eq!(h.fs.open_handles(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_artifacts_give_eio_and_leave_nothing_cached() {
    let h = harness(Some(&["demo"]));
    let path = publish(&h, "demo", "demo-1.0-py3-none-any.whl", b"genuine");
    h.fake
        .route(&format!("{BASE}{path}"), vec![ok(b"tampered")]);
    h.mirror.sync(h.fs.fetcher()).await.unwrap();
    let file = resolve(&h.fs, &format!("pypi/{path}")).await.unwrap();
    // The open answers at once; the read carries the verdict.
    let err = read_all(&h.fs, file.ino).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(h.fs.store().usage().objects, 0);
    assert_eq!(h.mirror.counters.snapshot().verify_failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused() {
    let h = harness(Some(&["demo"]));
    let path = publish(&h, "demo", "demo-1.0-py3-none-any.whl", b"x");
    h.mirror.sync(h.fs.fetcher()).await.unwrap();
    let file = resolve(&h.fs, &format!("pypi/{path}")).await.unwrap();
    assert_eq!(
        h.fs.clone()
            .open(file.ino, true)
            .await
            .err()
            .unwrap()
            .errno(),
        libc::EROFS
    );
    let dir = resolve(&h.fs, "pypi/simple").await.unwrap();
    assert_eq!(
        h.fs.clone()
            .open(dir.ino, false)
            .await
            .err()
            .unwrap()
            .errno(),
        libc::EISDIR
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_keeps_serving_the_previous_generation() {
    let h = harness(Some(&["d*"]));
    let listing =
        serde_json::json!({"meta": {"api-version": "1.1"}, "projects": [{"name": "demo"}]});
    let index = |reply: Reply| h.fake.route(&format!("{BASE}simple/"), vec![reply]);
    index(Reply {
        content_type: Some(JSON.into()),
        ..ok(listing.to_string().as_bytes())
    });
    let path = publish(&h, "demo", "demo-1.0-py3-none-any.whl", b"v1");
    h.mirror.sync(h.fs.fetcher()).await.unwrap();
    let generation = h.mirror.current().number();
    // The listing that selects the units fails: nothing can be synced.
    index(Reply {
        status: 503,
        ..Reply::default()
    });
    assert!(h.mirror.sync(h.fs.fetcher()).await.is_err());
    assert_eq!(h.mirror.current().number(), generation);
    assert!(!h.mirror.sync_record().ok);
    let file = resolve(&h.fs, &format!("pypi/{path}")).await.unwrap();
    assert_eq!(read_all(&h.fs, file.ino).await.unwrap(), b"v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_whose_refresh_fails_keeps_its_files_while_the_others_update() {
    let h = harness(Some(&["demo", "other"]));
    let kept = publish(&h, "demo", "demo-1.0-py3-none-any.whl", b"v1");
    publish(&h, "other", "other-1.0-py3-none-any.whl", b"o1");
    h.mirror.sync(h.fs.fetcher()).await.unwrap();
    let page = format!("{BASE}simple/demo/");
    // A 503, then a page with a mistyped field: demo fails, other updates.
    let broken = [
        Reply {
            status: 503,
            ..Reply::default()
        },
        Reply {
            content_type: Some(JSON.into()),
            ..ok(br#"{"meta": {"api-version": "1.1"}, "name": "demo", "files": [{"filename": "demo-2.0.tar.gz", "url": "x", "hashes": {}, "size": "1000"}]}"#)
        },
    ];
    for (i, reply) in broken.into_iter().enumerate() {
        let generation = h.mirror.current().number();
        h.fake.route(&page, vec![reply]);
        let file = format!("other-{}.0-py3-none-any.whl", i + 2);
        let body = format!("o{}", i + 2);
        let newer = publish(&h, "other", &file, body.as_bytes());
        let report = h.mirror.sync(h.fs.fetcher()).await.unwrap();
        assert!(report.changed, "{report:?}");
        assert_eq!(
            report
                .failed
                .iter()
                .map(|f| f.unit.as_str())
                .collect::<Vec<_>>(),
            ["demo"],
            "{report:?}"
        );
        let rec = h.mirror.sync_record();
        assert!(
            rec.ok && rec.failed.len() == 1 && rec.failed[0].starts_with("demo: "),
            "{rec:?}"
        );
        assert!(h.mirror.current().number() > generation);
        let f = resolve(&h.fs, &format!("pypi/{kept}")).await.unwrap();
        assert_eq!(
            read_all(&h.fs, f.ino).await.unwrap(),
            b"v1",
            "demo kept its file"
        );
        let f = resolve(&h.fs, &format!("pypi/{newer}")).await.unwrap();
        assert_eq!(
            read_all(&h.fs, f.ino).await.unwrap(),
            body.as_bytes(),
            "other updated"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_only_upstreams_still_report_true_sizes() {
    let h = harness(Some(&["plain"]));
    let body = b"sdist bytes".repeat(77);
    let sha = Digest::sha256_of(&body).hex();
    let html = format!(r#"<a href="/files/plain-1.0.tar.gz#sha256={sha}">plain-1.0.tar.gz</a>"#);
    h.fake.route(
        &format!("{BASE}simple/plain/"),
        vec![Reply {
            content_type: Some("text/html".into()),
            ..ok(html.as_bytes())
        }],
    );
    h.fake
        .route(&format!("{BASE}files/plain-1.0.tar.gz"), vec![ok(&body)]);
    h.mirror.sync(h.fs.fetcher()).await.unwrap();
    let path = format!(
        "pypi/packages/{}/{}/{}/plain-1.0.tar.gz",
        &sha[..2],
        &sha[2..4],
        &sha[4..]
    );
    let attr = resolve(&h.fs, &path).await.unwrap();
    assert_eq!(attr.size, body.len() as u64);
    assert_eq!(read_all(&h.fs, attr.ino).await.unwrap(), body);
    assert_eq!(h.fake.hits(&format!("{BASE}files/plain-1.0.tar.gz")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_mirrors_materialize_on_lookup_and_remember_misses() {
    let h = harness(None);
    publish(&h, "demo", "demo-1.0-py3-none-any.whl", b"lazy");
    let simple = resolve(&h.fs, "pypi/simple").await.unwrap();
    assert_eq!(
        list(&h.fs, simple.ino, 2),
        ["index.html", "index.v1_html", "index.v1_json"]
    );
    let demo =
        h.fs.clone()
            .lookup(simple.ino, "demo".into())
            .await
            .unwrap();
    assert_eq!(demo.kind, Kind::Dir);
    assert!(
        list(&h.fs, simple.ino, 2).contains(&"demo".to_string()),
        "readdir lists what is materialized"
    );
    for _ in 0..3 {
        assert_eq!(
            h.fs.clone().lookup(simple.ino, "nosuch".into()).await.err(),
            Some(FsError::NotFound)
        );
    }
    assert_eq!(
        h.fake.hits(&format!("{BASE}simple/nosuch/")),
        1,
        "misses are negatively cached"
    );
    assert_eq!(
        h.fs.clone().lookup(simple.ino, "NoSuch".into()).await.err(),
        Some(FsError::NotFound)
    );
    assert_eq!(
        h.fake.hits(&format!("{BASE}simple/NoSuch/")),
        0,
        "names that are not normalized never reach upstream"
    );
    // A resync refreshes the materialized project.
    let r = h.mirror.sync(h.fs.fetcher()).await.unwrap();
    assert_eq!(r.units, 1);
    assert!(h.mirror.current().has_unit("demo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_whose_stat_fetched_the_file_counts_as_a_miss() {
    let h = harness(Some(&["demo"]));
    let path = publish(&h, "demo", "demo-1.0-py3-none-any.whl", b"sizeless");
    // The same page without sizes: the first stat fetches the file.
    let sha = Digest::sha256_of(b"sizeless").hex();
    let page = serde_json::json!({
        "meta": {"api-version": "1.1"}, "name": "demo", "versions": ["1.0"],
        "files": [{"filename": "demo-1.0-py3-none-any.whl", "url": format!("../../{path}"), "hashes": {"sha256": sha}}]
    });
    h.fake.route(
        &format!("{BASE}simple/demo/"),
        vec![Reply {
            content_type: Some(JSON.into()),
            ..ok(page.to_string().as_bytes())
        }],
    );
    h.mirror.sync(h.fs.fetcher()).await.unwrap();
    let file = resolve(&h.fs, &format!("pypi/{path}")).await.unwrap();
    assert_eq!(file.size, 8, "stat told the true size");
    assert_eq!(h.fake.hits(&format!("{BASE}{path}")), 1, "by fetching it");
    let counts = || {
        let s = h.mirror.counters.snapshot();
        (s.hits, s.misses)
    };
    assert_eq!(counts(), (0, 0), "a stat is not a read");
    assert_eq!(read_all(&h.fs, file.ino).await.unwrap(), b"sizeless");
    assert_eq!(counts(), (0, 1), "the read had to fetch: a miss");
    assert_eq!(read_all(&h.fs, file.ino).await.unwrap(), b"sizeless");
    assert_eq!(counts(), (1, 1), "then a hit");
}

/// Many units materializing at once, each serving upstream documents as
/// they are (Maven's checksum sidecars): every file of the final tree is
/// readable. Garbage collection after each swap once swept a sidecar a
/// concurrent materialization had just stored and not yet made live.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_materializations_lose_no_stored_document() {
    let dir = tmpdir();
    let fake = Arc::new(Fake::default());
    let fetcher = crate::fetch::Fetcher::new(fake.clone(), FetchSettings::default());
    let base = "http://maven.up.test/maven2/";
    let config = crate::layouts::testing::mirror("maven", base, "");
    let mirror = Arc::new(Mirror::open(config, 1, &dir.join("state")).unwrap());
    let store = Arc::new(Store::open(&dir.join("cache"), None).unwrap());
    let fs = Fs::new(
        vec![mirror.clone()],
        store,
        fetcher,
        Box::new(crate::dashboard::reports(Default::default())),
    );
    let units = 100;
    for i in 0..units {
        let jar = format!("org/test/a{i}/1.0/a{i}-1.0.jar");
        let sha1 = crate::digest::Hasher::new(crate::digest::Algo::Sha1);
        let mut h = sha1;
        h.update(format!("jar {i}").as_bytes());
        fake.route(
            &format!("{base}{jar}.sha1"),
            vec![ok(h.finish().hex().as_bytes())],
        );
    }
    let mut tasks = Vec::new();
    for i in 0..units {
        let fs = fs.clone();
        tasks.push(tokio::spawn(async move {
            resolve(&fs, &format!("maven/org/test/a{i}/1.0/a{i}-1.0.jar.sha1"))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let g = mirror.current();
    let stored: Vec<_> = g.files().filter_map(|id| g.stored_digest(id)).collect();
    assert_eq!(stored.len(), units, "one sidecar per unit");
    let missing = stored
        .iter()
        .filter(|d| mirror.meta.size_of(d).is_none())
        .count();
    assert_eq!(missing, 0, "stored documents the tree serves are all kept");
}
