//! Exclusive locks on the directories one regfs instance owns: its
//! `state_dir` (generations, the control socket) and its `cache_dir` (a
//! second instance on the same cache would clear the first one's downloads
//! in progress at its start, and `verify --repair` would remove the first
//! one's artifacts as owned by no mirror it knows). Taken by the mount
//! daemon and by every one-shot command that opens them itself; held for
//! the life of the process (`flock`, released by the kernel at exit, so a
//! crash never leaves a stale lock).

use std::fs::File;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// A held lock.
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir` (creating it) through `dir/lock`, which then holds our
    /// pid; or says which pid holds it. `key` names the setting (`cache_dir`).
    pub fn acquire(dir: &Path, key: &str) -> Result<DirLock, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let path = dir.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(format!(
                "in use by another regfs process (pid {}); stop it or give this one its own {key}",
                holder.trim()
            ));
        }
        let _ = file.set_len(0);
        let _ = write!(file, "{}", std::process::id());
        Ok(DirLock { _file: file })
    }
}
