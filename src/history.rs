//! A few hours of each mirror's counters, sampled once a minute in memory,
//! for the plots of the status page (`dashboard.rs`). Nothing is persisted:
//! Prometheus (`metrics_listen`) is the place for long histories.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// How often the daemon takes a sample (`history_interval` sets another).
pub const EVERY: Duration = Duration::from_secs(60);

/// Samples kept per series: six hours at [`EVERY`].
pub const KEEP: usize = 360;

/// One mirror's counters at one time (all cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Unix seconds.
    pub t: u64,
    /// Opens of artifacts (cache hits and misses).
    pub requests: u64,
    pub fetches: u64,
    /// Milliseconds those fetches took.
    pub fetch_ms: u64,
}

/// The sampled series: one per mirror, and the cache's size.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    mirrors: HashMap<String, VecDeque<Sample>>,
    cache: VecDeque<(u64, u64)>,
}

fn push<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == KEEP {
        q.pop_front();
    }
    q.push_back(v);
}

impl History {
    /// Records one sample of `mirror`.
    pub fn record(&self, mirror: &str, s: Sample) {
        let mut inner = self.inner.lock().unwrap();
        push(inner.mirrors.entry(mirror.to_string()).or_default(), s);
    }

    /// Records the cache's size at `t`.
    pub fn record_cache(&self, t: u64, bytes: u64) {
        push(&mut self.inner.lock().unwrap().cache, (t, bytes));
    }

    /// A mirror's samples, oldest first.
    pub fn of(&self, mirror: &str) -> Vec<Sample> {
        let inner = self.inner.lock().unwrap();
        inner
            .mirrors
            .get(mirror)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The cache's size over time, oldest first.
    pub fn cache(&self) -> Vec<(u64, u64)> {
        self.inner.lock().unwrap().cache.iter().copied().collect()
    }

    /// Drops the series of mirrors no longer served.
    pub fn retain(&self, names: &[&str]) {
        self.inner
            .lock()
            .unwrap()
            .mirrors
            .retain(|n, _| names.contains(&n.as_str()));
    }
}

/// Opens per minute between consecutive samples: (t, rate).
pub fn request_rate(samples: &[Sample]) -> Vec<(u64, f64)> {
    samples
        .windows(2)
        .map(|w| {
            let dt = w[1].t.saturating_sub(w[0].t).max(1) as f64 / 60.0;
            (
                w[1].t,
                w[1].requests.saturating_sub(w[0].requests) as f64 / dt,
            )
        })
        .collect()
}

/// Mean cold-fetch time (ms) between consecutive samples that fetched anything.
pub fn fetch_latency(samples: &[Sample]) -> Vec<(u64, f64)> {
    samples
        .windows(2)
        .filter_map(|w| {
            let n = w[1].fetches.saturating_sub(w[0].fetches);
            (n > 0).then(|| {
                let ms = w[1].fetch_ms.saturating_sub(w[0].fetch_ms);
                (w[1].t, ms as f64 / n as f64)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_bounded_and_rates_are_per_minute() {
        let h = History::default();
        for i in 0..(KEEP as u64 + 10) {
            h.record(
                "m",
                Sample {
                    t: i * 60,
                    requests: i * 30,
                    fetches: i * 2,
                    fetch_ms: i * 100,
                },
            );
        }
        let s = h.of("m");
        assert_eq!(s.len(), KEEP, "the oldest samples go");
        assert_eq!(s[0].t, 600);
        assert!(
            request_rate(&s)
                .iter()
                .all(|(_, r)| (*r - 30.0).abs() < 1e-9)
        );
        assert!(
            fetch_latency(&s)
                .iter()
                .all(|(_, ms)| (*ms - 50.0).abs() < 1e-9)
        );
        h.retain(&[]);
        assert!(h.of("m").is_empty());
    }
}
