//! The `regfs` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use std::io::{IsTerminal, Read, Write};
use std::os::fd::FromRawFd;

use regfs::config::Config;
use regfs::control::{self, Request};
use regfs::daemon::MountOpts;
use regfs::redact::Redacting;

/// Where the configuration is unless `--config` or `$REGFS_CONFIG` says otherwise.
const DEFAULT_CONFIG: &str = "/etc/regfs/regfs.toml";

#[derive(Parser)]
#[command(
    name = "regfs",
    version,
    about = "Mount package registries as a verified, lazily fetched, read-only filesystem",
    long_about = "Mount package registries as a verified, lazily fetched, read-only filesystem.\n\n\
        Every mirror of the configuration appears under the mount point in its ecosystem's \
        layout; a file is fetched from upstream the first time it is read, verified against \
        the digest its metadata promised, and kept in a content-addressed cache. Export the \
        mount with nginx or rsyncd (see /usr/share/regfs/ or scripts/ in the source).",
    after_help = "The mount helper form, as mount(8) runs it for `mount -t fuse.regfs` and \
        /etc/fstab (Type=fuse.regfs in a systemd .mount unit):\n\n    \
        regfs CONFIG MOUNTPOINT [-o OPTIONS]\n\n\
        checks CONFIG, mounts in the background and returns once the mount is up. \
        OPTIONS as for `regfs mount -o`. The configuration is read from --config, \
        else $REGFS_CONFIG, else /etc/regfs/regfs.toml."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// The configuration file every subcommand reads.
#[derive(clap::Args)]
struct ConfigArg {
    /// The configuration file (TOML: global keys and one [[mirror]] table per mirror).
    #[arg(long, short, env = "REGFS_CONFIG", default_value = DEFAULT_CONFIG, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mount every configured mirror under MOUNTPOINT, in the foreground.
    ///
    /// Serves until SIGINT or SIGTERM (then unmounts, lazily if the mount is
    /// busy) or until the mount point is unmounted. SIGHUP re-reads the
    /// configuration: added mirrors appear, removed ones disappear, changed
    /// ones are reopened and synced, without unmounting. Logs go to stderr
    /// (RUST_LOG sets the level, REGFS_LOG_FORMAT=json one JSON object a line).
    Mount {
        #[command(flatten)]
        config: ConfigArg,
        /// An existing, empty directory; each mirror appears under it by name,
        /// beside `.regfs/status.json`.
        #[arg(value_name = "MOUNTPOINT")]
        mountpoint: PathBuf,
        /// Mount options, comma separated: `log=PATH` (write the log there instead of
        /// stderr) and the generic options mount(8) and fstab pass (defaults, noauto,
        /// nofail, _netdev, ro, nosuid, nodev, noexec, noatime, allow_other,
        /// x-systemd.*, comment=…); regfs is always read-only, nosuid and nodev.
        #[arg(short = 'o', value_name = "OPTIONS")]
        options: Option<String>,
    },
    /// Sync mirrors now: through the running mount if there is one (it serves the
    /// new generations at once), else directly on the state and cache directories.
    Sync {
        #[command(flatten)]
        config: ConfigArg,
        /// Mirror names (default: all).
        mirrors: Vec<String>,
    },
    /// Show each mirror's generation, last sync, cache use and counters.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON (the same as the mount's `.regfs/status.json`).
        #[arg(long)]
        json: bool,
    },
    /// Re-hash the cache against the catalogs; exit status 1 if anything was wrong.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// Remove corrupt objects and objects no mirror owns (a running mount stops
        /// serving them at once and fetches them again on the next read).
        #[arg(long)]
        repair: bool,
        /// Also re-hash every object of the shared store ([store.s3]), reading each
        /// whole; with --repair, delete the corrupt ones (re-uploaded on the next miss).
        #[arg(long)]
        bucket: bool,
        /// Mirrors whose metadata files to check too (default: all).
        mirrors: Vec<String>,
    },
    /// Download now the artifacts of MIRROR whose paths match GLOBs (default: all).
    Prefetch {
        #[command(flatten)]
        config: ConfigArg,
        /// The mirror's name.
        mirror: String,
        /// Shell-style patterns over mirror-relative paths (`packages/*`, `*.whl`).
        globs: Vec<String>,
    },
    /// Take, list and delete snapshots: named, pinned generations of a mirror, served
    /// read-only at MOUNTPOINT/MIRROR@NAME/ (see `regfs publish`).
    Snapshot {
        #[command(subcommand)]
        action: SnapshotCmd,
    },
    /// Make snapshot NAME what MOUNTPOINT/MIRROR/ serves, atomically, or with --follow
    /// serve the synced generation again (syncs go on while a snapshot is published).
    Publish {
        #[command(flatten)]
        config: ConfigArg,
        /// The mirror's name.
        mirror: String,
        /// The snapshot to serve (see `regfs snapshot list`).
        #[arg(required_unless_present = "follow", conflicts_with = "follow")]
        name: Option<String>,
        /// Serve what syncs bring again instead of a snapshot.
        #[arg(long)]
        follow: bool,
    },
    /// Print this program's manual page (roff), as the package installs it.
    #[command(hide = true)]
    Manpage,
    /// Evict least recently used artifacts down to a size.
    Gc {
        #[command(flatten)]
        config: ConfigArg,
        /// Target size such as "10GiB" (default: cache_max_size).
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
    },
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Pin MIRROR's current generation (catalog and metadata files) as snapshot NAME.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// The mirror's name.
        mirror: String,
        /// The snapshot's name: letters, digits, `.`, `_`, `-` (up to 64).
        name: String,
        /// Also keep every cached artifact the snapshot lists from eviction.
        #[arg(long)]
        with_artifacts: bool,
    },
    /// List the snapshots of MIRROR (default: of every mirror).
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// The mirror's name.
        mirror: Option<String>,
    },
    /// Delete snapshot NAME of MIRROR (refused while it is published).
    Delete {
        #[command(flatten)]
        config: ConfigArg,
        /// The mirror's name.
        mirror: String,
        /// The snapshot's name.
        name: String,
    },
}

