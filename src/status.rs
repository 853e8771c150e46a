//! What `regfs status` reports per mirror, gathered from the live daemon
//! or from the state directory, as a table or JSON.

use serde::{Deserialize, Serialize};

use crate::mirror::{Mirror, SyncRecord};
use crate::stats::Snapshot;
use crate::store::Store;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MirrorStatus {
    pub name: String,
    pub layout: String,
    /// Syncs that changed the tree.
    pub generation: u64,
    /// Units materialized by lookups (they change the tree without a sync).
    #[serde(default)]
    pub materialized: u64,
    /// Unix seconds the served generation was built.
    pub generation_built: u64,
    pub sync: SyncRecord,
    /// Packages (projects) in the tree.
    pub units: u64,
    /// Files fetched lazily from upstream.
    pub artifacts: u64,
    /// Of those, how many are in the cache, and their bytes.
    pub cached: u64,
    pub cached_bytes: u64,
    /// Memory the served catalog takes.
    pub catalog_bytes: u64,
    /// Files served as upstream sent them with no digest covering them
    /// (RubyGems' classic index, where configured).
    #[serde(default)]
    pub unverified: u64,
    /// Artifacts listed with a weak digest only (MD5, or none), served
    /// under `trust_on_first_use` as pinned on their first download.
    #[serde(default)]
    pub weak_digest: u64,
    /// Artifacts pinned on first use (the mirror's pins, see `crate::pins`).
    #[serde(default)]
    pub tofu_pinned: u64,
    /// Versions still listed although upstream removed them
    /// (`retain = "additive"`, while their artifacts are cached).
    #[serde(default)]
    pub retained: u64,
    /// Snapshots kept (`regfs snapshot create`), and the one `<mirror>/`
    /// serves instead of following upstream (`regfs publish`), if any.
    #[serde(default)]
    pub snapshots: Vec<String>,
    #[serde(default)]
    pub published: Option<String>,
    /// A new upstream generation the `cooldown` holds back (Debian, RPM):
    /// the older signed one is served until `adopt_at`.
    #[serde(default)]
    pub held: Option<crate::mirror::Held>,
    pub counters: Snapshot,
    /// Syncs and prefetches of this mirror in flight.
    #[serde(default)]
    pub activity: Vec<crate::progress::TaskSnapshot>,
}

pub fn collect(mirror: &Mirror, store: &Store) -> MirrorStatus {
    let g = mirror.current();
    let (mut artifacts, mut cached, mut cached_bytes) = (0, 0, 0);
    let mut weak_digest = 0;
    for id in g.files() {
        if let Some(digest) = g.remote_digest(id) {
            artifacts += 1;
            let object = match digest.algo().is_weak() {
                false => Some(digest),
                true => {
                    weak_digest += 1;
                    mirror.object_digest(&g.path(id), &digest)
                }
            };
            if let Some(size) = object.and_then(|d| store.size_of(&d)) {
                cached += 1;
                cached_bytes += size;
            }
        }
    }
    MirrorStatus {
        name: mirror.name().to_string(),
        layout: mirror.config.layout.name.to_string(),
        generation: g.number(),
        materialized: g.materialized(),
        generation_built: g.created(),
        sync: mirror.sync_record(),
        units: g.units().len() as u64,
        artifacts,
        cached,
        cached_bytes,
        catalog_bytes: g.byte_len() as u64,
        unverified: mirror.unverified(),
        weak_digest,
        tofu_pinned: mirror.pins.len() as u64,
        retained: mirror.retained_versions(),
        snapshots: mirror
            .snapshot_infos()
            .into_iter()
            .map(|i| i.name)
            .collect(),
        published: mirror.published_name(),
        held: mirror.held(),
        counters: mirror.counters.snapshot(),
        activity: crate::progress::board()
            .snapshot()
            .into_iter()
            .filter(|t| t.mirror.as_deref() == Some(mirror.name()))
            .collect(),
    }
}

