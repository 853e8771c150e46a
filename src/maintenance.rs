//! Upkeep an operator runs by hand (or from a timer): `verify` re-hashes
//! the cache against the catalogs, `prefetch` downloads a chosen subset
//! now, `gc` evicts down to a size. Each runs inside the mount daemon when
//! one is up (through the control socket), so its view of the cache stays
//! right, or directly on the state and cache directories otherwise.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::catalog::Source;
use crate::digest::Digest;
use crate::fetch::Artifact;
use crate::keys::Glob;
use crate::mirror::Mirror;
use crate::store::Store;

/// What a maintenance run found and did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Objects (or artifacts) looked at.
    pub checked: u64,
    pub bytes: u64,
    /// Problems found, one line each.
    pub problems: Vec<String>,
    /// What was changed (removed, fetched, evicted).
    pub actions: Vec<String>,
}

/// Re-hashes every cached object; reports corrupt objects and objects no
/// configured mirror's catalog owns, and with `repair` removes both. Also
/// re-hashes each selected mirror's metadata files (which are never
/// removed: a resync restores them).
pub async fn verify(app: &Arc<App>, mirrors: &[Arc<Mirror>], repair: bool) -> Report {
    let mut owned: HashSet<Digest> = HashSet::new();
    for m in &app.mirrors() {
        let snapshots = m.snapshots().into_iter().map(|s| s.generation.clone());
        let held = [Some(m.current()), m.previous()].into_iter().flatten();
        for g in held.chain(snapshots) {
            // A file with a weak digest owns the object it was pinned to.
            owned.extend(m.owned_objects(&g));
        }
    }
    let (store, metas) = (
        app.store.clone(),
        mirrors
            .iter()
            .map(|m| (m.name().to_string(), m.meta.clone()))
            .collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        let mut r = Report::default();
        check_store(&store, "cache", Some(&owned), repair, &mut r);
        for (name, meta) in metas {
            check_store(
                &meta,
                &format!("mirror {name} metadata"),
                None,
                false,
                &mut r,
            );
        }
        r
    })
    .await
    .unwrap_or_else(|e| Report {
        problems: vec![format!("verify task failed: {e}")],
        ..Report::default()
    })
}

fn check_store(
    store: &Store,
    what: &str,
    owned: Option<&HashSet<Digest>>,
    repair: bool,
    r: &mut Report,
) {
    let mut objects = store.objects();
    objects.sort();
    let running = crate::progress::board().start(None, "verify", objects.len() as u64);
    for (digest, size) in objects {
        running.task.step(size, true);
        r.checked += 1;
        r.bytes += size;
        let path = store.object_path(&digest);
        let problem = match store.digest_file(&path, &digest) {
            Err(e) => Some(format!("{what}: {}: unreadable: {e}", path.display())),
            Ok(actual) if actual != digest => Some(format!(
                "{what}: {}: corrupt: content hashes to {actual}",
                path.display()
            )),
            Ok(_) if owned.is_some_and(|o| !o.contains(&digest)) => Some(format!(
                "{what}: {}: not owned by any mirror's catalog",
                path.display()
            )),
            Ok(_) => None,
        };
        if let Some(p) = problem {
            r.problems.push(p);
            if repair {
                store.remove(&digest);
                r.actions.push(format!("removed {}", path.display()));
            }
        }
    }
}

/// Re-hashes every object of the shared store; with `repair` deletes the
/// corrupt ones from the bucket (the next node to miss one fetches it from
/// upstream and uploads it again).
pub async fn verify_bucket(app: &App, repair: bool, r: &mut Report) {
    let Some(shared) = app.fetcher.shared() else {
        r.problems
            .push("--bucket: no shared store is configured ([store.s3])".into());
        return;
    };
    let objects = match shared.list().await {
        Ok(o) => o,
        Err(e) => {
            r.problems.push(format!("shared store: cannot list: {e}"));
            return;
        }
    };
    for (d, size) in objects {
        r.checked += 1;
        r.bytes += size;
        match shared.check(&d).await {
            Ok(None) => {}
            Ok(Some(what)) => {
                let key = shared.describe_key(&d);
                r.problems
                    .push(format!("shared store: {key}: corrupt: {what}"));
                if repair {
                    match shared.delete(&d).await {
                        Ok(()) => r.actions.push(format!("deleted {key}")),
                        Err(e) => r.problems.push(format!("shared store: {e}")),
                    }
                }
            }
            Err(e) => r.problems.push(format!("shared store: {e}")),
        }
    }
}

