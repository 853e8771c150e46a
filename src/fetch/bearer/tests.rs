use super::*;

#[test]
fn challenges_are_parsed_with_quoted_commas_and_other_schemes_around() {
    let ch = parse_challenge(
        r#"Bearer realm="https://auth.upstream.test/token",service="registry.upstream.test",scope="repository:library/alpine:pull,push""#,
    )
    .unwrap();
    assert_eq!(ch.realm, "https://auth.upstream.test/token");
    assert_eq!(ch.service.as_deref(), Some("registry.upstream.test"));
    assert_eq!(
        ch.scope.as_deref(),
        Some("repository:library/alpine:pull,push")
    );
    let two = parse_challenge(r#"Basic realm="x", Bearer realm="http://127.0.0.1:1/t", service=s"#)
        .unwrap();
    assert_eq!(
        (two.realm.as_str(), two.service.as_deref(), two.scope),
        ("http://127.0.0.1:1/t", Some("s"), None)
    );
    let after =
        parse_challenge(r#"bearer realm="http://a.test/t",error="invalid_token", Basic realm="b""#)
            .unwrap();
    assert_eq!(after.realm, "http://a.test/t");
    for bad in [
        r#"Basic realm="http://a.test/""#,
        "Bearer",
        r#"Bearer service="s""#,
        r#"Bearer realm="file:///etc/passwd""#,
        r#"Bearer realm="http://a.test/"#,
        "",
        "=,=,\"",
    ] {
        assert_eq!(parse_challenge(bad), None, "{bad}");
    }
}

#[test]
fn the_token_url_carries_service_and_every_scope() {
    let ch = Challenge {
        realm: "http://127.0.0.1:9/token?x=1".into(),
        service: Some("reg".into()),
        scope: Some("repository:a/b:pull repository:c:pull".into()),
    };
    assert_eq!(
        token_url(&ch).unwrap(),
        "http://127.0.0.1:9/token?x=1&service=reg&scope=repository%3Aa%2Fb%3Apull&scope=repository%3Ac%3Apull"
    );
}

#[test]
fn token_responses() {
    assert_eq!(
        parse_token(br#"{"token":"abc","expires_in":300}"#),
        Some(("abc".into(), 300))
    );
    assert_eq!(
        parse_token(br#"{"access_token":"xyz"}"#),
        Some(("xyz".into(), 60))
    );
    assert_eq!(parse_token(br#"{"token":""}"#), None);
    assert_eq!(parse_token(b"{\"token\":\"a\\nb\"}"), None);
    assert_eq!(parse_token(b"not json"), None);
}

#[test]
fn directories_of_urls() {
    assert_eq!(
        directory("http://h:1/v2/a/b/blobs/sha256:00?x=/y"),
        "http://h:1/v2/a/b/blobs/"
    );
    assert_eq!(directory("http://h"), "http://h");
}

mod flow {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::config::FetchSettings;
    use crate::fetch::fake::{Fake, Reply, ok};
    use crate::fetch::{DocResponse, FetchError, Fetcher};

    const REALM: &str = "http://auth.upstream.test/token";
    const TOKEN_URL: &str =
        "http://auth.upstream.test/token?service=reg&scope=repository%3Afixture%2Fapp%3Apull";
    const TAG: &str = "http://reg.upstream.test/v2/fixture/app/manifests/1.0";
    const DIGEST: &str = "http://reg.upstream.test/v2/fixture/app/manifests/sha256:00";
    const BLOB: &str = "http://reg.upstream.test/v2/fixture/app/blobs/sha256:11";

    fn challenge() -> Reply {
        Reply {
            status: 401,
            www_authenticate: Some(format!(
                r#"Bearer realm="{REALM}",service="reg",scope="repository:fixture/app:pull""#
            )),
            ..Reply::default()
        }
    }

    fn token(value: &str, expires_in: u64) -> Reply {
        ok(format!(r#"{{"token":"{value}","expires_in":{expires_in}}}"#).as_bytes())
    }

    fn setup() -> (Arc<Fake>, Arc<Fetcher>) {
        let fake = Arc::new(Fake::default());
        let settings = FetchSettings {
            idle_timeout: Duration::from_millis(300),
            fetch_timeout: Duration::from_secs(2),
            attempts: 1,
            ..FetchSettings::default()
        };
        (fake.clone(), Fetcher::new(fake, settings))
    }

    /// The Authorization header of each request to `url`, in order.
    fn auth_of(fake: &Fake, url: &str) -> Vec<Option<String>> {
        fake.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(u, _)| u == url)
            .map(|(_, h)| {
                h.iter()
                    .find(|(k, _)| *k == "authorization")
                    .map(|(_, v)| v.clone())
            })
            .collect()
    }

    async fn doc(fetcher: &Fetcher, url: &str) -> Result<Vec<u8>, FetchError> {
        match fetcher
            .get_doc(&[url.to_string()], None, None, 1 << 20)
            .await?
        {
            DocResponse::Fresh(d) => Ok(d.body),
            other => panic!("{url}: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_challenge_is_answered_with_a_token_that_later_requests_reuse() {
        let (fake, fetcher) = setup();
        fake.route(TOKEN_URL, vec![token("t1", 300)]);
        fake.route(TAG, vec![challenge(), ok(b"manifest")]);
        fake.route(DIGEST, vec![ok(b"child")]);
        fake.route(BLOB, vec![challenge(), ok(b"blob")]);
        assert_eq!(doc(&fetcher, TAG).await.unwrap(), b"manifest");
        assert_eq!(auth_of(&fake, TAG), [None, Some("Bearer t1".into())]);
        // Same directory: the token goes with the first request.
        assert_eq!(doc(&fetcher, DIGEST).await.unwrap(), b"child");
        assert_eq!(auth_of(&fake, DIGEST), [Some("Bearer t1".into())]);
        // Another directory: one 401, then the cached token (same scope).
        assert_eq!(doc(&fetcher, BLOB).await.unwrap(), b"blob");
        assert_eq!(auth_of(&fake, BLOB), [None, Some("Bearer t1".into())]);
        assert_eq!(fake.hits(TOKEN_URL), 1, "one token for one scope");
        assert_eq!(auth_of(&fake, TOKEN_URL), [None], "no login was configured");
    }

    #[tokio::test]
    async fn an_expired_token_is_fetched_again_before_the_request() {
        let (fake, fetcher) = setup();
        fake.route(TOKEN_URL, vec![token("t1", 1), token("t2", 300)]);
        fake.route(TAG, vec![challenge(), ok(b"m")]);
        fake.route(DIGEST, vec![ok(b"c")]);
        doc(&fetcher, TAG).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        doc(&fetcher, DIGEST).await.unwrap();
        assert_eq!(auth_of(&fake, DIGEST), [Some("Bearer t2".into())]);
        assert_eq!(fake.hits(TOKEN_URL), 2);
    }

    #[tokio::test]
    async fn a_refused_token_is_replaced_once_and_a_second_refusal_is_the_answer() {
        let (fake, fetcher) = setup();
        fake.route(TOKEN_URL, vec![token("t1", 300), token("t2", 300)]);
        fake.route(TAG, vec![challenge(), ok(b"m")]);
        fake.route(DIGEST, vec![challenge(), ok(b"c")]);
        doc(&fetcher, TAG).await.unwrap();
        doc(&fetcher, DIGEST).await.unwrap();
        assert_eq!(
            auth_of(&fake, DIGEST),
            [Some("Bearer t1".into()), Some("Bearer t2".into())],
            "revoked t1 is forgotten, t2 fetched"
        );
        fake.route(BLOB, vec![challenge()]);
        let e = doc(&fetcher, BLOB).await.unwrap_err();
        assert!(
            matches!(&e, FetchError::Status { status: 401, url } if url == BLOB),
            "{e}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_challenges_fetch_one_token() {
        let (fake, fetcher) = setup();
        fake.route(
            TOKEN_URL,
            vec![Reply {
                delay: Duration::from_millis(100),
                ..token("t1", 300)
            }],
        );
        let urls: Vec<String> = (0..10)
            .map(|i| format!("http://reg.upstream.test/v2/fixture/app/blobs/sha256:{i}"))
            .collect();
        // Every first request is answered 401 only after a second, so all
        // ten are challenged before any token exists (a request sent later
        // would carry t1, and a 401 to that rightly means t1 was refused).
        for u in &urls {
            let slow = Reply {
                delay: Duration::from_secs(1),
                ..challenge()
            };
            fake.route(u, vec![slow, ok(b"b")]);
        }
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(urls.len()));
        let tasks: Vec<_> = urls
            .iter()
            .map(|u| {
                let (f, u, start) = (fetcher.clone(), u.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    doc(&f, &u).await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), b"b");
        }
        assert_eq!(fake.hits(TOKEN_URL), 1);
    }

    #[tokio::test]
    async fn a_realm_that_refuses_fails_the_request_naming_the_realm_without_the_token() {
        let (fake, fetcher) = setup();
        fake.route(
            TOKEN_URL,
            vec![Reply {
                status: 401,
                ..Reply::default()
            }],
        );
        fake.route(TAG, vec![challenge()]);
        let e = doc(&fetcher, TAG).await.unwrap_err();
        assert!(
            matches!(&e, FetchError::Status { status: 401, url } if url == TOKEN_URL),
            "{e}"
        );
        fake.route(TOKEN_URL, vec![ok(b"{\"nothing\":1}")]);
        let e = doc(&fetcher, TAG).await.unwrap_err().to_string();
        assert!(e.contains(REALM) && e.contains("no `token`"), "{e}");
        // A challenge that is not Bearer is the answer as it is.
        fake.route(
            BLOB,
            vec![Reply {
                www_authenticate: Some(r#"Basic realm="x""#.into()),
                ..challenge()
            }],
        );
        let e = doc(&fetcher, BLOB).await.unwrap_err();
        assert!(matches!(e, FetchError::Status { status: 401, .. }), "{e}");
        assert_eq!(fake.hits(BLOB), 1);
    }

    #[tokio::test]
    async fn artifact_downloads_answer_challenges_too() {
        let (fake, fetcher) = setup();
        let dir = std::env::temp_dir().join(format!("regfs-bearer-{}", std::process::id()));
        let store = Arc::new(crate::store::Store::open(&dir, None).unwrap());
        fake.route(TOKEN_URL, vec![token("t1", 300)]);
        fake.route(BLOB, vec![challenge(), ok(b"layer")]);
        let art = crate::fetch::Artifact {
            urls: vec![BLOB.into()],
            digest: crate::digest::Digest::sha256_of(b"layer"),
            size: Some(5),
            pinned: false,
            pin: None,
        };
        let counters = Arc::new(crate::stats::Counters::default());
        assert_eq!(fetcher.ensure(&store, art, counters).await.unwrap(), 5);
        assert_eq!(auth_of(&fake, BLOB), [None, Some("Bearer t1".into())]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
