//! The mount daemon: one process per configuration. It takes the state
//! lock, mounts, serves FUSE on its own threads, syncs each mirror on its
//! interval, answers the control socket, and unmounts cleanly on SIGINT or
//! SIGTERM (lazily if the mount is busy, so no stale "Transport endpoint is
//! not connected" mount is ever left behind).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config as FuseConfig, MountOption, SessionACL};

use std::collections::HashMap;

use crate::app::App;
use crate::catalog::{Invalidations, ROOT_INO};
use crate::config::{Config, Download};
use crate::fs::Fs;
use crate::fuse::{FuseFs, invalidator};
use crate::mirror::Mirror;

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
    _lock: crate::lock::DirLock,
}

impl StateLock {
    /// Takes the lock or says who holds it.
    /// The directory is made private (`0700`) first: catalogs, validators
    /// and status are no other user's business.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, DaemonError> {
        let err = |what: String| DaemonError::Lock {
            dir: state_dir.to_owned(),
            what,
        };
        match crate::durable::private_dir(state_dir) {
            Ok(Some(was)) => tracing::info!(
                state_dir = %state_dir.display(),
                "made the state directory private (mode {was:04o} to 0700)"
            ),
            Ok(None) => {}
            Err(e) => return Err(err(e.to_string())),
        }
        let lock = crate::lock::DirLock::acquire(state_dir, "state_dir").map_err(err)?;
        Ok(StateLock { _lock: lock })
    }
}

/// Mount options given with `-o` (the `mount.fuse` convention).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOpts {
    /// Write logs here instead of stderr (`-o log=/var/log/regfs.log`).
    pub log: Option<PathBuf>,
}

/// Options mount(8) and fstab use that concern mount(8) itself or that
/// regfs always applies (it is always read-only, nosuid, nodev).
const GENERIC_OPTIONS: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "nofail",
    "_netdev",
    "user",
    "users",
    "owner",
    "group",
    "rw",
    "ro",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "async",
    "sync",
    "allow_other",
    "default_permissions",
    "silent",
    "loud",
];

impl MountOpts {
    /// Parses a comma-separated `-o` list; unknown options are errors.
    pub fn parse(list: &str) -> Result<MountOpts, String> {
        let mut opts = MountOpts::default();
        for o in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if let Some(path) = o.strip_prefix("log=") {
                opts.log = Some(PathBuf::from(path));
            } else if !(GENERIC_OPTIONS.contains(&o)
                || o.starts_with("x-")
                || o.starts_with("comment=")
                || o.starts_with("subtype=")
                || o.starts_with("fsname="))
            {
                return Err(format!(
                    "unknown mount option `{o}` (regfs takes log=PATH and the generic mount options)"
                ));
            }
        }
        Ok(opts)
    }
}

/// Tells whoever started the mount that it is ready (or why it failed):
/// the parent of a `mount.fuse` helper through a pipe, systemd through
/// `NOTIFY_SOCKET`.
pub type Ready = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Sends `READY=1` to systemd when running as a `Type=notify` service.
pub fn notify_systemd() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(b"READY=1", &a))
    } else {
        sock.send_to(b"READY=1", &path)
    };
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

fn check_mountpoint(path: &Path, config: &Path) -> Result<PathBuf, DaemonError> {
    let err = |what: String| DaemonError::Mountpoint {
        path: path.to_owned(),
        what,
    };
    let given = std::env::current_dir()
        .map(|d| d.join(path))
        .unwrap_or_else(|_| path.to_owned());
    if let Some(line) = regfs_mount_at(&given) {
        // Mounted from this very config while we hold its state lock: the regfs
        // that mounted it is dead (kill -9, OOM) and left its mount behind.
        let source = line
            .split(" - ")
            .nth(1)
            .and_then(|r| r.split(' ').nth(1))
            .map(unescape_mountinfo);
        if source.as_deref() != Some(&*config.display().to_string()) {
            return Err(err(format!(
                "already has a regfs mounted on it (from {}); unmount it first",
                source.unwrap_or_default()
            )));
        }
        tracing::warn!(mountpoint = %given.display(), "clearing the stale mount of a regfs that died");
        lazy_unmount(&given);
    }
    let abs = std::fs::canonicalize(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTCONN) => {
            err("a dead FUSE filesystem is mounted here; unmount it with `fusermount3 -uz`".into())
        }
        _ => err(format!("{e} (create the directory first)")),
    })?;
    if !abs.is_dir() {
        return Err(err("is not a directory".into()));
    }
    if regfs_mount_at(&abs).is_some() {
        return Err(err(
            "already has a regfs mounted on it; unmount it first".into()
        ));
    }
    Ok(abs)
}