/// What `gc` does with the shared store: it counts it and deletes nothing.
/// Which objects are garbage is not this node's to say: other nodes serve
/// other mirrors and older generations from the same bucket, and a node
/// only knows its own catalogs. Bound the bucket with the object store's
/// own lifecycle rules if it must be bounded.
pub async fn gc_bucket(app: &App, r: &mut Report) {
    let Some(shared) = app.fetcher.shared() else {
        return;
    };
    match shared.list().await {
        Ok(o) => r.actions.push(format!(
            "shared store {}: {} {} ({} bytes), none deleted (gc never deletes from a shared bucket)",
            shared.describe(),
            o.len(),
            if o.len() == 1 { "object" } else { "objects" },
            o.iter().map(|(_, s)| s).sum::<u64>()
        )),
        Err(e) => r
            .problems
            .push(format!("shared store: cannot list: {e}")),
    }
}

/// Downloads (and verifies) every artifact of `mirror` whose path matches
/// one of `globs` (all when empty), a few at a time.
pub async fn prefetch(app: &Arc<App>, mirror: &Arc<Mirror>, globs: &[String]) -> Report {
    let globs: Vec<Glob> = match globs.iter().map(|g| Glob::new(g)).collect::<Result<_, _>>() {
        Ok(g) => g,
        Err(e) => {
            return Report {
                problems: vec![e],
                ..Report::default()
            };
        }
    };
    let g = mirror.current();
    let todo: Vec<_> = g
        .files()
        .filter_map(|id| {
            let f = g.file(id)?;
            let Source::Remote { url } = f.source else {
                return None;
            };
            let path = g.path(id);
            (globs.is_empty() || globs.iter().any(|p| p.matches(&path)))
                .then(|| mirror.artifact(|| path.clone(), &url, &f.digest, f.size))
        })
        .collect();
    // Files that may not be served (a weak digest without the policy) or
    // whose metadata contradicts their pin are problems, not fetched.
    let (todo, refused): (Vec<_>, Vec<_>) = todo.into_iter().partition(Result::is_ok);
    let todo: Vec<Artifact> = todo.into_iter().flatten().collect();
    let running =
        crate::progress::board().start(Some(mirror.name()), "prefetch", todo.len() as u64);
    let task = &running.task;
    let results: Vec<_> = futures_util::stream::iter(todo)
        .map(|art| {
            let (fetcher, store, counters) = (
                app.fetcher.clone(),
                app.store.clone(),
                mirror.counters.clone(),
            );
            async move {
                let url = art.urls[0].clone();
                let cached = art
                    .object_digest()
                    .is_some_and(|d| store.size_of(&d).is_some());
                let res = fetcher.ensure(&store, art, counters).await;
                task.step(*res.as_ref().unwrap_or(&0), res.is_ok());
                (url, cached, res)
            }
        })
        .buffer_unordered(app.config.fetch.max_per_host.clamp(1, 8))
        .collect()
        .await;
    let mut r = Report::default();
    for e in refused.into_iter().filter_map(Result::err) {
        r.checked += 1;
        r.problems.push(e.to_string());
    }
    for (url, cached, res) in results {
        r.checked += 1;
        match res {
            Ok(size) => {
                r.bytes += size;
                if !cached {
                    r.actions.push(format!("fetched {url}"));
                }
            }
            Err(e) => r.problems.push(e.to_string()),
        }
    }
    r
}

/// Evicts least recently used artifacts until the cache holds at most
/// `max` bytes (default: `cache_max_size`, else nothing to do).
pub fn gc(app: &App, max: Option<u64>) -> Report {
    let mut r = Report::default();
    let before = app.store.usage();
    r.checked = before.objects;
    let Some(target) = max.or(app.config.cache_max_size) else {
        r.actions
            .push("no size given and no cache_max_size configured: nothing evicted".into());
        return r;
    };
    let (n, bytes) = app.store.evict_to(target, None);
    r.bytes = bytes;
    r.actions.push(format!(
        "evicted {n} objects ({bytes} bytes); cache now {} bytes in {} objects",
        before.bytes - bytes,
        before.objects - n
    ));
    r
}