/// `regfs SOURCE MOUNTPOINT [-o OPTIONS]`: how mount.fuse(8) runs a
/// filesystem for `mount -t fuse.regfs` and fstab. The config is checked in
/// the foreground; then the process forks, the child mounts and serves, and
/// the parent exits 0 once the mount is up (or 1 with the child's error).
fn mount_helper(args: &[String]) -> ExitCode {
    let mut pos = Vec::new();
    let mut opts = String::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => opts.push_str(&format!(",{}", it.next().map_or("", |s| s.as_str()))),
            o if o.starts_with("-o") => opts.push_str(&format!(",{}", &o[2..])),
            "-n" | "-f" | "-s" | "-v" => {}
            _ => pos.push(a.clone()),
        }
    }
    let fail = |e: String| {
        eprintln!("regfs: {e}");
        ExitCode::FAILURE
    };
    let [source, mountpoint] = pos.as_slice() else {
        return fail("usage: regfs CONFIG MOUNTPOINT [-o OPTIONS]  (or see `regfs --help`)".into());
    };
    let opts = match MountOpts::parse(&opts) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let config = match Config::load(std::path::Path::new(source)) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let mut fds = [0; 2];
    // SAFETY: pipe and fork before any thread exists in this process.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return fail(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    match unsafe { libc::fork() } {
        -1 => fail(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            unsafe {
                libc::close(fds[0]);
                libc::setsid();
            }
            // Detached: let go of the caller's terminal and pipes (mount's
            // output must reach EOF); logs go to log=PATH or syslog.
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                for fd in 0..3 {
                    unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
                }
            }
            let mut status = unsafe { std::fs::File::from_raw_fd(fds[1]) };
            init_logging(opts.log.as_deref(), true, "info");
            let ready: regfs::daemon::Ready = Box::new(move |r| {
                let msg = match r {
                    Ok(()) => "ok".to_string(),
                    Err(e) => e,
                };
                let _ = status.write_all(msg.as_bytes());
            });
            match regfs::daemon::run(config, std::path::Path::new(mountpoint), Some(ready)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        _child => {
            unsafe { libc::close(fds[1]) };
            let mut msg = String::new();
            let _ = unsafe { std::fs::File::from_raw_fd(fds[0]) }.read_to_string(&mut msg);
            match msg.as_str() {
                "ok" => ExitCode::SUCCESS,
                "" => fail("the mount process ended before mounting (see its log)".into()),
                e => fail(e.to_string()),
            }
        }
    }
}

