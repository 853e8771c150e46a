//! Per-mirror counters: what `status` and the metrics endpoint report.
//! Updated lock-free on the read path; snapshotted for output.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

#[derive(Default, Debug)]
pub struct Counters {
    /// Opens of artifacts already in the cache.
    hits: AtomicU64,
    /// Opens of artifacts that had to be fetched, by the open itself or by
    /// the `stat` before it (sizeless metadata, invariant 8).
    misses: AtomicU64,
    /// Artifacts a `stat` fetched that no open has counted yet.
    fetched_by_stat: FetchedByStat,
    /// Completed, verified downloads and their bytes.
    fetches: AtomicU64,
    fetched_bytes: AtomicU64,
    /// Time those downloads took, in milliseconds (for the cold-fetch latency).
    fetch_ms: AtomicU64,
    /// Bytes of the artifacts opened from the cache (what the cache spared
    /// upstream, as far as opens tell: passthrough reads bypass regfs).
    served_bytes: AtomicU64,
    /// Bodies that did not match the promised digest or size.
    verify_failures: AtomicU64,
    /// Reads answered with EIO.
    read_errors: AtomicU64,
    /// Upstream failures by kind (status, timeout, connect, verify, …).
    upstream_errors: Mutex<BTreeMap<&'static str, u64>>,
}

/// Digests fetched by a `stat` and not opened since, at most 10,000 for at
/// most an hour (a `stat` without a read is no read to count).
struct FetchedByStat(moka::sync::Cache<Digest, ()>);

impl Default for FetchedByStat {
    fn default() -> FetchedByStat {
        FetchedByStat(
            moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(std::time::Duration::from_secs(3600))
                .build(),
        )
    }
}

impl std::fmt::Debug for FetchedByStat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FetchedByStat({})", self.0.entry_count())
    }
}

/// A point-in-time copy of [`Counters`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    pub hits: u64,
    pub misses: u64,
    pub fetches: u64,
    pub fetched_bytes: u64,
    #[serde(default)]
    pub fetch_ms: u64,
    #[serde(default)]
    pub served_bytes: u64,
    pub verify_failures: u64,
    pub read_errors: u64,
    pub upstream_errors: BTreeMap<String, u64>,
}

impl Counters {
    pub fn hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }

    pub fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }

    /// A `stat` had to fetch `digest` to learn its size.
    pub fn fetched_by_stat(&self, digest: &Digest) {
        self.fetched_by_stat.0.insert(digest.clone(), ());
    }

    /// An open found `digest` in the cache: a hit, unless it is there
    /// because the `stat` before this read fetched it.
    pub fn opened_cached(&self, digest: &Digest) {
        if self.fetched_by_stat.0.remove(digest).is_some() {
            self.miss();
        } else {
            self.hit();
        }
    }

    /// An open had to wait for `digest`'s download (started by a `stat`
    /// or by this open): one miss, counted once.
    pub fn opened_uncached(&self, digest: &Digest) {
        self.fetched_by_stat.0.remove(digest);
        self.miss();
    }

    pub fn add_fetch(&self, bytes: u64, ms: u64) {
        self.fetches.fetch_add(1, Relaxed);
        self.fetched_bytes.fetch_add(bytes, Relaxed);
        self.fetch_ms.fetch_add(ms, Relaxed);
    }

    /// An artifact of `bytes` opened from the cache.
    pub fn served(&self, bytes: u64) {
        self.served_bytes.fetch_add(bytes, Relaxed);
    }

    pub fn verify_failure(&self) {
        self.verify_failures.fetch_add(1, Relaxed);
    }

    pub fn read_error(&self) {
        self.read_errors.fetch_add(1, Relaxed);
    }

    pub fn upstream_error(&self, kind: &'static str) {
        *self
            .upstream_errors
            .lock()
            .unwrap()
            .entry(kind)
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            fetches: self.fetches.load(Relaxed),
            fetched_bytes: self.fetched_bytes.load(Relaxed),
            fetch_ms: self.fetch_ms.load(Relaxed),
            served_bytes: self.served_bytes.load(Relaxed),
            verify_failures: self.verify_failures.load(Relaxed),
            read_errors: self.read_errors.load(Relaxed),
            upstream_errors: self
                .upstream_errors
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }

    /// Continues counting from a persisted snapshot (after a restart).
    pub fn restore(&self, s: &Snapshot) {
        self.hits.store(s.hits, Relaxed);
        self.misses.store(s.misses, Relaxed);
        self.fetches.store(s.fetches, Relaxed);
        self.fetched_bytes.store(s.fetched_bytes, Relaxed);
        self.fetch_ms.store(s.fetch_ms, Relaxed);
        self.served_bytes.store(s.served_bytes, Relaxed);
        self.verify_failures.store(s.verify_failures, Relaxed);
        self.read_errors.store(s.read_errors, Relaxed);
        let mut m = self.upstream_errors.lock().unwrap();
        for (k, v) in &s.upstream_errors {
            if let Some(kind) = KINDS.iter().find(|x| **x == k.as_str()) {
                m.insert(kind, *v);
            }
        }
    }
}

/// Every upstream error kind (see `FetchError::kind`).
const KINDS: &[&str] = &[
    "status",
    "timeout",
    "connect",
    "transport",
    "stalled",
    "verify",
    "too_large",
    "not_found",
    "store",
];

/// Filesystem operations served, by kind (all mirrors).
#[derive(Default, Debug)]
pub struct OpCounters {
    pub lookup: AtomicU64,
    pub getattr: AtomicU64,
    pub readdir: AtomicU64,
    pub open: AtomicU64,
    pub read: AtomicU64,
}

impl OpCounters {
    pub fn count(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
}
