//! PyPI project pages and listings (PEP 503 HTML, PEP 691 JSON), and the
//! entries and rewritten pages made from them: no input may panic, no
//! entry may carry a path that escapes the mirror, and the JSON page the
//! mirror serves is JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regfs::catalog::Body;
use regfs::layouts::{self, pypi};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    let ctype = match kind % 3 {
        0 => Some("text/html"),
        1 => Some("application/vnd.pypi.simple.v1+json"),
        _ => None,
    };
    let _ = pypi::parse_index(ctype, body);
    if let Ok(page) = pypi::parse_project("https://pypi.upstream.test/simple/x/", ctype, body) {
        for keys in ["", "cooldown = \"1d\""] {
            let adapter = layouts::configure(
                &pypi::LAYOUT,
                "https://pypi.upstream.test/",
                keys,
                pypi::Pypi::from_keys,
            )
            .unwrap();
            for e in adapter.project_entries("x", &page, 1_800_000_000).entries {
                let p = e.path.as_str();
                assert!(!p.starts_with('/') && !p.split('/').any(|c| c == ".." || c.is_empty()), "{p}");
                if p == "simple/x/index.v1_json" {
                    let Body::Inline(json) = &e.body else { panic!("{p} is generated") };
                    serde_json::from_slice::<serde_json::Value>(json).unwrap_or_else(|e| panic!("{p}: {e}"));
                }
            }
        }
    }
});
