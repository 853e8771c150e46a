//! Persisted generations: a corrupted catalog file must be refused, and one
//! that loads must be walkable without panics or out-of-bounds reads. The
//! fuzzer can only get past the checksum with a correct trailer, so the
//! target seals its input first to reach the structural validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regfs::catalog::{Generation, Kind};

fuzz_target!(|data: &[u8]| {
    let _ = Generation::from_bytes(data.to_vec());
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(regfs::digest::Digest::sha256_of(data).as_bytes());
    let Ok(g) = Generation::from_bytes(sealed) else { return };
    for id in 0..g.node_count() {
        let _ = (g.ino(id), g.name(id), g.mtime(id), g.path(id));
        if g.kind(id) == Kind::Dir {
            for c in g.children(id) {
                let _ = g.lookup(id, g.name(c));
            }
        } else {
            let _ = g.file(id);
        }
        assert_eq!(g.find_ino(g.ino(id)).map(|n| g.ino(n)), Some(g.ino(id)));
    }
    let _ = g.units().count();
});
