//! npm packuments, crates index files, Go module zips, go.sum files,
//! module paths and Composer p2 documents: no input may panic, every path an adapter derives stays
//! inside the mirror, and nothing it lists lacks a digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regfs::catalog::Body;
use regfs::layouts::{self, composer, crates, go, go::modzip, npm};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 5 {
        0 => {
            let name = serde_json::from_slice::<serde_json::Value>(rest)
                .ok()
                .and_then(|j| j.get("name")?.as_str().map(str::to_string))
                .unwrap_or_else(|| "x".into());
            if !npm::is_package_name(&name) {
                return;
            }
            let a = layouts::configure(
                &npm::LAYOUT,
                "http://127.0.0.1/",
                "public_url = \"http://mirror.test/m\"",
                npm::Npm::from_keys,
            )
            .unwrap();
            if let Ok(r) = a.rewrite(&name, "http://127.0.0.1/x", rest, 0) {
                // Both served documents are JSON, whatever upstream wrote.
                for doc in [&r.full, &r.abbreviated] {
                    serde_json::from_slice::<serde_json::Value>(doc)
                        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(doc)));
                }
                for e in r.entries {
                    assert!(e.path.as_str().starts_with(&format!("{name}/-/")));
                    assert!(matches!(e.body, Body::Remote { .. }));
                }
            }
        }
        1 => {
            let (versions, _) = crates::parse_index("fuzzed", rest);
            for v in versions {
                assert!(v.name.eq_ignore_ascii_case("fuzzed"));
                assert!(!v.vers.contains('/') && !v.vers.contains(".."));
            }
        }
        2 => {
            let _ = modzip::hash_zip_from(std::io::Cursor::new(rest), rest.len() as u64);
        }
        4 => {
            let a = layouts::configure(
                &composer::LAYOUT,
                "http://127.0.0.1/",
                "public_url = \"http://mirror.test/m\"",
                composer::Composer::from_keys,
            )
            .unwrap();
            let name = serde_json::from_slice::<serde_json::Value>(rest)
                .ok()
                .and_then(|j| j.get("packages")?.as_object()?.keys().next().cloned())
                .filter(|n| composer::is_package_name(n))
                .unwrap_or_else(|| "fuzz/pkg".into());
            if let Ok(r) = a.rewrite(&name, "http://127.0.0.1/p2/fuzz/pkg.json", rest, None) {
                // The served document is JSON, whatever upstream wrote.
                serde_json::from_slice::<serde_json::Value>(&r.body)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)));
                for e in r.dists {
                    assert!(e.path.as_str().starts_with(&format!("dists/{name}/")));
                    assert!(matches!(e.body, Body::Remote { .. }));
                }
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            let _ = go::parse_go_sum(text);
            if let Some(m) = modzip::unescape(text) {
                assert_eq!(modzip::escape(&m).as_deref(), Some(text));
            }
            let _ = go::is_module_path(text);
        }
    }
});
