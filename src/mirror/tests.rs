use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::catalog::Body;
use crate::fetch::Fetcher;
use crate::layout::{BoxFuture, DocSource, Selection, SyncError, UnitOutput};
use crate::path::RelPath;

/// An adapter whose first materialization panics, as a defect would.
struct PanicsOnce {
    calls: AtomicUsize,
}

impl Adapter for PanicsOnce {
    fn select<'a>(&'a self, _: &'a dyn DocSource) -> BoxFuture<'a, Result<Selection, SyncError>> {
        Box::pin(async { Ok(Selection::Lazy(Vec::new())) })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        _: &'a dyn DocSource,
        _: u64,
        _: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(async move {
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("a defect in an adapter");
            }
            Ok(Some(UnitOutput {
                entries: vec![Entry {
                    path: RelPath::new(format!("{unit}/file")).unwrap(),
                    mtime: None,
                    body: Body::Inline(b"x".to_vec()),
                }],
                rejected: 0,
                unchanged: false,
            }))
        })
    }

    fn lazy_unit(&self, _: &str, name: &str) -> Option<String> {
        Some(name.to_string())
    }
}

#[tokio::test]
async fn a_materialization_that_panics_is_not_left_in_flight() {
    let dir = std::env::temp_dir().join(format!("regfs-mirror-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = crate::layouts::testing::mirror("pypi", "http://up.test/", "");
    config.adapter = Arc::new(PanicsOnce {
        calls: AtomicUsize::new(0),
    });
    let mirror = Arc::new(Mirror::open(config, 1, &dir).unwrap());
    let fetcher = Fetcher::new(
        Arc::new(crate::fetch::fake::Fake::default()),
        crate::config::FetchSettings::default(),
    );
    let first = mirror.materialize(&fetcher, "unit").await;
    assert!(first.is_err(), "{first:?}");
    // Not stuck: the next lookup materializes it (well within lookup_timeout).
    let again = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        mirror.materialize(&fetcher, "unit"),
    )
    .await
    .expect("the second materialization does not wait for the first");
    assert_eq!(again, Ok(true));
    assert!(mirror.current().resolve("unit/file").is_some());
}

#[tokio::test]
async fn an_appended_tail_is_held_under_the_budget_share_of_the_whole_document() {
    use crate::fetch::fake::{Fake, Reply, ok};
    use crate::layout::DocRequest;
    let dir = std::env::temp_dir().join(format!("regfs-mirror-ranged-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = crate::layouts::testing::mirror("rubygems", "http://up.test/", "");
    let mirror = Arc::new(Mirror::open(config, 1, &dir).unwrap());
    let fake = Arc::new(Fake::default());
    let fetcher = Fetcher::new(fake.clone(), crate::config::FetchSettings::default());
    let digest = |b: &[u8]| {
        let d = crate::digest::Digest::sha256_of(b);
        format!("sha-256=:{}:", crate::digest::encode_base64(d.as_bytes()))
    };
    // Larger than a small document; the tail alone is small.
    let kept = vec![b'a'; 3 << 20];
    let mut whole = kept.clone();
    whole.extend_from_slice(b"b 1 m\n");
    let start = kept.len() - 1;
    let url = "http://up.test/versions";
    fake.route(
        url,
        vec![
            Reply {
                repr_digest: Some(digest(&kept)),
                ..ok(&kept)
            },
            Reply {
                status: 206,
                content_range: Some(format!("bytes {start}-{}/{}", whole.len() - 1, whole.len())),
                repr_digest: Some(digest(&whole)),
                ..ok(&whole[start..])
            },
        ],
    );
    let src = docs::Source::new(&mirror, &fetcher);
    let req = || DocRequest {
        path: "versions".into(),
        accept: None,
    };
    let first = src.get_appended(req()).await.unwrap();
    assert_eq!(first.body, kept);
    drop(first);
    let doc = src.get_appended(req()).await.unwrap();
    let calls = fake.calls.lock().unwrap().clone();
    assert!(
        calls[1].1.contains(&("range", format!("bytes={start}-"))),
        "the second fetch asked for the tail: {:?}",
        calls[1].1
    );
    assert_eq!(doc.body, whole, "the kept copy and the tail");
    assert_eq!(
        doc.hold.kib() as usize,
        whole.len().div_ceil(1024),
        "the whole document's share, not the tail's"
    );
    drop(doc);
    assert_eq!(
        fetcher.doc_budget_free_kib(),
        (crate::fetch::DOC_BUDGET >> 10) as usize
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_blob_pinned_by_two_operations_outlives_the_first_to_finish() {
    let dir = std::env::temp_dir().join(format!("regfs-mirror-pins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = crate::layouts::testing::mirror("pypi", "http://up.test/", "");
    config.adapter = Arc::new(PanicsOnce {
        calls: AtomicUsize::new(1),
    });
    let mirror = Arc::new(Mirror::open(config, 1, &dir).unwrap());
    let mut a = vec![Entry {
        path: RelPath::new("unit/file").unwrap(),
        mtime: None,
        body: Body::Inline(b"shared".to_vec()),
    }];
    let mut b = a.clone();
    // A sync and a lazy materialization write the same blob.
    let first = mirror.spool(&mut a).unwrap();
    let second = mirror.spool(&mut b).unwrap();
    assert_eq!(first, second);
    let gc = || {
        let g = mirror.current();
        mirror.collect_garbage(&g, &g);
        mirror.meta.size_of(&first[0]).is_some()
    };
    mirror.unpin(&first);
    assert!(gc(), "still pinned by the second operation: not collected");
    mirror.unpin(&second);
    assert!(
        !gc(),
        "unpinned by both and named by no generation: collected"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
