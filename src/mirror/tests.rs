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

/// Retains `<unit>/old.bin` while the served generation has it cached, as
/// `retain = "additive"` layouts do, and reports every unit unchanged
/// unless asked in full. Records each call's `full`.
struct RetainsOld {
    full: std::sync::Mutex<Vec<(String, bool)>>,
    /// Upstream changed: the next calls build, `full` or not.
    changed: std::sync::atomic::AtomicBool,
}

impl Adapter for RetainsOld {
    fn select<'a>(&'a self, _: &'a dyn DocSource) -> BoxFuture<'a, Result<Selection, SyncError>> {
        Box::pin(async { Ok(Selection::Units(vec!["a".into(), "b".into()])) })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        _: u64,
        full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(async move {
            self.full.lock().unwrap().push((unit.to_string(), full));
            if !full && !self.changed.load(Ordering::SeqCst) {
                return Ok(Some(UnitOutput {
                    entries: Vec::new(),
                    rejected: 0,
                    unchanged: true,
                }));
            }
            let path = format!("{unit}/old.bin");
            let mut entries = vec![Entry {
                path: RelPath::new(format!("{unit}/index")).unwrap(),
                mtime: None,
                body: Body::Inline(b"upstream's".to_vec()),
            }];
            match src.previous(&path) {
                // The first build: upstream still lists it.
                None => entries.push(Entry {
                    path: RelPath::new(path).unwrap(),
                    mtime: None,
                    body: Body::Remote {
                        url: format!("http://up.test/{unit}/old.bin"),
                        size: Some(3),
                        digest: old_digest(unit),
                    },
                }),
                Some(crate::layout::Previous::Artifact {
                    url,
                    size,
                    digest,
                    cached: true,
                }) => {
                    src.retained(unit, 1, vec![digest.clone()]);
                    entries.push(Entry {
                        path: RelPath::new(path).unwrap(),
                        mtime: None,
                        body: Body::Remote { url, size, digest },
                    });
                }
                Some(_) => src.retained(unit, 0, Vec::new()),
            }
            Ok(Some(UnitOutput {
                entries,
                rejected: 0,
                unchanged: false,
            }))
        })
    }

    fn lazy_unit(&self, _: &str, _: &str) -> Option<String> {
        None
    }
}

fn old_digest(unit: &str) -> crate::digest::Digest {
    crate::digest::Digest::sha256_of(unit.repeat(3).as_bytes())
}

#[tokio::test]
async fn a_unit_reported_unchanged_is_rebuilt_once_its_retained_artifact_is_evicted_also_after_a_restart()
 {
    let dir = std::env::temp_dir().join(format!("regfs-mirror-retain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = Arc::new(crate::store::Store::open(&dir.join("cache"), None).unwrap());
    let adapter = Arc::new(RetainsOld {
        full: Default::default(),
        changed: Default::default(),
    });
    let open = || {
        let mut config =
            crate::layouts::testing::mirror("pypi", "http://up.test/", "retain = \"additive\"");
        config.adapter = adapter.clone();
        let m = Arc::new(Mirror::open(config, 1, &dir.join("state")).unwrap());
        m.set_artifacts(cache.clone());
        m
    };
    let fetcher = Fetcher::new(
        Arc::new(crate::fetch::fake::Fake::default()),
        crate::config::FetchSettings::default(),
    );
    let listed = |m: &Mirror, unit: &str| m.current().resolve(&format!("{unit}/old.bin")).is_some();
    // Asked in full, per unit, since the last look.
    let rebuilt = || {
        let mut calls = std::mem::take(&mut *adapter.full.lock().unwrap());
        calls.retain(|(_, full)| *full);
        let mut units: Vec<String> = calls.into_iter().map(|(u, _)| u).collect();
        units.sort();
        units
    };
    let mirror = open();
    mirror.sync(&fetcher).await.unwrap();
    assert_eq!(rebuilt(), ["a", "b"], "nothing kept yet: built");
    // Both artifacts are read (cached), then upstream removes them: the
    // next build retains them.
    for u in ["a", "b"] {
        cache
            .put_bytes(&old_digest(u), u.repeat(3).as_bytes())
            .unwrap();
    }
    adapter.changed.store(true, Ordering::SeqCst);
    mirror.sync(&fetcher).await.unwrap();
    adapter.changed.store(false, Ordering::SeqCst);
    assert_eq!(mirror.retained_versions(), 2);
    adapter.full.lock().unwrap().clear();
    mirror.sync(&fetcher).await.unwrap();
    assert_eq!(rebuilt(), Vec::<String>::new(), "all cached: kept unparsed");
    // a's is evicted: a is rebuilt without it, b is kept.
    cache.remove(&old_digest("a"));
    let r = mirror.sync(&fetcher).await.unwrap();
    assert!(r.changed);
    assert_eq!(rebuilt(), ["a"]);
    assert!(!listed(&mirror, "a") && listed(&mirror, "b"));
    assert_eq!(mirror.retained_versions(), 1);
    // A restart: the new mirror knows what b retains; nothing is rebuilt
    // while it is cached, and b is once it is evicted.
    drop(mirror);
    let mirror = open();
    assert_eq!(mirror.retained_versions(), 1);
    mirror.sync(&fetcher).await.unwrap();
    assert_eq!(rebuilt(), Vec::<String>::new(), "unchanged after a restart");
    cache.remove(&old_digest("b"));
    let r = mirror.sync(&fetcher).await.unwrap();
    assert!(r.changed);
    assert_eq!(rebuilt(), ["b"], "evicted after the restart: rebuilt");
    assert!(!listed(&mirror, "b"));
    assert_eq!(mirror.retained_versions(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
