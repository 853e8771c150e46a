//! Packages and Sources streams, fed in arbitrary chunks: no panic, the
//! same result however the stream is cut, and no pool path escapes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regfs::layouts::debian::{IndexKind, IndexParser};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else { return };
    for kind in [IndexKind::Packages, IndexKind::Sources] {
        let mut whole = IndexParser::new(kind);
        whole.feed(body);
        let whole = whole.finish();
        let mut chunked = IndexParser::new(kind);
        for c in body.chunks(usize::from(cut).max(1)) {
            chunked.feed(c);
        }
        assert_eq!(chunked.finish(), whole);
        for f in &whole.0 {
            assert!(!f.path.as_str().split('/').any(|c| c == ".."));
        }
    }
});
