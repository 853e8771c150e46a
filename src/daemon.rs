//! The mount daemon: one process per configuration. It takes the state
//! lock, mounts, serves FUSE on its own threads, syncs each mirror on its
//! interval, answers the control socket, and unmounts cleanly on SIGINT or
//! SIGTERM (lazily if the mount is busy, so no stale "Transport endpoint is
//! not connected" mount is ever left behind).

use std::fs::File;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config as FuseConfig, MountOption, SessionACL};

use crate::app::App;
use crate::config::Config;
use crate::fs::Fs;
use crate::fuse::{FuseFs, invalidator};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("state_dir {dir}: {what}")]
    Lock { dir: PathBuf, what: String },
    #[error("mountpoint {path}: {what}")]
    Mountpoint { path: PathBuf, what: String },
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    #[error("{0}")]
    Runtime(String),
}

/// An exclusive lock on a state directory, held for the life of a process.
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock or says who holds it.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, DaemonError> {
        let err = |what: String| DaemonError::Lock {
            dir: state_dir.to_owned(),
            what,
        };
        std::fs::create_dir_all(state_dir).map_err(|e| err(e.to_string()))?;
        let path = state_dir.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(err(format!(
                "in use by another regfs process (pid {}); stop it or give this one its own state_dir",
                holder.trim()
            )));
        }
        let _ = file.set_len(0);
        let _ = write!(file, "{}", std::process::id());
        Ok(StateLock { _file: file })
    }
}

/// Mount options given with `-o` (the `mount.fuse` convention).
#[derive(Debug, Default, Clone)]
pub struct MountOpts {
    pub extra: Vec<String>,
}

fn check_mountpoint(path: &Path) -> Result<PathBuf, DaemonError> {
    let err = |what: String| DaemonError::Mountpoint {
        path: path.to_owned(),
        what,
    };
    let abs = std::fs::canonicalize(path)
        .map_err(|e| err(format!("{e} (create the directory first)")))?;
    if !abs.is_dir() {
        return Err(err("is not a directory".into()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() > 4 && Path::new(&unescape_mountinfo(f[4])) == abs {
            let fstype = line
                .split(" - ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or("");
            if fstype.starts_with("fuse") && line.contains("regfs") {
                return Err(err(
                    "already has a regfs mounted on it; unmount it first".into()
                ));
            }
        }
    }
    Ok(abs)
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Runs the mount in the foreground until a signal or an external unmount.
pub fn run(config: Config, mountpoint: &Path, opts: MountOpts) -> Result<(), DaemonError> {
    let _lock = StateLock::acquire(&config.state_dir)?;
    let mountpoint = check_mountpoint(mountpoint)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8),
        )
        .thread_name("regfs-rt")
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Runtime(e.to_string()))?;
    let app = Arc::new(App::open(config)?);
    let fs = Fs::new(app.mirrors.clone(), app.store.clone(), app.fetcher.clone());
    let fuse = FuseFs::new(fs.clone(), rt.handle().clone());

    let mut options = vec![
        MountOption::RO,
        MountOption::FSName("regfs".into()),
        MountOption::Subtype("regfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    for o in &opts.extra {
        options.push(MountOption::CUSTOM(o.clone()));
    }
    let mut fuse_config = FuseConfig::default();
    fuse_config.mount_options = options;
    fuse_config.acl = SessionACL::All;
    fuse_config.n_threads = Some(
        std::thread::available_parallelism()
            .map_or(4, |n| n.get() * 2)
            .clamp(4, 16),
    );
    fuse_config.clone_fd = true;
    let mut session = fuser::Session::new(fuse, &mountpoint, &fuse_config).map_err(|e| {
        DaemonError::Mountpoint {
            path: mountpoint.clone(),
            what: format!("cannot mount: {e}"),
        }
    })?;
    let notifier = session.notifier();
    let inval = Arc::new(invalidator(notifier, rt.handle().clone()));
    for m in &app.mirrors {
        let inval = inval.clone();
        m.set_swap_hook(Box::new(move |i| inval(i)));
    }
    let mut unmounter = session.unmount_callable();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    let session_thread = std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || {
            if let Err(e) = session.run() {
                tracing::error!("FUSE session ended with an error: {e}");
            }
            let _ = ended_tx.send(());
        })
        .map_err(|e| DaemonError::Runtime(e.to_string()))?;
    tracing::info!(mountpoint = %mountpoint.display(), mirrors = app.mirrors.len(), "mounted");

    rt.block_on(async {
        for m in &app.mirrors {
            tokio::spawn(schedule(app.clone(), m.clone()));
        }
        let control = app.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::control::serve(control).await {
                tracing::error!("control socket stopped: {e}");
            }
        });
        if let Some(addr) = app.config.metrics_listen {
            let (app, ops) = (app.clone(), fs.ops.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::metrics::serve(addr, app, ops).await {
                    tracing::error!("metrics endpoint on {addr} stopped: {e}");
                }
            });
        }
        let flush = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                flush.mirrors.iter().for_each(|m| m.save_status());
            }
        });
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("signal handler");
        let mut int = signal(SignalKind::interrupt()).expect("signal handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: unmounting"),
            _ = int.recv() => tracing::info!("SIGINT: unmounting"),
            _ = ended_rx => tracing::info!("unmounted externally"),
        }
    });
    if let Err(e) = unmounter.unmount() {
        tracing::warn!("unmount failed ({e}); detaching lazily");
        lazy_unmount(&mountpoint);
    }
    for m in &app.mirrors {
        m.save_status();
    }
    let _ = std::fs::remove_file(crate::control::socket_path(&app.config.state_dir));
    // The session thread ends once the kernel drops the connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !session_thread.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    tracing::info!("stopped");
    Ok(())
}

fn lazy_unmount(mountpoint: &Path) {
    let Ok(c) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        tracing::error!(
            "lazy unmount of {} failed: {}",
            mountpoint.display(),
            std::io::Error::last_os_error()
        );
    }
}

/// Syncs a mirror now if it never synced or is due, then on its interval.
async fn schedule(app: Arc<App>, mirror: Arc<crate::mirror::Mirror>) {
    let interval = mirror.config.sync_interval;
    let seed = u64::from(mirror.slot) ^ std::process::id() as u64;
    let last = mirror.sync_record().last_sync;
    let since = crate::timestamp::now().saturating_sub(last);
    let mut wait = if last == 0 || mirror.current().number() == 0 {
        Duration::ZERO
    } else {
        interval.saturating_sub(Duration::from_secs(since))
    };
    let mut n = 0u64;
    loop {
        tokio::time::sleep(wait).await;
        let _ = mirror.sync(&app.fetcher).await;
        n += 1;
        wait = crate::mirror::jittered(interval, seed.wrapping_add(n));
    }
}
