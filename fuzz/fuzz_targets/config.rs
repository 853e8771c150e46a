//! The configuration file: any text gives a config or an error message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = regfs::config::Config::parse(std::path::Path::new("/fuzz.toml"), text);
});
