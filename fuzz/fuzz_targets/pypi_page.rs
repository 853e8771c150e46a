//! PyPI project pages and listings (PEP 503 HTML, PEP 691 JSON), and the
//! entries and rewritten pages made from them: no input may panic, and no
//! entry may carry a path that escapes the mirror.
#![no_main]

use libfuzzer_sys::fuzz_target;
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
        let adapter = layouts::configure(
            &pypi::LAYOUT,
            "https://pypi.upstream.test/",
            "cooldown = \"1d\"",
            pypi::Pypi::from_keys,
        )
        .unwrap();
        for e in adapter.project_entries("x", &page, 1_800_000_000).entries {
            let p = e.path.as_str();
            assert!(!p.starts_with('/') && !p.split('/').any(|c| c == ".." || c.is_empty()), "{p}");
        }
    }
});
