//! The Prometheus text endpoint (opt-in `metrics_listen`), and every metric
//! name in one place. Values come from the same counters `status` shows.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::App;

pub const FUSE_REQUESTS: &str = "regfs_fuse_requests_total";
pub const READS: &str = "regfs_opens_total";
pub const FETCHES: &str = "regfs_fetches_total";
pub const FETCHED_BYTES: &str = "regfs_fetched_bytes_total";
pub const FETCH_SECONDS: &str = "regfs_fetch_seconds_total";
pub const SERVED_BYTES: &str = "regfs_served_bytes_total";
pub const VERIFY_FAILURES: &str = "regfs_verify_failures_total";
pub const UPSTREAM_ERRORS: &str = "regfs_upstream_errors_total";
pub const SYNC_DURATION: &str = "regfs_last_sync_duration_seconds";
pub const SYNC_SUCCESS: &str = "regfs_last_sync_success";
pub const SYNC_TIME: &str = "regfs_last_sync_timestamp_seconds";
pub const GENERATION: &str = "regfs_generation";
pub const CATALOG_FILES: &str = "regfs_catalog_files";
pub const WEAK_DIGEST_FILES: &str = "regfs_weak_digest_files";
pub const TOFU_PINNED: &str = "regfs_tofu_pinned";
pub const RETAINED_VERSIONS: &str = "regfs_retained_versions";
pub const COOLDOWN_HELD_UNTIL: &str = "regfs_cooldown_held_until_timestamp_seconds";
pub const CACHE_BYTES: &str = "regfs_cache_bytes";
pub const CACHE_OBJECTS: &str = "regfs_cache_objects";
pub const SHARED_READS: &str = "regfs_shared_store_reads_total";
pub const SHARED_READ_BYTES: &str = "regfs_shared_store_read_bytes_total";
pub const SHARED_UPLOADS: &str = "regfs_shared_store_uploads_total";
pub const SHARED_UPLOAD_BYTES: &str = "regfs_shared_store_uploaded_bytes_total";
pub const SHARED_ERRORS: &str = "regfs_shared_store_errors_total";
pub const SHARED_UP: &str = "regfs_shared_store_up";
pub const SHARED_QUEUED: &str = "regfs_shared_store_upload_queue";

/// Renders every metric in the Prometheus text format.
pub fn render(app: &App, fuse: Option<&crate::stats::OpCounters>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    if let Some(f) = fuse {
        let ops = [
            ("lookup", &f.lookup),
            ("getattr", &f.getattr),
            ("readdir", &f.readdir),
            ("open", &f.open),
            ("read", &f.read),
        ];
        let s: Vec<_> = ops
            .iter()
            .map(|(op, c)| (format!("{{op=\"{op}\"}}"), c.load(Relaxed) as f64))
            .collect();
        family(
            FUSE_REQUESTS,
            "counter",
            "FUSE requests served, by operation (passthrough reads bypass regfs).",
            &s,
        );
    }
    let statuses: Vec<_> = app
        .mirrors()
        .iter()
        .map(|m| crate::status::collect(m, &app.store))
        .collect();
    let per = |f: &dyn Fn(&crate::status::MirrorStatus) -> f64| -> Vec<(String, f64)> {
        statuses
            .iter()
            .map(|s| (format!("{{mirror=\"{}\"}}", s.name), f(s)))
            .collect()
    };
    let mut opens = Vec::new();
    let mut errors = Vec::new();
    for s in &statuses {
        for (result, v) in [
            ("hit", s.counters.hits),
            ("miss", s.counters.misses),
            ("error", s.counters.read_errors),
        ] {
            opens.push((
                format!("{{mirror=\"{}\",result=\"{result}\"}}", s.name),
                v as f64,
            ));
        }
        for (kind, v) in &s.counters.upstream_errors {
            errors.push((
                format!("{{mirror=\"{}\",kind=\"{kind}\"}}", s.name),
                *v as f64,
            ));
        }
    }
    family(
        READS,
        "counter",
        "Opens of artifacts: served from the cache (hit), fetched first (miss), failed (error).",
        &opens,
    );
    family(
        FETCHES,
        "counter",
        "Artifacts downloaded and verified.",
        &per(&|s| s.counters.fetches as f64),
    );
    family(
        FETCHED_BYTES,
        "counter",
        "Bytes of verified downloads.",
        &per(&|s| s.counters.fetched_bytes as f64),
    );
    family(
        FETCH_SECONDS,
        "counter",
        "Time the verified downloads took (with regfs_fetches_total: the mean cold-fetch time).",
        &per(&|s| s.counters.fetch_ms as f64 / 1000.0),
    );
    family(
        SERVED_BYTES,
        "counter",
        "Bytes of artifacts opened from the cache.",
        &per(&|s| s.counters.served_bytes as f64),
    );
    family(
        VERIFY_FAILURES,
        "counter",
        "Downloads refused because they did not match the promised digest or size.",
        &per(&|s| s.counters.verify_failures as f64),
    );
    family(
        UPSTREAM_ERRORS,
        "counter",
        "Failed upstream downloads by kind.",
        &errors,
    );
    family(
        SYNC_DURATION,
        "gauge",
        "Duration of the last sync.",
        &per(&|s| s.sync.duration_ms as f64 / 1000.0),
    );
    family(
        SYNC_SUCCESS,
        "gauge",
        "1 if the last sync succeeded.",
        &per(&|s| f64::from(u8::from(s.sync.ok))),
    );
    family(
        SYNC_TIME,
        "gauge",
        "Unix time the last sync finished.",
        &per(&|s| s.sync.last_sync as f64),
    );
    family(
        GENERATION,
        "gauge",
        "Generation being served.",
        &per(&|s| s.generation as f64),
    );
    family(
        CATALOG_FILES,
        "gauge",
        "Artifacts listed in the served generation.",
        &per(&|s| s.artifacts as f64),
    );
    family(
        WEAK_DIGEST_FILES,
        "gauge",
        "Artifacts listed whose metadata gives only a weak digest (MD5) or none (trust_on_first_use).",
        &per(&|s| s.weak_digest as f64),
    );
    family(
        TOFU_PINNED,
        "gauge",
        "Artifacts pinned to the SHA-256 of their first download (trust_on_first_use).",
        &per(&|s| s.tofu_pinned as f64),
    );
    family(
        RETAINED_VERSIONS,
        "gauge",
        "Versions removed upstream still listed because their artifacts are cached (retain = \"additive\").",
        &per(&|s| s.retained as f64),
    );
    family(
        COOLDOWN_HELD_UNTIL,
        "gauge",
        "When the new upstream generation a cooldown holds back is adopted (Unix seconds; 0: none held; Debian and RPM).",
        &per(&|s| s.held.map_or(0.0, |h| h.adopt_at as f64)),
    );
    let usage = app.store.usage();
    family(
        CACHE_BYTES,
        "gauge",
        "Bytes in the artifact cache.",
        &[(String::new(), usage.bytes as f64)],
    );
    family(
        CACHE_OBJECTS,
        "gauge",
        "Objects in the artifact cache.",
        &[(String::new(), usage.objects as f64)],
    );
    if let Some(shared) = app.fetcher.shared() {
        let c = shared.counters();
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed) as f64;
        let one = |v: f64| [(String::new(), v)];
        let by = |label: &str, s: &[(&str, f64)]| -> Vec<(String, f64)> {
            s.iter()
                .map(|(k, v)| (format!("{{{label}=\"{k}\"}}"), *v))
                .collect()
        };
        family(
            SHARED_READS,
            "counter",
            "Objects asked of the shared store: hit (read and verified), miss (not there), corrupt (not served, deleted).",
            &by(
                "result",
                &[
                    ("hit", n(&c.hits)),
                    ("miss", n(&c.misses)),
                    ("corrupt", n(&c.corrupt)),
                ],
            ),
        );
        family(
            SHARED_READ_BYTES,
            "counter",
            "Verified bytes read from the shared store.",
            &one(n(&c.hit_bytes)),
        );
        family(
            SHARED_UPLOADS,
            "counter",
            "Objects this node put in the shared store: created, or exists (there already, or another writer's first).",
            &by(
                "result",
                &[("created", n(&c.uploads)), ("exists", n(&c.upload_exists))],
            ),
        );
        family(
            SHARED_UPLOAD_BYTES,
            "counter",
            "Bytes of the objects this node created in the shared store.",
            &one(n(&c.upload_bytes)),
        );
        family(
            SHARED_ERRORS,
            "counter",
            "Shared store requests that failed (outages, refusals).",
            &one(n(&c.errors)),
        );
        family(
            SHARED_UP,
            "gauge",
            "1 while the shared store answers, 0 from an outage until it answers again.",
            &one(if shared.is_up() { 1.0 } else { 0.0 }),
        );
        family(
            SHARED_QUEUED,
            "gauge",
            "Uploads to the shared store waiting or running.",
            &one(shared.queued() as f64),
        );
    }
    out
}