/// `.regfs/status.json` in the mount: what `regfs status --json` prints.
pub fn json(mirrors: &[std::sync::Arc<Mirror>], store: &Store) -> Vec<u8> {
    let list: Vec<_> = mirrors.iter().map(|m| collect(m, store)).collect();
    let mut json = serde_json::to_vec_pretty(&list).unwrap_or_default();
    json.push(b'\n');
    json
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn when(secs: u64) -> String {
    if secs == 0 {
        "never".into()
    } else {
        crate::timestamp::format_rfc3339(secs as i64)
    }
}

/// `prefetch 120/500 (30.0 MiB, 2 failed)`.
pub fn activity(t: &crate::progress::TaskSnapshot) -> String {
    let failed = if t.failed > 0 {
        format!(", {} failed", t.failed)
    } else {
        String::new()
    };
    let bytes = if t.bytes > 0 {
        format!(" ({}{failed})", human_bytes(t.bytes))
    } else if failed.is_empty() {
        String::new()
    } else {
        format!(" ({})", &failed[2..])
    };
    format!("{} {}/{}{bytes}", t.what, t.done, t.total)
}

/// A human-readable report, one block per mirror.
pub fn render(list: &[MirrorStatus]) -> String {
    let mut out = String::new();
    for s in list {
        let c = &s.counters;
        let errors: u64 = c.upstream_errors.values().sum();
        let result = if s.sync.last_sync == 0 {
            "never synced".to_string()
        } else if s.sync.ok {
            format!("ok ({})", s.sync.message)
        } else {
            format!("FAILED: {}", s.sync.message)
        };
        let materialized = if s.materialized > 0 {
            format!(", {} units materialized by lookups", s.materialized)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{name} ({layout})\n  generation     {gen}{materialized} (built {built})\n  last sync      {last}, {ms} ms: {result}\n  last success   {succ}\n  packages       {units}\n  artifacts      {arts} listed, {cached} cached ({cb})\n  reads          {hits} hits, {misses} misses, {re} failed\n  upstream       {fetches} fetched ({fb}), {vf} verification failures, {errors} errors{kinds}\n  catalog        {cat}\n",
            name = s.name,
            layout = s.layout,
            gen = s.generation,
            built = when(s.generation_built),
            last = when(s.sync.last_sync),
            ms = s.sync.duration_ms,
            succ = when(s.sync.last_success),
            units = s.units,
            arts = s.artifacts,
            cached = s.cached,
            cb = human_bytes(s.cached_bytes),
            hits = c.hits,
            misses = c.misses,
            re = c.read_errors,
            fetches = c.fetches,
            fb = human_bytes(c.fetched_bytes),
            vf = c.verify_failures,
            kinds = if c.upstream_errors.is_empty() { String::new() } else { format!(" ({})", c.upstream_errors.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")) },
            cat = human_bytes(s.catalog_bytes),
        ));
        if s.unverified > 0 {
            out.push_str(&format!(
                "  no digest      {} files served as upstream sent them\n",
                s.unverified
            ));
        }
        if s.weak_digest > 0 || s.tofu_pinned > 0 {
            out.push_str(&format!(
                "  first use      {} artifacts with a weak digest or none, {} pinned (trust_on_first_use)\n",
                s.weak_digest, s.tofu_pinned
            ));
        }
        if s.retained > 0 {
            out.push_str(&format!(
                "  retained       {} versions removed upstream, still listed while cached (retain = \"additive\")\n",
                s.retained
            ));
        }
        if let Some(p) = &s.published {
            out.push_str(&format!(
                "  published      snapshot {p} is served at {}/ (syncs go on underneath; `regfs publish {} --follow` returns to them)\n",
                s.name, s.name
            ));
        }
        if let Some(h) = s.held {
            out.push_str(&format!(
                "  held           a new upstream generation, first seen {}, adopted at the first sync after {} (cooldown)\n",
                crate::timestamp::format_rfc3339(h.first_seen as i64),
                crate::timestamp::format_rfc3339(h.adopt_at as i64)
            ));
        }
        if !s.snapshots.is_empty() {
            out.push_str(&format!("  snapshots      {}\n", s.snapshots.join(", ")));
        }
        for f in &s.sync.failed {
            out.push_str(&format!("  kept previous  {f}\n"));
        }
        for t in &s.activity {
            out.push_str(&format!("  running        {}\n", activity(t)));
        }
    }
    out
}