/// The mountinfo line of a regfs mount at `path`, if there is one.
fn regfs_mount_at(path: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts
        .lines()
        .find(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let fstype = line
                .split(" - ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or("");
            f.len() > 4
                && Path::new(&unescape_mountinfo(f[4])) == path
                && fstype.starts_with("fuse")
                && line.contains("regfs")
        })
        .map(str::to_string)
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Runs the mount in the foreground until a signal or an external unmount.
pub fn run(config: Config, mountpoint: &Path, ready: Option<Ready>) -> Result<(), DaemonError> {
    let mut ready = ready;
    let result = serve(config, mountpoint, &mut ready);
    if let (Some(r), Err(e)) = (ready.take(), &result) {
        r(Err(e.to_string()));
    }
    result
}

/// Raises the open-file limit to its hard maximum (every open handle of a
/// cached file, every kept passthrough id and every download holds a
/// descriptor); returns the limit now in force.
fn raise_fd_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 1024;
        }
        if l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    l.rlim_cur
}

fn serve(config: Config, mountpoint: &Path, ready: &mut Option<Ready>) -> Result<(), DaemonError> {
    let _lock = StateLock::acquire(&config.state_dir)?;
    let fd_limit = raise_fd_limit();
    let mountpoint = check_mountpoint(mountpoint, &config.path)?;
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
    let history = Arc::new(crate::history::History::default());
    let fs = Fs::new(
        app.mirrors(),
        app.store.clone(),
        app.fetcher.clone(),
        Box::new(crate::dashboard::reports(history.clone())),
    );
    let fuse = FuseFs::new(
        fs.clone(),
        rt.handle().clone(),
        crate::fuse::idle_ids(fd_limit),
    );

    let options = vec![
        MountOption::RO,
        MountOption::FSName(app.config.path.display().to_string()),
        MountOption::Subtype("regfs".into()),
        // fuser mounts as plain `fuse`; the kernel takes the subtype as a parameter.
        MountOption::CUSTOM("subtype=regfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    let mut fuse_config = FuseConfig::default();
    fuse_config.mount_options = options;
    fuse_config.acl = SessionACL::All;
    fuse_config.n_threads = Some(
        std::thread::available_parallelism()
            .map_or(4, |n| n.get() * 2)
            .clamp(4, 16),
    );
    fuse_config.clone_fd = true;
    // The control socket is up before anyone is told the mount is ready.
    let control_listener = {
        let _rt = rt.enter();
        crate::control::bind(&app.config.state_dir).map_err(|e| {
            DaemonError::Runtime(format!(
                "cannot create the control socket {}: {e}",
                crate::control::socket_path(&app.config.state_dir).display()
            ))
        })?
    };
    // Signals are caught before the mount exists: a SIGTERM that arrives
    // while the daemon is still starting (the mount already answering)
    // must unmount, not kill the process and leave the mount behind.
    let (mut term, mut int, mut hup) = {
        use tokio::signal::unix::{SignalKind, signal};
        let _rt = rt.enter();
        let catch = |kind: SignalKind| {
            signal(kind).map_err(|e| DaemonError::Runtime(format!("cannot catch signals: {e}")))
        };
        (
            catch(SignalKind::terminate())?,
            catch(SignalKind::interrupt())?,
            catch(SignalKind::hangup())?,
        )
    };
    let mut session = fuser::Session::new(fuse, &mountpoint, &fuse_config).map_err(|e| {
        DaemonError::Mountpoint {
            path: mountpoint.clone(),
            what: format!("cannot mount: {e}"),
        }
    })?;
    let inval: Invalidator = Arc::new(invalidator(session.notifier(), rt.handle().clone()));
    let mut unmounter = session.unmount_callable();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    let session_thread = std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || {
            match session.run() {
                Ok(()) => {}
                // The kernel closed the connection: a lazy detach (ours, on a
                // busy mount, or `umount -l`) once its last file closed.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
                    tracing::info!("the kernel closed the FUSE connection (the mount was detached)")
                }
                Err(e) => tracing::error!("FUSE session ended with an error: {e}"),
            }
            let _ = ended_tx.send(());
        })
        .map_err(|e| DaemonError::Runtime(e.to_string()))?;
    tracing::info!(mountpoint = %mountpoint.display(), mirrors = app.mirrors().len(), "mounted");
    notify_systemd();
    if let Some(r) = ready.take() {
        r(Ok(()));
    }

    rt.block_on(async {
        let mut mirrors = Supervisor {
            app: app.clone(),
            fs: fs.clone(),
            inval,
            tasks: HashMap::new(),
        };
        for m in app.mirrors() {
            mirrors.start(m, false);
        }
        let control = app.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::control::serve(control, control_listener).await {
                tracing::error!("control socket stopped: {e}");
            }
        });
        if let Some(addr) = app.config.metrics_listen {
            let (app, ops, history) = (app.clone(), fs.ops.clone(), history.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::metrics::serve(addr, app, ops, history).await {
                    tracing::error!("metrics endpoint on {addr} stopped: {e}");
                }
            });
        }
        // The artifact store's durability: a checkpoint every few seconds.
        let store = app.store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let s = store.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.checkpoint()).await {
                    tracing::error!("cache checkpoint failed: {e}");
                }
            }
        });
        let flush = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                flush.mirrors().iter().for_each(|m| m.save_status());
            }
        });
        // The status page's plots: a sample of every mirror once a minute.
        let (sampled, history) = (app.clone(), history.clone());
        tokio::spawn(async move {
            loop {
                let now = crate::timestamp::now();
                let mirrors = sampled.mirrors();
                for m in &mirrors {
                    let c = m.counters.snapshot();
                    history.record(
                        m.name(),
                        crate::history::Sample {
                            t: now,
                            requests: c.hits + c.misses,
                            fetches: c.fetches,
                            fetch_ms: c.fetch_ms,
                        },
                    );
                }
                history.record_cache(now, sampled.store.usage().bytes);
                history.retain(&mirrors.iter().map(|m| m.name()).collect::<Vec<_>>());
                tokio::time::sleep(sampled.config.history_interval).await;
            }
        });
        let mut ended_rx = ended_rx;
        loop {
            tokio::select! {
                _ = term.recv() => break tracing::info!("SIGTERM: unmounting"),
                _ = int.recv() => break tracing::info!("SIGINT: unmounting"),
                _ = &mut ended_rx => break tracing::info!("unmounted externally"),
                _ = hup.recv() => mirrors.reload().await,
            }
        }
    });
    if let Err(e) = unmounter.unmount() {
        // An exporter still holds files open (nginx's open_file_cache keeps
        // them for minutes): detach now; the mount goes when they close.
        tracing::info!(
            "the mount is busy ({e}): detached lazily, it goes away once the last open file is closed (stop the exporter first to avoid this)"
        );
        lazy_unmount(&mountpoint);
    }
    for m in app.mirrors() {
        m.save_status();
    }
    if let Err(e) = app.store.close() {
        tracing::error!("cache: cannot record a clean shutdown: {e}");
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

type Invalidator = Arc<dyn Fn(Invalidations) -> crate::mirror::InvalidationsSent + Send + Sync>;

/// The mirrors being served and their sync schedules; applies a reloaded
/// configuration without unmounting.
struct Supervisor {
    app: Arc<App>,
    fs: Arc<Fs>,
    inval: Invalidator,
    /// Each mirror's schedule (and immediate-download prefetcher).
    tasks: HashMap<String, Vec<tokio::task::AbortHandle>>,
}

impl Supervisor {
    fn start(&mut self, m: Arc<Mirror>, sync_now: bool) {
        let inval = self.inval.clone();
        m.set_swap_hook(Box::new(move |i| inval(i)));
        let run = match self.app.config.role {
            crate::config::Role::Follower => tokio::spawn(follow(self.app.clone(), m.clone())),
            _ => tokio::spawn(schedule(self.app.clone(), m.clone(), sync_now)),
        };
        let mut handles = vec![run.abort_handle()];
        if m.config.download == Download::Immediate {
            handles.push(
                tokio::spawn(prefetch_each_generation(self.app.clone(), m.clone())).abort_handle(),
            );
        }
        self.tasks.insert(m.name().to_string(), handles);
    }

    /// SIGHUP: re-reads the configuration file. Added mirrors appear, removed
    /// ones disappear, changed ones are reopened and synced; a bad file is
    /// reported and changes nothing.
    async fn reload(&mut self) {
        let path = self.app.config.path.clone();
        let new = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => return tracing::error!("SIGHUP: keeping the running configuration: {e}"),
        };
        let old = &self.app.config;
        for w in &new.warnings {
            tracing::warn!("SIGHUP: {}: {w}", path.display());
        }
        if (
            &new.cache_dir,
            &new.state_dir,
            new.cache_max_size,
            &new.fetch,
            new.metrics_listen,
            &new.credentials,
            new.history_interval,
            (new.role, new.follow_interval),
        ) != (
            &old.cache_dir,
            &old.state_dir,
            old.cache_max_size,
            &old.fetch,
            old.metrics_listen,
            &old.credentials,
            old.history_interval,
            (old.role, old.follow_interval),
        ) {
            tracing::warn!(
                "SIGHUP: global settings changed; they take effect at the next restart (mirror changes apply now)"
            );
        }
        let current = self.app.mirrors();
        let mut next = Vec::new();
        let mut touched = Vec::new();
        for cfg in &new.mirrors {
            match current.iter().find(|m| m.name() == cfg.name) {
                Some(m) if m.config == *cfg => next.push(m.clone()),
                existing => {
                    if let Some(m) = existing {
                        self.stop(m).await;
                    }
                    match self.app.open_mirror(cfg) {
                        Ok(m) => {
                            tracing::info!(mirror = %cfg.name, "SIGHUP: {}", if existing.is_some() { "mirror changed" } else { "mirror added" });
                            self.start(m.clone(), true);
                            next.push(m);
                            touched.push(cfg.name.clone());
                        }
                        Err(e) => {
                            tracing::error!(mirror = %cfg.name, "SIGHUP: cannot open mirror: {e}")
                        }
                    }
                }
            }
        }
        for m in current
            .iter()
            .filter(|m| !new.mirrors.iter().any(|c| c.name == m.name()))
        {
            tracing::info!(mirror = %m.name(), "SIGHUP: mirror removed");
            self.stop(m).await;
            m.save_status();
            touched.push(m.name().to_string());
        }
        self.app.set_mirrors(next.clone());
        self.fs.set_mirrors(next);
        (self.inval)(Invalidations {
            inodes: vec![ROOT_INO],
            entries: touched.into_iter().map(|n| (ROOT_INO, n)).collect(),
        });
    }

    /// Stops a mirror's schedule and waits for a sync in flight to finish.
    async fn stop(&mut self, m: &Arc<Mirror>) {
        for t in self.tasks.remove(m.name()).into_iter().flatten() {
            t.abort();
        }
        m.wait_idle().await;
    }
}

