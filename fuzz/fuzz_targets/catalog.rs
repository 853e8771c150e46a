//! Persisted catalog files: a corrupted tree (a unit's segment or a base)
//! or root must be refused, and a tree that loads must be walkable without
//! panics or out-of-bounds reads. The fuzzer can only get past the checksum
//! with a correct trailer, so the target seals its input first to reach the
//! structural validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regfs::catalog::{Kind, RootFile, Tree};

fuzz_target!(|data: &[u8]| {
    let _ = Tree::from_bytes(data.to_vec());
    let _ = RootFile::decode(data);
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(regfs::digest::Digest::sha256_of(data).as_bytes());
    let _ = RootFile::decode(&sealed);
    let Ok(t) = Tree::from_bytes(sealed) else { return };
    for id in 0..t.node_count() {
        let _ = (t.ino(id), t.name(id), t.mtime(id), t.path(id), t.parent(id));
        if t.kind(id) == Kind::Dir {
            for c in t.children(id) {
                let _ = t.lookup(id, &t.name(c).as_str());
            }
        } else {
            let _ = t.file(id);
        }
        // Trees without an inode index (segments) answer None.
        if let Some(n) = t.find_ino(t.ino(id)) {
            assert_eq!(t.ino(n), t.ino(id));
        }
    }
    let _ = t.label();
});