/// One log event a datagram to the local syslog socket (journald listens
/// there); dropped when there is none.
struct Syslog;

impl Write for Syslog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        thread_local! {
            static SOCK: Option<std::os::unix::net::UnixDatagram> = std::os::unix::net::UnixDatagram::unbound().ok();
        }
        let msg = [
            format!("<30>regfs[{}]: ", std::process::id()).as_bytes(),
            buf.strip_suffix(b"\n").unwrap_or(buf),
        ]
        .concat();
        SOCK.with(|s| s.as_ref().map(|s| s.send_to(&msg, "/dev/log")));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs to stderr, to `log` when given, or, for a detached mount helper
/// without `log=`, to syslog.
fn init_logging(log: Option<&std::path::Path>, detached: bool, level: &str) {
    // fuser's session warns when its own unmount fails at the end, which
    // it always does after `umount` of the mount point (EINVAL: it is gone
    // already): a normal stop, not something to warn an operator about.
    // Its replies fail only when the kernel no longer waits for them (ENOENT:
    // the client was interrupted, ENODEV: the mount was detached while a
    // request ran), which it logs as an ERROR; the client has its answer
    // from the kernel either way.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},fuser::session=error,fuser::reply=off"))
    });
    let json = std::env::var("REGFS_LOG_FORMAT").is_ok_and(|f| f == "json");
    // Every line passes through redact(): no URL's userinfo reaches a log.
    let writer: Box<dyn Fn() -> Box<dyn Write> + Send + Sync> = match log {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => {
                let f = std::sync::Arc::new(f);
                Box::new(move || Box::new(Redacting(f.clone())) as Box<dyn Write>)
            }
            Err(e) => {
                eprintln!("regfs: log file {}: {e}", path.display());
                Box::new(|| Box::new(Redacting(std::io::stderr())) as Box<dyn Write>)
            }
        },
        None if detached => Box::new(|| Box::new(Redacting(Syslog)) as Box<dyn Write>),
        None => Box::new(|| Box::new(Redacting(std::io::stderr())) as Box<dyn Write>),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(log.is_none() && !detached && std::io::stderr().is_terminal())
        .with_target(false);
    // REGFS_LOG_FORMAT=json: one JSON object a line, for log shippers.
    if json {
        logs.json().init()
    } else {
        logs.init()
    }
}

/// glibc raises its mmap threshold each time a large block is freed, so the
/// big buffers of a sync (indexes, the catalog under construction) end up
/// in the heap, where freeing them does not return memory and what is left
/// fragments. A fixed threshold keeps every block over 256 KiB in its own
/// mapping, returned on free: `regfs sync` of Debian main amd64 peaked at
/// 55 MB with it (5 runs, 55.1–55.6) and at 62–76 MB without.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator tunable, before any thread
    // is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

