//! The `regfs` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use regfs::config::Config;
use regfs::control::{self, Request};

#[derive(Parser)]
#[command(
    name = "regfs",
    version,
    about = "Mount package registries as a verified, lazily fetched, read-only filesystem"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mount every configured mirror under MOUNTPOINT (foreground; SIGINT/SIGTERM unmount).
    Mount {
        #[arg(long, short)]
        config: PathBuf,
        mountpoint: PathBuf,
        /// Extra FUSE mount options, comma separated.
        #[arg(short = 'o')]
        options: Option<String>,
    },
    /// Sync mirrors now (through the running mount if there is one).
    Sync {
        #[arg(long, short)]
        config: PathBuf,
        /// Mirror names (default: all).
        mirrors: Vec<String>,
    },
    /// Show each mirror's generation, last sync, cache and counters.
    Status {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Re-hash the cache against the catalogs; exit status 1 if anything was wrong.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
        /// Remove corrupt objects and objects no mirror owns.
        #[arg(long)]
        repair: bool,
        /// Mirrors whose metadata files to check too (default: all).
        mirrors: Vec<String>,
    },
    /// Download now the artifacts of MIRROR whose paths match GLOBs (default: all).
    Prefetch {
        #[arg(long, short)]
        config: PathBuf,
        mirror: String,
        globs: Vec<String>,
    },
    /// Evict least recently used artifacts down to a size.
    Gc {
        #[arg(long, short)]
        config: PathBuf,
        /// Target size such as "10GiB" (default: cache_max_size).
        #[arg(long)]
        max_size: Option<String>,
    },
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // REGFS_LOG_FORMAT=json: one JSON object a line, for log shippers.
    if std::env::var("REGFS_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("regfs: {e:#}");
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
            let config = Config::load(&config)?;
            let extra = options
                .map(|o| {
                    o.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            regfs::daemon::run(config, &mountpoint, regfs::daemon::MountOpts { extra })?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sync { config, mirrors } => {
            let config = Config::load(&config)?;
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
            mirrors,
        } => maintenance(
            &Config::load(&config)?,
            Request::Verify { mirrors, repair },
            "verify",
        ),
        Cmd::Prefetch {
            config,
            mirror,
            globs,
        } => maintenance(
            &Config::load(&config)?,
            Request::Prefetch { mirror, globs },
            "prefetch",
        ),
        Cmd::Gc { config, max_size } => {
            let max = match max_size {
                Some(s) => Some(regfs::config::parse_size(&s).with_context(|| {
                    format!("--max-size: expected a size such as \"10GiB\", got \"{s}\"")
                })?),
                None => None,
            };
            maintenance(&Config::load(&config)?, Request::Gc { max }, "gc")
        }
        Cmd::Status { config, json } => {
            let config = Config::load(&config)?;
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
            "{what}: {} checked ({} bytes), {} problems, {} actions",
            r.checked,
            r.bytes,
            r.problems.len(),
            r.actions.len()
        );
    }
    Ok(if resp.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Asks the running mount, or does the work here when none is running.
fn one_shot(config: &Config, req: Request) -> anyhow::Result<control::Response> {
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
    Ok(rt.block_on(control::handle(&app, req)))
}