/// `download = "immediate"`: fetches every artifact of the served
/// generation, a few at a time, then again after each swap (Pulp's
/// immediate policy). Progress shows in `status`.
async fn prefetch_each_generation(app: Arc<App>, mirror: Arc<Mirror>) {
    loop {
        let swapped = mirror.swapped.notified();
        tokio::pin!(swapped);
        swapped.as_mut().enable();
        let r = crate::maintenance::prefetch(&app, &mirror, &[]).await;
        tracing::info!(mirror = %mirror.name(), artifacts = r.checked, fetched = r.actions.len(), failed = r.problems.len(), "immediate download pass done");
        swapped.await;
    }
}

/// Syncs a mirror now if asked, never synced or due, then on its interval.
async fn schedule(app: Arc<App>, mirror: Arc<crate::mirror::Mirror>, sync_now: bool) {
    let interval = mirror.config.sync_interval;
    let seed = u64::from(mirror.slot) ^ std::process::id() as u64;
    let last = mirror.sync_record().last_sync;
    let since = crate::timestamp::now().saturating_sub(last);
    let mut wait = if sync_now || last == 0 || mirror.current().number() == 0 {
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

/// A follower's mirror: looks at the syncer's pointer every
/// `follow_interval` and adopts each newer generation; while the bucket or
/// the syncer is down it keeps serving what it has (one WARN when that
/// starts, one INFO when it ends).
async fn follow(app: Arc<App>, mirror: Arc<crate::mirror::Mirror>) {
    use crate::mirror::Followed;
    let Some(shared) = app.fetcher.shared().cloned() else {
        return;
    };
    let mut failing = false;
    let mut told = None;
    loop {
        match mirror.follow_once(&shared).await {
            Ok(f) => {
                if std::mem::take(&mut failing) {
                    tracing::info!(mirror = %mirror.name(), "following the syncer again");
                }
                match f {
                    Followed::NothingPublished if told != Some(0) => {
                        told = Some(0);
                        tracing::info!(mirror = %mirror.name(), pointer = %shared.describe_pointer(mirror.name()), "following: no generation published yet; serving generation {}", mirror.current().number());
                    }
                    Followed::Older(n) if told != Some(n) => {
                        told = Some(n);
                        tracing::warn!(mirror = %mirror.name(), "following: the syncer's pointer names generation {n}, older than the {} served here; not going back (a syncer with fresh state? it is adopted once it passes)", mirror.current().number());
                    }
                    _ => {}
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(mirror = %mirror.name(), "{e}; serving generation {} until a new one can be adopted, trying every {}s", mirror.current().number(), app.config.follow_interval.as_secs());
                }
            }
        }
        tokio::time::sleep(app.config.follow_interval).await;
    }
}
