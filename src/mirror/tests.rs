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
