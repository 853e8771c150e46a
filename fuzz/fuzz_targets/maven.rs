//! Maven: sidecar and maven-metadata.xml checks never panic, and a lookup
//! (any parent path, any name) only ever names units and placeholder
//! directories that stay inside the mirror.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regfs::config::{Download, Glob, MirrorConfig, parse_base_url};
use regfs::digest::Algo;
use regfs::layout::{Adapter, LayoutKind, maven};
use regfs::path::RelPath;

fuzz_target!(|data: &[u8]| {
    let _ = maven::parse_sidecar(Algo::Sha1, data);
    let _ = maven::parse_sidecar(Algo::Sha512, data);
    let _ = maven::check_metadata(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (parent, name) = text.rsplit_once('\n').unwrap_or(("", text));
    for filter in [None, Some(vec![Glob::new("org.*:*").unwrap()])] {
        let m = MirrorConfig {
            name: "maven".into(),
            layout: LayoutKind::Maven,
            upstreams: vec![parse_base_url("http://127.0.0.1/maven2/").unwrap()],
            filter,
            cooldown: None,
            sync_interval: std::time::Duration::from_secs(3600),
            download: Download::OnDemand,
            debian: None,
            public_url: None,
            go: None,
        };
        let a = maven::Maven::new(&m, LayoutKind::Maven.spec());
        if let Some(unit) = a.lazy_unit(parent, name) {
            let p = RelPath::new(unit.clone()).unwrap_or_else(|e| panic!("{unit:?}: {e}"));
            assert!(!p.as_str().split('/').any(|c| c == ".." || c == "."));
        }
        if a.lazy_dir(parent, name) {
            assert!(regfs::path::check_name(name).is_ok() && name != ".." && name != ".");
        }
    }
});