/// Serves `GET /metrics` on `addr` until the runtime stops.
pub async fn serve(
    addr: std::net::SocketAddr,
    app: Arc<App>,
    fuse: Arc<crate::stats::OpCounters>,
    history: Arc<crate::history::History>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics");
    loop {
        let (mut conn, _) = listener.accept().await?;
        let (app, fuse, history) = (app.clone(), fuse.clone(), history.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, ctype, body) = if req.starts_with("GET /metrics ") {
                (
                    "200 OK",
                    "text/plain; version=0.0.4",
                    render(&app, Some(&fuse)),
                )
            } else if req.starts_with("GET / ") || req.starts_with("GET /status ") {
                let list: Vec<_> = app
                    .mirrors()
                    .iter()
                    .map(|m| crate::status::collect(m, &app.store))
                    .collect();
                let now = crate::timestamp::now();
                let page = crate::dashboard::render(&list, &history, app.store.usage().bytes, now);
                ("200 OK", "text/html; charset=utf-8", page)
            } else {
                (
                    "404 Not Found",
                    "text/plain",
                    "see / (the status page) and /metrics\n".to_string(),
                )
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    /// Every metric the shipped Grafana dashboard plots is one regfs exports.
    #[test]
    fn the_grafana_dashboard_names_only_metrics_regfs_exports() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/grafana/regfs-dashboard.json"
        );
        let dash: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).expect("valid JSON");
        let known = [
            super::FUSE_REQUESTS,
            super::READS,
            super::FETCHES,
            super::FETCHED_BYTES,
            super::FETCH_SECONDS,
            super::SERVED_BYTES,
            super::VERIFY_FAILURES,
            super::UPSTREAM_ERRORS,
            super::SYNC_DURATION,
            super::SYNC_SUCCESS,
            super::SYNC_TIME,
            super::GENERATION,
            super::CATALOG_FILES,
            super::CACHE_BYTES,
            super::CACHE_OBJECTS,
        ];
        let mut used = std::collections::HashSet::new();
        for p in dash["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                for (i, _) in expr.match_indices("regfs_") {
                    let name: String = expr[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(known.contains(&name.as_str()), "{name} in {expr}");
                    used.insert(name);
                }
            }
        }
        for k in known {
            assert!(used.contains(k), "the dashboard plots {k}");
        }
    }
}
