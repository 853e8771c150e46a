//! `cooldown` for signed layouts (Debian, RPM): a new upstream generation
//! (a new InRelease, a new repomd.xml) is adopted only once it has been seen
//! for the cooldown; the older signed generation is served meanwhile,
//! byte-identical, so nothing signed is ever rewritten.
//!
//! The generation is the set of every unit's signed document: one
//! fingerprint for the mirror, so suites signed together change together.
//! When upstream publishes again while one is held, the clock restarts for
//! the newest (what is adopted has always been public for the cooldown).
//! The served generation's `Valid-Until` overrides the delay: when it would
//! pass before the next sync, the new one is adopted so apt never finds the
//! mirror expired. What is held and since when lives in
//! `<mirror dir>/cooldown.json`, written atomically, so a restart neither
//! restarts the clock nor forgets what is served.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::layout::SeenRelease;

/// The persisted hold state of one mirror.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldState {
    /// Fingerprint of the generation served, once one was adopted with a
    /// cooldown configured.
    pub served: Option<String>,
    /// The earliest `Valid-Until` of the served generation's documents.
    pub served_valid_until: Option<i64>,
    /// The newer upstream generation being held back.
    pub pending: Option<Pending>,
}

/// An upstream generation not adopted yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub fingerprint: String,
    /// Unix seconds it was first seen.
    pub first_seen: u64,
    /// Unix seconds from which a sync adopts it.
    pub adopt_at: u64,
}

/// Why a sync adopts what upstream has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adopt {
    /// Nothing is served yet: the first sync adopts at once.
    Empty,
    /// Upstream's generation is the one served.
    Served,
    /// No generation was adopted under a cooldown yet (the key was just
    /// added): nothing records what is served, so this one is.
    Unrecorded,
    /// It has been seen for the cooldown.
    CooledDown,
    /// The served generation's `Valid-Until` passes before the next sync.
    Expiring,
}

/// What a sync does with upstream's generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Adopt(Adopt),
    /// Keep serving the current generation; adopt from `adopt_at`.
    Hold {
        first_seen: u64,
        adopt_at: u64,
    },
}

/// Upstream's generation: the fingerprint of every unit's signed
/// document, and the earliest `Valid-Until` among them.
pub fn fingerprint<'a>(
    seen: impl IntoIterator<Item = (&'a str, SeenRelease)>,
) -> (String, Option<i64>) {
    let mut seen: Vec<(&str, SeenRelease)> = seen.into_iter().collect();
    seen.sort_by(|a, b| a.0.cmp(b.0));
    let print = seen
        .iter()
        .map(|(u, s)| format!("{u}={}", s.digest))
        .collect::<Vec<_>>()
        .join(" ");
    let valid_until = seen.iter().filter_map(|(_, s)| s.valid_until).min();
    (print, valid_until)
}

/// Decides whether upstream's generation `upstream` (earliest
/// `Valid-Until` `valid_until`) is adopted at `now`, under a cooldown of
/// `cooldown` seconds with the next sync due in `next_sync` seconds, and
/// the state to persist after it.
pub fn decide(
    state: &HoldState,
    serving: bool,
    upstream: &str,
    valid_until: Option<i64>,
    cooldown: u64,
    next_sync: u64,
    now: u64,
) -> (Decision, HoldState) {
    let adopted = |why| {
        let next = HoldState {
            served: Some(upstream.to_string()),
            served_valid_until: valid_until,
            pending: None,
        };
        (Decision::Adopt(why), next)
    };
    if !serving {
        return adopted(Adopt::Empty);
    }
    match &state.served {
        None => return adopted(Adopt::Unrecorded),
        Some(s) if s == upstream => return adopted(Adopt::Served),
        Some(_) => {}
    }
    // The clock runs for the newest generation only.
    let first_seen = match &state.pending {
        Some(p) if p.fingerprint == upstream => p.first_seen,
        _ => now,
    };
    let adopt_at = first_seen.saturating_add(cooldown);
    if now >= adopt_at {
        return adopted(Adopt::CooledDown);
    }
    let expires_first = state
        .served_valid_until
        .is_some_and(|v| v <= now.saturating_add(next_sync) as i64);
    if expires_first {
        return adopted(Adopt::Expiring);
    }
    let next = HoldState {
        pending: Some(Pending {
            fingerprint: upstream.to_string(),
            first_seen,
            adopt_at,
        }),
        ..state.clone()
    };
    (
        Decision::Hold {
            first_seen,
            adopt_at,
        },
        next,
    )
}

/// The state file of the mirror whose directory is `dir`.
fn path(dir: &Path) -> std::path::PathBuf {
    dir.join("cooldown.json")
}

/// What a damaged record says is served: no upstream generation's
/// fingerprint, so whatever upstream has is held for the full cooldown.
const UNKNOWN: &str = "unknown: cooldown.json was damaged";

/// Reads the hold state (none yet: the default). A damaged file is
/// reported and read as "what is served is unknown": the next sync holds
/// upstream's generation for the whole cooldown from then (failing closed:
/// a cooldown is there to keep new releases out for a while). Deleting
/// the file instead adopts upstream's generation at the next sync, as
/// when the key is first set.
pub fn load(dir: &Path) -> HoldState {
    let p = path(dir);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::warn!(
                "{}: unreadable ({e}); upstream's generation is held for the whole cooldown from now (delete the file to adopt it at the next sync instead)",
                p.display()
            );
            HoldState {
                served: Some(UNKNOWN.to_string()),
                ..HoldState::default()
            }
        }),
        Err(_) => HoldState::default(),
    }
}

/// The generation held back now, as `status` shows it: read quietly (a
/// damaged file is reported by the next sync, which reads it with
/// [`load`]).
pub fn pending(dir: &Path) -> Option<Pending> {
    let bytes = std::fs::read(path(dir)).ok()?;
    serde_json::from_slice::<HoldState>(&bytes).ok()?.pending
}

/// Writes the hold state atomically.
pub fn save(dir: &Path, state: &HoldState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    crate::durable::write_atomic(&path(dir), &bytes)
}

#[cfg(test)]
mod tests;
