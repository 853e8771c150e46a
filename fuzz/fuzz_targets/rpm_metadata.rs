//! rpm-md documents (primary.xml, repomd.xml, metalinks) fed to the XML
//! reader in arbitrary chunks: no panic, the same result however the
//! stream is cut, and no package path that could leave the repository.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regfs::layouts::rpm::primary::PrimaryHandler;
use regfs::layouts::rpm::repomd::{parse_metalink, parse_repomd};
use regfs::layouts::rpm::xml::Reader;

fn primary(body: &[u8], step: usize) -> Option<(Vec<String>, usize)> {
    let mut h = PrimaryHandler::new(vec!["http://rpm.upstream.test/os/".into()]);
    let mut r = Reader::new();
    for c in body.chunks(step.max(1)) {
        r.feed(c, &mut h).ok()?;
    }
    r.finish(&mut h).ok()?;
    let h = h.finish();
    Some((h.packages.iter().map(|p| p.path.clone()).collect(), h.rejected))
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else { return };
    let whole = primary(body, body.len());
    assert_eq!(primary(body, usize::from(cut)), whole);
    for p in whole.iter().flat_map(|(paths, _)| paths) {
        assert!(regfs::path::RelPath::new(p.as_str()).is_ok(), "{p:?}");
        assert!(!p.contains(['%', '\\', '?', '#']), "{p:?}");
    }
    let _ = parse_repomd(body);
    let _ = parse_metalink(body);
});
