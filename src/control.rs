//! The control socket (`<state_dir>/regfs.sock`): how `regfs sync`,
//! `status`, `snapshot` and `publish` reach a running mount, so that a sync run from the
//! command line is served by the mount the moment it completes. One JSON
//! request line, one JSON response line; the socket is root-only.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::app::App;
use crate::mirror::SyncReport;
use crate::status::MirrorStatus;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Sync {
        mirrors: Vec<String>,
    },
    Status,
    Verify {
        mirrors: Vec<String>,
        repair: bool,
        /// Re-hash the shared store's objects too.
        #[serde(default)]
        bucket: bool,
    },
    Prefetch {
        mirror: String,
        globs: Vec<String>,
    },
    Gc {
        max: Option<u64>,
    },
    SnapshotCreate {
        mirror: String,
        name: String,
        with_artifacts: bool,
    },
    SnapshotList {
        mirrors: Vec<String>,
    },
    SnapshotDelete {
        mirror: String,
        name: String,
    },
    /// `name: None` follows upstream again.
    Publish {
        mirror: String,
        name: Option<String>,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default)]
    pub errors: Vec<String>,
    #[serde(default)]
    pub reports: Vec<SyncReport>,
    #[serde(default)]
    pub status: Vec<MirrorStatus>,
    #[serde(default)]
    pub report: Option<crate::maintenance::Report>,
    /// Work in flight (with `status`).
    #[serde(default)]
    pub activity: Vec<crate::progress::TaskSnapshot>,
    /// Snapshots (with `snapshot_*`).
    #[serde(default)]
    pub snapshots: Vec<crate::mirror::SnapshotInfo>,
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("regfs.sock")
}

/// Runs `req` against the opened app (in the daemon, or one-shot).
pub async fn handle(app: &Arc<App>, req: Request) -> Response {
    match req {
        Request::Status => Response {
            ok: true,
            status: app
                .mirrors()
                .iter()
                .map(|m| crate::status::collect(m, &app.store))
                .collect(),
            activity: crate::progress::board().snapshot(),
            ..Response::default()
        },
        Request::Verify {
            mirrors,
            repair,
            bucket,
        } => match app.select(&mirrors) {
            Ok(selected) => {
                let mut r = crate::maintenance::verify(app, &selected, repair).await;
                if bucket {
                    crate::maintenance::verify_bucket(app, repair, &mut r).await;
                }
                report(r)
            }
            Err(e) => failed(e.to_string()),
        },
        Request::Prefetch { mirror, globs } => match app.select(std::slice::from_ref(&mirror)) {
            Ok(selected) => report(crate::maintenance::prefetch(app, &selected[0], &globs).await),
            Err(e) => failed(e.to_string()),
        },
        Request::SnapshotCreate {
            mirror,
            name,
            with_artifacts,
        } => match app.select(std::slice::from_ref(&mirror)) {
            Ok(m) => match m[0]
                .create_snapshot(&name, with_artifacts, &app.store)
                .await
            {
                Ok(info) => {
                    m[0].invalidations_sent().await;
                    snapshots(vec![info])
                }
                Err(e) => failed(e.to_string()),
            },
            Err(e) => failed(e.to_string()),
        },
        Request::SnapshotList { mirrors } => match app.select(&mirrors) {
            Ok(ms) => snapshots(ms.iter().flat_map(|m| m.snapshot_infos()).collect()),
            Err(e) => failed(e.to_string()),
        },
        Request::SnapshotDelete { mirror, name } => {
            match app.select(std::slice::from_ref(&mirror)) {
                Ok(m) => match m[0].delete_snapshot(&name, &app.store).await {
                    Ok(()) => {
                        m[0].invalidations_sent().await;
                        snapshots(Vec::new())
                    }
                    Err(e) => failed(e.to_string()),
                },
                Err(e) => failed(e.to_string()),
            }
        }
        Request::Publish { mirror, name } => match app.select(std::slice::from_ref(&mirror)) {
            Ok(m) => match m[0].publish(name.as_deref()).await {
                Ok(()) => {
                    m[0].invalidations_sent().await;
                    snapshots(m[0].snapshot_infos())
                }
                Err(e) => failed(e.to_string()),
            },
            Err(e) => failed(e.to_string()),
        },
        Request::Gc { max } => {
            let mut r = crate::maintenance::gc(app, max);
            crate::maintenance::gc_bucket(app, &mut r).await;
            report(r)
        }
        Request::Sync { mirrors } => {
            let selected = match app.select(&mirrors) {
                Ok(s) => s,
                Err(e) => {
                    return Response {
                        ok: false,
                        errors: vec![e.to_string()],
                        ..Response::default()
                    };
                }
            };
            let runs = selected.into_iter().map(|m| {
                let fetcher = app.fetcher.clone();
                tokio::spawn(async move {
                    let r = m.sync(&fetcher).await;
                    m.invalidations_sent().await;
                    r
                })
            });
            let mut resp = Response {
                ok: true,
                ..Response::default()
            };
            for r in futures_util::future::join_all(runs).await {
                match r {
                    Ok(Ok(report)) => resp.reports.push(report),
                    Ok(Err(e)) => {
                        resp.ok = false;
                        resp.errors
                            .push(crate::redact::redact(&e.to_string()).into_owned());
                    }
                    Err(e) => {
                        resp.ok = false;
                        resp.errors.push(format!("sync task failed: {e}"));
                    }
                }
            }
            resp
        }
    }
}

fn report(r: crate::maintenance::Report) -> Response {
    Response {
        ok: r.problems.is_empty(),
        report: Some(r),
        ..Response::default()
    }
}

fn snapshots(snapshots: Vec<crate::mirror::SnapshotInfo>) -> Response {
    Response {
        ok: true,
        snapshots,
        ..Response::default()
    }
}

fn failed(e: String) -> Response {
    Response {
        ok: false,
        errors: vec![e],
        ..Response::default()
    }
}

/// Binds the control socket (call within the runtime, before announcing
/// readiness: a `regfs status` right after the mount must find it).
pub fn bind(state_dir: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let path = socket_path(state_dir);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the control socket until the runtime shuts down.
pub async fn serve(app: Arc<App>, listener: tokio::net::UnixListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut line = String::new();
            if tokio::io::BufReader::new(rd)
                .read_line(&mut line)
                .await
                .is_err()
            {
                return;
            }
            let resp = match serde_json::from_str::<Request>(&line) {
                Ok(req) => handle(&app, req).await,
                Err(e) => Response {
                    ok: false,
                    errors: vec![format!("bad control request: {e}")],
                    ..Response::default()
                },
            };
            let mut out = serde_json::to_vec(&resp).unwrap_or_default();
            out.push(b'\n');
            let _ = wr.write_all(&out).await;
        });
    }
}

/// Sends `req` to a running mount; `None` if no mount is listening.
pub fn call(state_dir: &Path, req: &Request) -> Option<std::io::Result<Response>> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket_path(state_dir)).ok()?;
    let mut run = || -> std::io::Result<Response> {
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        stream.write_all(&line)?;
        let mut resp = String::new();
        BufReader::new(&stream).read_line(&mut resp)?;
        serde_json::from_str(&resp).map_err(std::io::Error::other)
    };
    Some(run())
}
