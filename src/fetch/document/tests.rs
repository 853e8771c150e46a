use std::sync::Arc;
use std::time::Duration;

use super::super::fake::{Fake, Reply, ok};
use super::super::{DocResponse, Fetcher};
use crate::config::FetchSettings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_documents_wait_for_the_budget_without_holding_a_connection() {
    let fake = Arc::new(Fake::default());
    let settings = FetchSettings {
        max_per_host: 2,
        ..FetchSettings::default()
    };
    // Room for one 4 MiB document at a time.
    let fetcher = Fetcher::with_doc_budget(fake.clone(), settings, 6 << 20);
    let (a, b, c) = ("http://up.test/a", "http://up.test/b", "http://up.test/c");
    let big = vec![b'{'; 4 << 20];
    fake.route(a, vec![ok(&big)]);
    fake.route(b, vec![ok(&big)]);
    fake.route(
        c,
        vec![Reply {
            no_length: true,
            ..ok(&big)
        }],
    );
    fake.route("http://up.test/small", vec![ok(b"{}")]);
    let get = |url: &'static str| {
        let f = fetcher.clone();
        tokio::spawn(async move { f.get_doc(&[url.to_string()], None, None, 8 << 20).await })
    };
    let DocResponse::Fresh(first) = get(a).await.unwrap().unwrap() else {
        panic!("a fresh document")
    };
    assert_eq!(first.hold.kib(), 4096);
    let (second, third) = (get(b), get(c));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished() && !third.is_finished(),
        "both wait for the budget"
    );
    // Neither holds a connection meanwhile: a small document gets through.
    let small = tokio::time::timeout(
        Duration::from_secs(10),
        fetcher.get_doc(&["http://up.test/small".into()], None, None, 8 << 20),
    )
    .await
    .expect("a connection permit was free")
    .unwrap();
    assert!(matches!(small, DocResponse::Fresh(d) if d.hold.kib() == 0));
    drop(first);
    // Only one 4 MiB share fits: each finishes once the other's is dropped.
    let mut waiting = vec![second, third];
    tokio::time::timeout(Duration::from_secs(20), async {
        while !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let (done, rest): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|h| h.is_finished());
            for h in done {
                let DocResponse::Fresh(d) = h.await.unwrap().unwrap() else {
                    panic!("a fresh document")
                };
                assert_eq!(d.body.len(), 4 << 20);
            }
            waiting = rest;
        }
    })
    .await
    .expect("both documents arrive");
    assert_eq!(
        fetcher.doc_budget_free_kib(),
        6 << 10,
        "every share came back"
    );
    assert!(fake.hits(b) >= 2, "asked again once the budget had room");
    assert!(
        fake.hits(c) >= 2,
        "a sizeless body past the free budget is asked again"
    );
}
