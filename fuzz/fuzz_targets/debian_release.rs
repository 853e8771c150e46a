//! Debian Release files (the text gpgv vouched for): no input may panic and
//! every listed path must stay relative.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let r = regfs::layouts::debian::parse_release(text);
    for f in &r.files {
        assert!(!f.path.as_str().split('/').any(|c| c == ".."));
    }
});
