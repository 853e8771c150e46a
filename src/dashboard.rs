//! The status page an operator looks at: `.regfs/status.html` in the mount
//! (beside `status.json`) and `GET /` on `metrics_listen`. Plain HTML with
//! inline SVG plots and no script, refreshed by the browser every 30 s.
//! Per mirror: generation and last sync, artifacts listed and cached, the
//! hit ratio, bytes served from the cache against bytes fetched, upstream
//! errors, work in flight, and plots of the last hours (opens a minute,
//! cold-fetch time); the cache's size for the whole mount.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::fs::Report;
use crate::history::{History, Sample, fetch_latency, request_rate};
use crate::mirror::Mirror;
use crate::status::{MirrorStatus, human_bytes};
use crate::store::Store;

/// HTML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A small line plot of `points` (t, value), with its latest value and
/// maximum; `unit` formats values.
fn plot(title: &str, points: &[(u64, f64)], unit: &dyn Fn(f64) -> String) -> String {
    const W: f64 = 280.0;
    const H: f64 = 60.0;
    let mut out = format!(
        "<figure class=\"plot\"><figcaption>{}</figcaption>",
        esc(title)
    );
    if points.len() < 2 {
        let now = points.last().map_or("–".to_string(), |p| unit(p.1));
        let _ = write!(
            out,
            "<svg width=\"{W}\" height=\"{H}\" role=\"img\"><text x=\"8\" y=\"34\">collecting (now {now})</text></svg></figure>"
        );
        return out;
    }
    let (t0, t1) = (points[0].0, points[points.len() - 1].0.max(points[0].0 + 1));
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1e-9);
    let coords: Vec<String> = points
        .iter()
        .map(|(t, v)| {
            let x = (t - t0) as f64 / (t1 - t0) as f64 * (W - 2.0) + 1.0;
            let y = H - 2.0 - v / max * (H - 12.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let last = points[points.len() - 1].1;
    let _ = write!(
        out,
        "<svg width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{t}\"><polyline fill=\"none\" stroke=\"#2a6\" stroke-width=\"2\" points=\"{p}\"/><text x=\"4\" y=\"10\" class=\"max\">max {m}</text></svg><div class=\"now\">now {n} · over {span}</div></figure>",
        t = esc(title),
        p = coords.join(" "),
        m = unit(max),
        n = unit(last),
        span = span(t1 - t0),
    );
    out
}

/// `45 s`, `12 min`, `3.5 h`.
fn span(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{:.1} h", secs as f64 / 3600.0),
    }
}

fn when(secs: u64, now: u64) -> String {
    if secs == 0 {
        return "never".into();
    }
    let ago = now.saturating_sub(secs);
    let rel = match ago {
        0..=59 => format!("{ago} s ago"),
        60..=3599 => format!("{} min ago", ago / 60),
        _ => format!("{:.1} h ago", ago as f64 / 3600.0),
    };
    format!("{} ({rel})", crate::timestamp::format_rfc3339(secs as i64))
}

fn mirror(out: &mut String, s: &MirrorStatus, samples: &[Sample], now: u64) {
    let c = &s.counters;
    let opens = c.hits + c.misses;
    let ratio = if opens == 0 {
        "–".to_string()
    } else {
        format!("{:.1} %", c.hits as f64 * 100.0 / opens as f64)
    };
    let sync = if s.sync.last_sync == 0 {
        "<span class=\"warn\">never synced</span>".to_string()
    } else if s.sync.ok {
        format!("<span class=\"ok\">ok</span> ({})", esc(&s.sync.message))
    } else {
        format!(
            "<span class=\"bad\">FAILED</span>: {}",
            esc(&s.sync.message)
        )
    };
    let errors: u64 = c.upstream_errors.values().sum();
    let kinds = c
        .upstream_errors
        .iter()
        .map(|(k, v)| format!("{} {v}", esc(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = write!(
        out,
        "<section class=\"mirror\" id=\"mirror-{id}\"><h2>{name} <small>{layout}</small></h2><table>\
    <tr><th>generation</th><td>{gen} (built {built})</td></tr>\
    <tr><th>last sync</th><td>{sync}, {when}, {ms} ms</td></tr>\
    <tr><th>last success</th><td>{succ}</td></tr>\
    <tr><th>artifacts</th><td>{arts} listed, {cached} cached ({cb}){unverified}</td></tr>\
    <tr><th>hit ratio</th><td>{ratio} ({hits} hits, {misses} misses, {re} failed reads)</td></tr>\
    <tr><th>bytes</th><td>{served} served from the cache, {fetched} fetched from upstream</td></tr>\
    <tr><th>upstream</th><td>{fetches} fetches, {vf} verification failures, {errors} errors{kinds}</td></tr>\
    </table>",
        id = esc(&s.name),
        name = esc(&s.name),
        layout = esc(&s.layout),
        gen = s.generation,
        built = when(s.generation_built, now),
        when = when(s.sync.last_sync, now),
        ms = s.sync.duration_ms,
        succ = when(s.sync.last_success, now),
        arts = s.artifacts,
        cached = s.cached,
        cb = human_bytes(s.cached_bytes),
        unverified = if s.unverified > 0 {
            format!(
                ", <span class=\"warn\">{} files no digest covers</span>",
                s.unverified
            )
        } else {
            String::new()
        },
        hits = c.hits,
        misses = c.misses,
        re = c.read_errors,
        served = human_bytes(c.served_bytes),
        fetched = human_bytes(c.fetched_bytes),
        fetches = c.fetches,
        vf = c.verify_failures,
        kinds = if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({kinds})")
        },
    );
    for t in &s.activity {
        let _ = write!(
            out,
            "<p class=\"running\">running: {}</p>",
            esc(&crate::status::activity(t))
        );
    }
    // The current counters as the last point, so a fresh mount shows a line.
    let mut samples = samples.to_vec();
    samples.push(Sample {
        t: now.max(samples.last().map_or(0, |l| l.t + 1)),
        requests: opens,
        fetches: c.fetches,
        fetch_ms: c.fetch_ms,
    });
    out.push_str("<div class=\"plots\">");
    out.push_str(&plot("opens a minute", &request_rate(&samples), &|v| {
        format!("{v:.1}/min")
    }));
    out.push_str(&plot("cold-fetch time", &fetch_latency(&samples), &|v| {
        format!("{v:.0} ms")
    }));
    out.push_str("</div></section>");
}

/// The page for `list` (what `regfs status` reports) with the plots of `history`.
pub fn render(list: &[MirrorStatus], history: &History, cache_bytes: u64, now: u64) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>regfs status</title>\
<meta http-equiv=\"refresh\" content=\"30\"><meta name=\"viewport\" content=\"width=device-width\">\
<style>body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em}h2{font-size:1.15em;margin:.2em 0}h2 small{color:#777;font-weight:normal}\
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em 1em;margin:0 0 1em}\
table{border-collapse:collapse}th{text-align:left;color:#555;font-weight:normal;padding:1px 1.2em 1px 0}\
.ok{color:#2a6}.bad{color:#c22;font-weight:bold}.warn{color:#b70}\
.plots{display:flex;flex-wrap:wrap;gap:1.5em;margin-top:.6em}figure{margin:0}figcaption{color:#555}\
svg{background:#f4f7f4;border:1px solid #e2e8e2}svg text{font-size:11px;fill:#666}.now{color:#555;font-size:12px}\
</style></head><body><h1>regfs status</h1>",
    );
    let mut cache = history.cache();
    cache.push((now.max(cache.last().map_or(0, |l| l.0 + 1)), cache_bytes));
    let _ = write!(
        out,
        "<p>{} {}, cache {} · as of {} · this page refreshes every 30 s; the same in JSON: status.json</p>",
        list.len(),
        if list.len() == 1 { "mirror" } else { "mirrors" },
        human_bytes(cache_bytes),
        crate::timestamp::format_rfc3339(now as i64)
    );
    let points: Vec<(u64, f64)> = cache.iter().map(|(t, b)| (*t, *b as f64)).collect();
    out.push_str("<section><div class=\"plots\">");
    out.push_str(&plot("cache size", &points, &|v| human_bytes(v as u64)));
    out.push_str("</div></section>");
    for s in list {
        mirror(&mut out, s, &history.of(&s.name), now);
    }
    out.push_str("</body></html>\n");
    out
}

/// The mount's report files (`.regfs/status.json`, `status.html`), the
/// page's plots drawn from `history`.
pub fn reports(
    history: Arc<History>,
) -> impl Fn(&[Arc<Mirror>], &Store, Report) -> Vec<u8> + Send + Sync {
    move |mirrors, store, report| match report {
        Report::Json => crate::status::json(mirrors, store),
        Report::Html => {
            let list: Vec<_> = mirrors
                .iter()
                .map(|m| crate::status::collect(m, store))
                .collect();
            let now = crate::timestamp::now();
            render(&list, &history, store.usage().bytes, now).into_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_plots_drawn_from_two_points() {
        let h = History::default();
        for (t, requests) in [(940, 0), (1_000, 2)] {
            h.record(
                "m<1>",
                Sample {
                    t,
                    requests,
                    fetches: 0,
                    fetch_ms: 0,
                },
            );
        }
        let s = MirrorStatus {
            name: "m<1>".into(),
            layout: "pypi".into(),
            generation: 3,
            materialized: 0,
            generation_built: 900,
            sync: Default::default(),
            units: 1,
            artifacts: 10,
            cached: 2,
            cached_bytes: 2048,
            catalog_bytes: 100,
            counters: crate::stats::Snapshot {
                hits: 3,
                misses: 1,
                fetches: 1,
                fetch_ms: 40,
                ..Default::default()
            },
            activity: Vec::new(),
            unverified: 0,
            weak_digest: 0,
            tofu_pinned: 0,
            retained: 0,
            snapshots: Vec::new(),
            published: None,
            held: None,
        };
        let unverified = MirrorStatus {
            name: "gems".into(),
            unverified: 4,
            ..s.clone()
        };
        let page = render(&[s, unverified], &h, 4096, 1_060);
        assert!(page.contains("m&lt;1&gt;") && !page.contains("m<1>"));
        assert!(page.contains("75.0 %"), "the hit ratio");
        assert!(page.contains("<polyline"), "a plot from the sample and now");
        assert!(page.contains("never synced"));
        assert_eq!(
            page.matches("files no digest covers").count(),
            1,
            "said where a mirror serves files no digest covers, only there"
        );
        assert!(page.contains("4 files no digest covers"));
    }
}
