//! Maven: sidecar and maven-metadata.xml checks never panic, and a lookup
//! (any parent path, any name) only ever names units and placeholder
//! directories that stay inside the mirror; materializing such a unit over
//! an upstream that answers every request (with the input) never panics
//! and lists only representable paths.
#![no_main]

use std::future::Future;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use regfs::digest::{Algo, Digest};
use regfs::layout::{Adapter, BoxFuture, Doc, DocError, DocRequest, DocSource, Keep};
use regfs::layouts::{self, maven};
use regfs::path::RelPath;

/// An upstream that has every document, all with the same body.
struct Everything<'a>(&'a [u8]);

impl DocSource for Everything<'_> {
    fn get(&self, req: DocRequest) -> BoxFuture<'_, Result<Doc, DocError>> {
        let doc = Doc {
            url: format!("http://127.0.0.1/maven2/{}", req.path),
            content_type: None,
            body: self.0.to_vec(),
            unchanged: false,
            stored: None,
            hold: Default::default(),
        };
        Box::pin(async move { Ok(doc) })
    }

    fn keep(&self, _: &Digest, _: u64) -> Result<Box<dyn Keep>, String> {
        Err("not here".into())
    }
}

/// Polls `f` once: the adapter over [`Everything`] never waits.
fn now<T>(f: impl Future<Output = T>) -> Option<T> {
    match std::pin::pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = maven::parse_sidecar(Algo::Sha1, data);
    let _ = maven::parse_sidecar(Algo::Sha512, data);
    let _ = maven::check_metadata(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (parent, name) = text.rsplit_once('\n').unwrap_or(("", text));
    for keys in ["", "artifacts = [\"org.*:*\"]"] {
        let a = layouts::configure(
            &maven::LAYOUT,
            "http://127.0.0.1/maven2/",
            keys,
            maven::Maven::from_keys,
        )
        .unwrap();
        if let Some(unit) = a.lazy_unit(parent, name) {
            let p = RelPath::new(unit.clone()).unwrap_or_else(|e| panic!("{unit:?}: {e}"));
            assert!(!p.as_str().split('/').any(|c| c == ".." || c == "."));
            let src = Everything(data);
            if let Some(Ok(Some(out))) = now(a.unit(&unit, &src, 0, true)) {
                for e in out.entries {
                    assert!(e.path.as_str().starts_with(&unit), "{} for {unit}", e.path);
                }
            }
        }
        if a.lazy_dir(parent, name) {
            assert!(regfs::path::check_name(name).is_ok() && name != ".." && name != ".");
        }
    }
});
