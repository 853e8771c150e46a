//! Maven: sidecar and maven-metadata.xml checks never panic, and a lookup
//! (any parent path, any name) only ever names units and placeholder
//! directories that stay inside the mirror.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regfs::digest::Algo;
use regfs::layout::Adapter;
use regfs::layouts::{self, maven};
use regfs::path::RelPath;

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
        }
        if a.lazy_dir(parent, name) {
            assert!(regfs::path::check_name(name).is_ok() && name != ".." && name != ".");
        }
    }
});
