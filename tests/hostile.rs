//! A hostile upstream and a hostile neighbourhood: bodies that trickle or
//! never end, a cache disk that fills up, compression nobody asked for,
//! credentials that must not leak, a second instance on the same cache,
//! and clients that flood the log. Each test is the regression test of a
//! finding of an adversarial pass; it failed before the fix.

mod support;

use std::path::{Path, PathBuf};

use support::upstream::Upstream;
use support::{Mount, config, pypi, pypi_mirror, run, scratch, sha256_hex};

const ALL: &str = r#"projects = ["alpha", "Beta_Pkg", "gamma"]"#;

/// A tmpfs of `size` mounted on `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success());
        Tmpfs(dir.to_owned())
    }

    /// Bytes in use on it (deleted files still held open count).
    fn used(&self) -> u64 {
        let c = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn read_hash(p: PathBuf) -> String {
    sha256_hex(&std::fs::read(p).unwrap())
}

#[test]
fn eviction_gives_back_the_disk_space_of_what_it_evicts() {
    // Files read twice keep passthrough backing ids (and their cache files)
    // open for reuse after the last close. An eviction must close exactly
    // those of what it evicted, or the disk space never comes back.
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("evict-space");
    let cache = Tmpfs::mount(&dir.join("cache"), "16m");
    let cfg = config(&dir, "", &pypi_mirror("pypi", &up.url(), ALL));
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let wheels = ["gamma-0.1-py3-none-any.whl", "gamma-0.2-py3-none-any.whl"];
    for name in wheels {
        let f = fx.file(name);
        for _ in 0..2 {
            assert_eq!(read_hash(m.path(&format!("pypi/{}", f.path))), f.sha256);
        }
    }
    assert!(
        m.log().contains("passthrough=true"),
        "this test needs FUSE passthrough (kernel 6.9+); log:\n{}",
        m.log()
    );
    let held = cache.used();
    assert!(held > 6 << 20, "both wheels are on the disk: {held}");
    let out = run(&cfg, &["gc", "--max-size", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.wait_for(
        || cache.used() < 1 << 20,
        "the evicted wheels' disk space to come back",
    );
    // Evicted, not broken: both read again, fetched anew.
    for name in wheels {
        let f = fx.file(name);
        assert_eq!(read_hash(m.path(&format!("pypi/{}", f.path))), f.sha256);
        assert_eq!(up.hits(&f.path), 2, "{name}");
    }
}
