//! Durable whole-file replacement for state files (catalogs, pointers,
//! status): write a temp file, `fsync` it, rename it over the target and
//! `fsync` the directory, so a crash leaves the old file or the new one.
//! State is regfs's own business: files are created `0600`, and
//! [`private_dir`] makes directories `0700`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and its parents) `0700`, or tightens it to `0700` if
/// group or others may enter it; returns the mode it had when it did.
pub fn private_dir(dir: &Path) -> io::Result<Option<u32>> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o700))?;
    Ok(Some(mode))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_unsynced_dir(path, bytes)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// [`write_atomic`] without the directory `fsync`: the file's bytes are on
/// disk, its name only once something syncs the directory (a caller
/// writing several files into one directory syncs it once, last).
pub fn write_unsynced_dir(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_renamed(path, bytes, true)
}

/// Writes `path` through a temp file and a rename, syncing nothing: the
/// caller makes it durable with [`sync_fs`] before anything durable names it
/// (one filesystem sync for many files).
pub fn write_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_renamed(path, bytes, false)
}

/// Flushes everything written to the filesystem holding `dir` (`syncfs`).
pub fn sync_fs(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&d)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn write_renamed(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes the names written into `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes temp files an interrupted [`write_atomic`] may have left in `dir`.
pub fn clean_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with('.') && n.ends_with(".tmp") {
            let _ = fs::remove_file(e.path());
        }
    }
}
