use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::fake::{Fake, Reply, ok};
use super::*;
use crate::store::Store;

fn setup() -> (Arc<Fake>, Arc<Fetcher>, Arc<Store>) {
    let fake = Arc::new(Fake::default());
    let settings = FetchSettings {
        idle_timeout: Duration::from_millis(300),
        fetch_timeout: Duration::from_secs(2),
        ..FetchSettings::default()
    };
    let fetcher = Fetcher::new(fake.clone(), settings);
    let dir = std::env::temp_dir().join(format!(
        "regfs-fetch-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let store = Arc::new(Store::open(&dir, None).unwrap());
    (fake, fetcher, store)
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn artifact(url: &str, body: &[u8]) -> Artifact {
    Artifact {
        urls: vec![url.to_string()],
        digest: Digest::sha256_of(body),
        size: Some(body.len() as u64),
        pinned: false,
        pin: None,
    }
}

const URL: &str = "http://up.test/a.whl";

#[tokio::test]
async fn downloads_once_and_then_serves_from_the_store() {
    let (fake, fetcher, store) = setup();
    let body = vec![7u8; 5000];
    fake.route(URL, vec![ok(&body)]);
    let c = Arc::new(Counters::default());
    assert_eq!(
        fetcher
            .ensure(&store, artifact(URL, &body), c.clone())
            .await
            .unwrap(),
        5000
    );
    assert_eq!(
        fetcher
            .ensure(&store, artifact(URL, &body), c.clone())
            .await
            .unwrap(),
        5000
    );
    assert_eq!(fake.hits(URL), 1);
    assert_eq!(
        std::fs::read(store.object_path(&Digest::sha256_of(&body))).unwrap(),
        body
    );
    assert_eq!(c.snapshot().fetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_readers_cause_one_request() {
    let (fake, fetcher, store) = setup();
    let body = vec![1u8; 100_000];
    fake.route(
        URL,
        vec![Reply {
            delay: Duration::from_millis(100),
            ..ok(&body)
        }],
    );
    let c = Arc::new(Counters::default());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (f, s, c, a) = (
                fetcher.clone(),
                store.clone(),
                c.clone(),
                artifact(URL, &body),
            );
            tokio::spawn(async move { f.ensure(&s, a, c).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 100_000);
    }
    assert_eq!(fake.count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_tampered_body_is_refused_and_nothing_is_stored() {
    let (fake, fetcher, store) = setup();
    let body = b"the real thing".to_vec();
    fake.route(URL, vec![ok(b"the evil thing")]);
    let c = Arc::new(Counters::default());
    let err = fetcher
        .ensure(&store, artifact(URL, &body), c.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Digest { .. }), "{err}");
    assert!(
        err.to_string().contains(URL),
        "the error names the URL: {err}"
    );
    assert_eq!(store.usage().objects, 0);
    assert_eq!(c.snapshot().verify_failures, 1);
    assert_eq!(
        fake.hits(URL),
        1,
        "a digest mismatch is not retried against the same URL"
    );
    // A wrong length is refused before any byte is stored.
    fake.route(URL, vec![ok(b"short")]);
    let err = fetcher
        .ensure(&store, artifact(URL, &body), c.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Size { .. }), "{err}");
    assert_eq!(store.usage().objects, 0);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let (fake, fetcher, store) = setup();
    let body = b"eventually".to_vec();
    fake.route(
        URL,
        vec![
            Reply {
                status: 503,
                ..Reply::default()
            },
            Reply {
                connect_error: true,
                ..Reply::default()
            },
            ok(&body),
        ],
    );
    let c = Arc::new(Counters::default());
    fetcher
        .ensure(&store, artifact(URL, &body), c)
        .await
        .unwrap();
    assert_eq!(fake.hits(URL), 3);
}

#[tokio::test]
async fn fallback_upstreams_are_tried_in_order() {
    let (fake, fetcher, store) = setup();
    let body = b"from the second".to_vec();
    let bases = vec![
        reqwest::Url::parse("http://one.test/pypi/").unwrap(),
        reqwest::Url::parse("http://two.test/").unwrap(),
    ];
    let urls = fallback_urls("http://one.test/pypi/packages/x.whl", &bases);
    assert_eq!(
        urls,
        [
            "http://one.test/pypi/packages/x.whl",
            "http://two.test/packages/x.whl"
        ]
    );
    assert_eq!(
        fallback_urls("http://files.test/x.whl", &bases),
        ["http://files.test/x.whl"]
    );
    fake.route(
        &urls[0],
        vec![Reply {
            status: 500,
            ..Reply::default()
        }],
    );
    fake.route(&urls[1], vec![ok(&body)]);
    let art = Artifact {
        urls: urls.clone(),
        digest: Digest::sha256_of(&body),
        size: None,
        pinned: false,
        pin: None,
    };
    let c = Arc::new(Counters::default());
    fetcher.ensure(&store, art, c.clone()).await.unwrap();
    assert_eq!(fake.hits(&urls[0]), 3, "all attempts on the first upstream");
    assert_eq!(
        c.snapshot().upstream_errors.get("status"),
        Some(&3),
        "every failed attempt is counted"
    );
}

#[tokio::test]
async fn a_stalled_body_fails_within_the_idle_timeout() {
    let (fake, fetcher, store) = setup();
    let body = vec![3u8; 10_000];
    fake.route(
        URL,
        vec![Reply {
            stall_after: Some(4000),
            ..ok(&body)
        }],
    );
    let started = std::time::Instant::now();
    let err = fetcher
        .ensure(&store, artifact(URL, &body), Arc::new(Counters::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Stalled { .. }), "{err}");
    // 3 attempts × 300 ms idle timeout + backoff (200 + 400 ms), well under a few seconds.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(store.usage().objects, 0);
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0,
        "no partial file left"
    );
}

#[tokio::test]
async fn documents_use_conditional_requests_and_size_limits() {
    let (fake, fetcher, _store) = setup();
    fake.route(
        URL,
        vec![Reply {
            etag: Some("\"v1\"".into()),
            ..ok(b"{}")
        }],
    );
    let urls = vec![URL.to_string()];
    let DocResponse::Fresh(doc) = fetcher
        .get_doc(&urls, Some("application/json"), None, 1000)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(doc.etag.as_deref(), Some("\"v1\""));
    let again = fetcher
        .get_doc(&urls, None, Some((doc.etag.clone(), None)), 1000)
        .await
        .unwrap();
    assert!(matches!(again, DocResponse::NotModified));
    let calls = fake.calls.lock().unwrap().clone();
    assert!(
        calls[0]
            .1
            .contains(&("accept", "application/json".to_string()))
    );
    assert!(
        calls[1]
            .1
            .contains(&("if-none-match", "\"v1\"".to_string()))
    );
    fake.route(URL, vec![ok(&[b'x'; 2000])]);
    assert!(matches!(
        fetcher.get_doc(&urls, None, None, 1000).await,
        Err(FetchError::TooLarge { .. })
    ));
    assert!(matches!(
        fetcher
            .get_doc(&["http://up.test/missing".into()], None, None, 1000)
            .await
            .unwrap(),
        DocResponse::NotFound { .. }
    ));
}

fn with_settings(
    settings: FetchSettings,
    max_size: Option<u64>,
) -> (Arc<Fake>, Arc<Fetcher>, Arc<Store>) {
    let fake = Arc::new(Fake::default());
    let fetcher = Fetcher::new(fake.clone(), settings);
    let dir = std::env::temp_dir().join(format!(
        "regfs-fetch-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let store = Arc::new(Store::open(&dir, max_size).unwrap());
    (fake, fetcher, store)
}

/// Liveness bound for calls that must end: generous, not a performance claim.
async fn ends<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("returned within 30 s")
}

#[tokio::test]
async fn a_trickling_body_is_abandoned_at_the_rate_floor() {
    let settings = FetchSettings {
        fetch_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(5),
        attempts: 3,
        ..FetchSettings::default()
    };
    let (fake, fetcher, store) = with_settings(settings, None);
    let body = vec![5u8; 100_000];
    // 10 bytes every 20 ms: never idle, far under the floor.
    let trickle = Reply {
        chunk_size: Some(10),
        chunk_delay: Duration::from_millis(20),
        ..ok(&body)
    };
    fake.route(URL, vec![trickle.clone()]);
    let c = Arc::new(Counters::default());
    let err = ends(fetcher.ensure(&store, artifact(URL, &body), c.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::TooSlow { .. }), "{err}");
    assert_eq!(
        fake.hits(URL),
        1,
        "a trickle is not retried at the same URL"
    );
    // Sizeless, without Content-Length: the same.
    let sizeless = "http://up.test/sizeless.whl";
    fake.route(
        sizeless,
        vec![Reply {
            no_length: true,
            ..trickle
        }],
    );
    let art = Artifact {
        size: None,
        ..artifact(sizeless, &body)
    };
    let err = ends(fetcher.ensure(&store, art, c.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::TooSlow { .. }), "{err}");
    assert_eq!(c.snapshot().upstream_errors.get("stalled"), Some(&2));
    assert_eq!(store.usage().objects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_downloads_leave_permits_for_documents() {
    let settings = FetchSettings {
        max_per_host: 2,
        idle_timeout: Duration::from_secs(60),
        fetch_timeout: Duration::from_secs(60),
        ..FetchSettings::default()
    };
    let (fake, fetcher, store) = with_settings(settings, None);
    let body = vec![1u8; 10_000];
    let mut downloads = Vec::new();
    for i in 0..3 {
        let url = format!("http://up.test/slow-{i}.whl");
        fake.route(
            &url,
            vec![Reply {
                stall_after: Some(100),
                ..ok(&body)
            }],
        );
        let (f, s) = (fetcher.clone(), store.clone());
        let art = artifact(&url, &body);
        downloads.push(tokio::spawn(async move {
            f.ensure(&s, art, Arc::new(Counters::default())).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        fake.count.load(Ordering::SeqCst),
        1,
        "with 2 permits a host, downloads hold at most one"
    );
    let doc = "http://up.test/simple/";
    fake.route(doc, vec![ok(b"<html></html>")]);
    let got = ends(fetcher.get_doc(&[doc.to_string()], None, None, 1000))
        .await
        .unwrap();
    assert!(matches!(got, DocResponse::Fresh(_)));
    assert!(
        downloads.iter().all(|d| !d.is_finished()),
        "the document did not wait for the downloads"
    );
    for d in downloads {
        d.abort();
    }
}

#[tokio::test]
async fn every_download_is_bounded_in_size() {
    let settings = FetchSettings {
        max_artifact_size: 10_000,
        ..FetchSettings::default()
    };
    let (fake, fetcher, store) = with_settings(settings, None);
    let c = Arc::new(Counters::default());
    // No size anywhere, an overlong body: cut at max_artifact_size.
    let body = vec![2u8; 50_000];
    fake.route(
        URL,
        vec![Reply {
            no_length: true,
            ..ok(&body)
        }],
    );
    let art = Artifact {
        size: None,
        ..artifact(URL, &body)
    };
    let err = fetcher
        .ensure(&store, art.clone(), c.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::ArtifactTooLarge { .. }), "{err}");
    assert!(err.to_string().contains(URL), "{err}");
    assert_eq!(fake.hits(URL), 1, "not retried");
    assert_eq!(store.usage().objects, 0);
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0
    );
    // A known size above the limit is refused without asking upstream.
    let big = "http://up.test/big.whl";
    let err = fetcher
        .ensure(&store, artifact(big, &body), c.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::ArtifactTooLarge { .. }), "{err}");
    assert_eq!(fake.hits(big), 0);
    // cache_max_size bounds it too.
    let (fake, fetcher, store) = with_settings(FetchSettings::default(), Some(20_000));
    fake.route(URL, vec![ok(&body)]);
    let err = fetcher
        .ensure(&store, artifact(URL, &body), c)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::ArtifactTooLarge { .. }), "{err}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn an_encoded_artifact_is_kept_when_the_bytes_sent_or_their_decoding_match() {
    let (fake, fetcher, store) = setup();
    let c = Arc::new(Counters::default());
    let encoded = |body: Vec<u8>| Reply {
        content_encoding: Some("gzip".into()),
        ..ok(&body)
    };
    // Compressed on the fly: the decoded bytes are the artifact.
    let data = b"a wheel's bytes ".repeat(500);
    fake.route(URL, vec![encoded(gzip(&data))]);
    fetcher
        .ensure(&store, artifact(URL, &data), c.clone())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(store.object_path(&Digest::sha256_of(&data))).unwrap(),
        data
    );
    let sent = fake.calls.lock().unwrap()[0].1.clone();
    assert!(
        sent.contains(&("accept-encoding", "identity".to_string())),
        "{sent:?}"
    );
    // A .tgz labelled gzip: the bytes as sent are the artifact.
    let tgz_url = "http://up.test/pkg-1.0.tgz";
    let tgz = gzip(b"a tarball");
    fake.route(tgz_url, vec![encoded(tgz.clone())]);
    fetcher
        .ensure(&store, artifact(tgz_url, &tgz), c.clone())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(store.object_path(&Digest::sha256_of(&tgz))).unwrap(),
        tgz
    );
    // Neither matches: a verification failure, nothing kept.
    let evil = "http://up.test/evil.whl";
    fake.route(evil, vec![encoded(gzip(b"something else"))]);
    let err = fetcher
        .ensure(&store, artifact(evil, b"the real thing"), c.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Digest { .. } | FetchError::Size { .. }),
        "{err}"
    );
    assert_eq!(store.usage().objects, 2);
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0
    );
    // A document compressed anyway is decoded before anyone parses it.
    let doc = "http://up.test/simple/x/";
    fake.route(doc, vec![encoded(gzip(b"{\"files\": []}"))]);
    let DocResponse::Fresh(d) = fetcher
        .get_doc(&[doc.to_string()], None, None, 1000)
        .await
        .unwrap()
    else {
        panic!("not fresh")
    };
    assert_eq!(d.body, b"{\"files\": []}");
}

#[tokio::test]
async fn a_ranged_document_request_takes_a_206_tail_and_only_when_it_asked_for_one() {
    let (fake, fetcher, _store) = setup();
    let tail = Reply {
        status: 206,
        content_range: Some("bytes 9-11/12".into()),
        repr_digest: Some("sha-256=:AAAA:".into()),
        ..ok(b"\nb\n")
    };
    fake.route(URL, vec![tail]);
    let urls = vec![URL.to_string()];
    let DocResponse::Fresh(doc) = fetcher
        .get_doc_from(&urls, None, None, 1000, Some(9))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(doc.body, b"\nb\n");
    assert_eq!(doc.content_range.as_deref(), Some("bytes 9-11/12"));
    assert_eq!(doc.repr_digest.as_deref(), Some("sha-256=:AAAA:"));
    assert!(
        fake.calls.lock().unwrap()[0]
            .1
            .contains(&("range", "bytes=9-".to_string()))
    );
    assert!(
        matches!(
            fetcher.get_doc(&urls, None, None, 1000).await,
            Err(FetchError::Status { status: 206, .. })
        ),
        "a 206 nobody asked for is not a document"
    );
    // A server that ignores Range answers 200 with the whole document.
    let whole = Reply {
        content_range: Some("bytes 0-1/2".into()),
        ..ok(b"ab")
    };
    fake.route(URL, vec![whole]);
    let DocResponse::Fresh(doc) = fetcher
        .get_doc_from(&urls, None, None, 1000, Some(9))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((doc.body.as_slice(), doc.content_range), (&b"ab"[..], None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promised_size_the_object_contradicts_fails_and_a_liars_download_is_not_shared() {
    let (fake, fetcher, store) = setup();
    let body = vec![3u8; 5000];
    fake.route(
        URL,
        vec![Reply {
            delay: Duration::from_millis(200),
            ..ok(&body)
        }],
    );
    let c = Arc::new(Counters::default());
    let liar = Artifact {
        size: Some(10),
        ..artifact(URL, &body)
    };
    // The liar's download starts first; the truthful reader must not get
    // its size failure, and the liar must not get the truthful object.
    let lying = {
        let (f, s, c, a) = (fetcher.clone(), store.clone(), c.clone(), liar.clone());
        tokio::spawn(async move { f.ensure(&s, a, c).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let truthful = fetcher
        .ensure(&store, artifact(URL, &body), c.clone())
        .await;
    assert_eq!(truthful.unwrap(), 5000);
    assert!(matches!(
        lying.await.unwrap(),
        Err(FetchError::Size { expected: 10, .. } | FetchError::Contradicted { .. })
    ));
    // Cached now: the lie is a verification failure, not the object.
    let before = c.snapshot().verify_failures;
    let e = fetcher.ensure(&store, liar, c.clone()).await.unwrap_err();
    assert!(
        matches!(
            e,
            FetchError::Contradicted {
                promised: 10,
                object: 5000,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.kind(), "verify");
    assert!(e.to_string().contains(URL), "{e}");
    assert_eq!(c.snapshot().verify_failures, before + 1);
    // No size promised: the object's own.
    let sizeless = Artifact {
        size: None,
        ..artifact(URL, &body)
    };
    assert_eq!(fetcher.ensure(&store, sizeless, c).await.unwrap(), 5000);
}

/// An artifact metadata gives only `weak` for, to pin at `path`.
fn first_use(pins: &Arc<crate::pins::Pins>, url: &str, path: &str, weak: Digest) -> Artifact {
    Artifact {
        urls: vec![url.to_string()],
        digest: weak,
        size: None,
        pinned: false,
        pin: Some(PinTo {
            pins: pins.clone(),
            path: path.into(),
        }),
    }
}

#[tokio::test]
async fn a_first_download_is_checked_pinned_and_then_the_only_bytes_served() {
    let (fake, fetcher, store) = setup();
    let dir = store.root().join("pins-state");
    std::fs::create_dir_all(&dir).unwrap();
    let pins = Arc::new(crate::pins::Pins::load(&dir).unwrap());
    let c = Arc::new(Counters::default());
    let md5 = |b: &[u8]| {
        Digest::from_bytes(crate::digest::Algo::Md5, &crate::digest::md5::md5(b)).unwrap()
    };
    let (v1, v2) = (b"first bytes".repeat(100), b"other bytes".repeat(100));
    fake.route(URL, vec![ok(&v1)]);

    // An MD5 that does not match: a verification failure, nothing pinned.
    let wrong = first_use(&pins, URL, "a/wrong.tar.gz", md5(&v2));
    assert!(matches!(
        fetcher.ensure(&store, wrong, c.clone()).await,
        Err(FetchError::Digest { .. })
    ));
    assert_eq!(c.snapshot().verify_failures, 1);
    assert!(pins.get("a/wrong.tar.gz").is_none());

    // The MD5 matches: pinned to the SHA-256, kept under it only.
    let art = first_use(&pins, URL, "a/x.tar.gz", md5(&v1));
    assert_eq!(
        fetcher
            .ensure(&store, art.clone(), c.clone())
            .await
            .unwrap(),
        v1.len() as u64
    );
    let pin = pins.get("a/x.tar.gz").unwrap();
    assert_eq!(pin.sha256, Digest::sha256_of(&v1));
    assert_eq!((pin.size, pin.weak.clone()), (v1.len() as u64, md5(&v1)));
    assert_eq!(art.object_digest(), Some(Digest::sha256_of(&v1)));
    assert!(
        store.size_of(&md5(&v1)).is_none(),
        "nothing kept under a weak digest"
    );
    assert_eq!(std::fs::read(store.object_path(&pin.sha256)).unwrap(), v1);
    // Cached: no second request.
    let hits = fake.hits(URL);
    fetcher
        .ensure(&store, art.clone(), c.clone())
        .await
        .unwrap();
    assert_eq!(fake.hits(URL), hits);

    // Evicted, and upstream changed the file: the pin holds, the new bytes fail.
    store.remove(&pin.sha256);
    fake.route(URL, vec![ok(&v2)]);
    let before = c.snapshot().verify_failures;
    assert!(
        fetcher
            .ensure(&store, art.clone(), c.clone())
            .await
            .is_err()
    );
    assert_eq!(c.snapshot().verify_failures, before + 1);
    assert_eq!(pins.get("a/x.tar.gz"), Some(pin.clone()));
    assert!(store.size_of(&Digest::sha256_of(&v2)).is_none());
    // ...also after a reload of the pins (a restart).
    let reloaded = Arc::new(crate::pins::Pins::load(&dir).unwrap());
    let again = first_use(&reloaded, URL, "a/x.tar.gz", md5(&v1));
    assert!(fetcher.ensure(&store, again, c.clone()).await.is_err());
    // Upstream back to the pinned bytes: served again.
    fake.route(URL, vec![ok(&v1)]);
    let again = first_use(&reloaded, URL, "a/x.tar.gz", md5(&v1));
    assert_eq!(
        fetcher.ensure(&store, again, c.clone()).await.unwrap(),
        v1.len() as u64
    );

    // No digest at all: pinned as sent.
    let none = first_use(&pins, URL, "b/none.tar.gz", Digest::none());
    fetcher.ensure(&store, none, c.clone()).await.unwrap();
    assert_eq!(
        pins.get("b/none.tar.gz").unwrap().sha256,
        Digest::sha256_of(&v1)
    );
    // Without a pin to make, a weak digest is never accepted as proof.
    for weak in [Digest::none(), md5(&v1)] {
        let bare = Artifact {
            pinned: false,
            pin: None,
            ..first_use(&pins, URL, "c/bare", weak)
        };
        let _ = std::fs::remove_file(store.object_path(&Digest::sha256_of(&v1)));
        store.remove(&Digest::sha256_of(&v1));
        assert!(matches!(
            fetcher.ensure(&store, bare, c.clone()).await,
            Err(FetchError::Digest { .. })
        ));
    }
    assert!(pins.get("c/bare").is_none());
}