fn main() -> ExitCode {
    fixed_mmap_threshold();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let commands = [
        "mount", "sync", "status", "verify", "prefetch", "gc", "snapshot", "publish", "manpage",
        "help",
    ];
    if args
        .first()
        .is_some_and(|a| !a.starts_with('-') && !commands.contains(&a.as_str()))
    {
        return mount_helper(&args);
    }
    let cli = Cli::parse();
    // `status` is a report: the INFO lines of opening the state are noise there.
    let quiet = matches!(cli.cmd, Cmd::Status { .. });
    init_logging(None, false, if quiet { "warn" } else { "info" });
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("regfs: {}", regfs::redact::redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Mount {
            config,
            mountpoint,
            options,
        } => {
            let config = Config::load(&config.config)?;
            MountOpts::parse(options.as_deref().unwrap_or("")).map_err(anyhow::Error::msg)?;
            regfs::daemon::run(config, &mountpoint, None)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sync { config, mirrors } => {
            let config = Config::load(&config.config)?;
            let resp = one_shot(&config, Request::Sync { mirrors })?;
            for r in &resp.reports {
                if r.changed {
                    println!(
                        "{}: generation {} ({} packages, {} files, {} ms)",
                        r.mirror, r.generation, r.units, r.files, r.duration_ms
                    );
                } else {
                    println!(
                        "{}: unchanged, generation {} ({} ms)",
                        r.mirror, r.generation, r.duration_ms
                    );
                }
                for m in &r.missing {
                    println!("{}: warning: {m} not found upstream", r.mirror);
                }
                for f in &r.failed {
                    eprintln!(
                        "regfs: {}: warning: {} kept its previous contents: {}",
                        r.mirror, f.unit, f.error
                    );
                }
            }
            for e in &resp.errors {
                eprintln!("regfs: sync failed: {e}");
            }
            Ok(if resp.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Verify {
            config,
            repair,
            bucket,
            mirrors,
        } => maintenance(
            &Config::load(&config.config)?,
            Request::Verify {
                mirrors,
                repair,
                bucket,
            },
            "verify",
        ),
        Cmd::Prefetch {
            config,
            mirror,
            globs,
        } => maintenance(
            &Config::load(&config.config)?,
            Request::Prefetch { mirror, globs },
            "prefetch",
        ),
        Cmd::Gc { config, max_size } => {
            let max = match max_size {
                Some(s) => Some(regfs::keys::parse_size(&s).with_context(|| {
                    format!("--max-size: expected a size such as \"10GiB\", got \"{s}\"")
                })?),
                None => None,
            };
            maintenance(&Config::load(&config.config)?, Request::Gc { max }, "gc")
        }
        Cmd::Snapshot { action } => snapshot(action),
        Cmd::Publish {
            config,
            mirror,
            name,
            follow: _,
        } => {
            let config = Config::load(&config.config)?;
            let what = match &name {
                Some(n) => format!("{mirror}: serving snapshot {n}"),
                None => format!("{mirror}: following upstream"),
            };
            let resp = one_shot(&config, Request::Publish { mirror, name })?;
            done(&resp, "publish", &what)
        }
        Cmd::Manpage => {
            use clap::CommandFactory;
            print!("{}", regfs::manpage::render(&Cli::command()));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { config, json } => {
            let config = Config::load(&config.config)?;
            let resp = one_shot(&config, Request::Status)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&resp.status)?);
            } else {
                print!("{}", regfs::status::render(&resp.status));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `regfs snapshot create|list|delete`.
fn snapshot(action: SnapshotCmd) -> anyhow::Result<ExitCode> {
    match action {
        SnapshotCmd::Create {
            config,
            mirror,
            name,
            with_artifacts,
        } => {
            let config = Config::load(&config.config)?;
            let req = Request::SnapshotCreate {
                mirror: mirror.clone(),
                name: name.clone(),
                with_artifacts,
            };
            let resp = one_shot(&config, req)?;
            let generation = resp.snapshots.first().map_or(0, |s| s.generation);
            let what = format!(
                "{mirror}: snapshot {name} of generation {generation}, served at {}/",
                regfs::mirror::snapshot_dir_name(&mirror, &name)
            );
            done(&resp, "snapshot create", &what)
        }
        SnapshotCmd::List { config, mirror } => {
            let config = Config::load(&config.config)?;
            let mirrors = mirror.into_iter().collect();
            let resp = one_shot(&config, Request::SnapshotList { mirrors })?;
            for s in &resp.snapshots {
                println!(
                    "{}\t{}\tgeneration {}\tcreated {}{}{}",
                    s.mirror,
                    s.name,
                    s.generation,
                    regfs::timestamp::format_rfc3339(s.created as i64),
                    if s.with_artifacts {
                        "\twith artifacts"
                    } else {
                        ""
                    },
                    if s.published { "\tpublished" } else { "" },
                );
            }
            done(&resp, "snapshot list", "")
        }
        SnapshotCmd::Delete {
            config,
            mirror,
            name,
        } => {
            let config = Config::load(&config.config)?;
            let what = format!("{mirror}: snapshot {name} deleted");
            let req = Request::SnapshotDelete { mirror, name };
            let resp = one_shot(&config, req)?;
            done(&resp, "snapshot delete", &what)
        }
    }
}

/// Prints `what` on success, else the errors; the exit status says which.
fn done(resp: &control::Response, cmd: &str, what: &str) -> anyhow::Result<ExitCode> {
    for e in &resp.errors {
        eprintln!("regfs: {cmd}: {e}");
    }
    if !resp.ok {
        return Ok(ExitCode::FAILURE);
    }
    if !what.is_empty() {
        println!("{what}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs verify/prefetch/gc and prints what it found and did.
fn maintenance(config: &Config, req: Request, what: &str) -> anyhow::Result<ExitCode> {
    let resp = one_shot(config, req)?;
    for e in &resp.errors {
        eprintln!("regfs: {what}: {e}");
    }
    if let Some(r) = &resp.report {
        for a in &r.actions {
            println!("{a}");
        }
        for p in &r.problems {
            println!("PROBLEM: {p}");
        }
        println!(
            "{what}: {} checked ({}), {}, {}",
            count(r.checked, "object", "objects"),
            count(r.bytes, "byte", "bytes"),
            count(r.problems.len() as u64, "problem", "problems"),
            count(r.actions.len() as u64, "change", "changes"),
        );
    }
    Ok(if resp.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `1 problem`, `2 problems`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Draws a progress line on stderr while `work` runs, if it is a terminal:
/// the running mount's activity, or this process's own.
fn with_progress<T>(config: &Config, work: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, state_dir) = (done.clone(), config.state_dir.clone());
    let painter = std::thread::spawn(move || {
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let tasks = match control::call(&state_dir, &Request::Status) {
                Some(Ok(r)) => r.activity,
                _ => regfs::progress::board().snapshot(),
            };
            let line: Vec<String> = tasks
                .iter()
                .map(|t| {
                    format!(
                        "{}{}",
                        t.mirror
                            .as_deref()
                            .map(|m| format!("{m}: "))
                            .unwrap_or_default(),
                        regfs::status::activity(t)
                    )
                })
                .collect();
            eprint!("\r\x1b[K{}", line.join("  |  "));
        }
        eprint!("\r\x1b[K");
    });
    let out = work();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = painter.join();
    out
}

/// Asks the running mount, or does the work here when none is running.
fn one_shot(config: &Config, req: Request) -> anyhow::Result<control::Response> {
    let shows_progress = matches!(
        req,
        Request::Sync { .. } | Request::Verify { .. } | Request::Prefetch { .. }
    );
    if shows_progress {
        with_progress(config, || one_shot_quiet(config, req))
    } else {
        one_shot_quiet(config, req)
    }
}

fn one_shot_quiet(config: &Config, req: Request) -> anyhow::Result<control::Response> {
    if let Some(resp) = control::call(&config.state_dir, &req) {
        return resp.context("talking to the running mount");
    }
    let _lock = match regfs::daemon::StateLock::acquire(&config.state_dir) {
        Ok(l) => l,
        Err(e) => bail!("{e} (and its control socket does not answer)"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let app = std::sync::Arc::new(regfs::app::App::open(config.clone())?);
    let resp = rt.block_on(control::handle(&app, req));
    app.store
        .close()
        .context("cache: recording a clean shutdown")?;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_option_and_argument_is_described_in_help() {
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            assert!(
                sub.get_about().is_some(),
                "{}: no description",
                sub.get_name()
            );
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "`regfs {} --help` does not describe {id}",
                    sub.get_name()
                );
            }
        }
        let mut top = Cli::command();
        let help = top.render_long_help().to_string();
        assert!(
            help.contains("regfs CONFIG MOUNTPOINT [-o OPTIONS]"),
            "{help}"
        );
    }

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count(1, "problem", "problems"), "1 problem");
        assert_eq!(count(0, "problem", "problems"), "0 problems");
    }
}
