//! `retain = "additive"` for conda: a package the subdir's repodata.json
//! served last generation that upstream's no longer lists stays listed, its
//! record byte for byte as it was served, while its file is cached with the
//! sha256 that record gives (the digest its tree entry had). It passes the
//! policy like upstream's records (by its own `version` and `timestamp`),
//! and every document that lists packages agrees: repodata.json and its
//! .zst list it (and `removed` no longer names it), and the name's shard is
//! written by this mirror with it. current_repodata.json stays upstream's
//! pick of each name's newest records, within what repodata.json lists: a
//! retained record is not added to it (conda reads repodata.json when
//! current_repodata.json cannot satisfy a request).
//!
//! The build runs on a blocking thread and the source is the sync's, so
//! the build asks it through [`Ask`] what the served generation has at the
//! paths of the records it would retain, once per subdir.

use crate::catalog::{Body, Entry};
use crate::digest::Digest;
use crate::layout::{DocSource, Previous};
use crate::path::RelPath;

use super::repodata::{self, Listed, Record, Repodata};

/// Paths asked, and where the answers go (one per path, in order).
type Question = (
    Vec<String>,
    tokio::sync::oneshot::Sender<Vec<Option<Previous>>>,
);

/// The blocking build's line to the source: [`DocSource::previous`] of
/// paths, answered by [`answer`] on the sync's task.
pub(super) struct Ask(tokio::sync::mpsc::Sender<Question>);

impl Ask {
    /// What the served generation has at each of `paths` (nothing where
    /// the sync's task has gone).
    fn previous(&self, paths: Vec<String>) -> Vec<Option<Previous>> {
        let n = paths.len();
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.0.blocking_send((paths, tx)).is_err() {
            return vec![None; n];
        }
        rx.blocking_recv().unwrap_or_else(|_| vec![None; n])
    }
}

/// An [`Ask`] and the receiver [`answer`] serves.
pub(super) fn line() -> (Ask, tokio::sync::mpsc::Receiver<Question>) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    (Ask(tx), rx)
}

/// Runs `build` (a blocking task holding the [`Ask`] of `asked`) to its
/// end, answering its questions from `src` meanwhile.
pub(super) async fn answer<T>(
    src: &dyn DocSource,
    mut asked: tokio::sync::mpsc::Receiver<Question>,
    mut build: tokio::task::JoinHandle<T>,
) -> Result<T, tokio::task::JoinError> {
    loop {
        tokio::select! {
            Some((paths, reply)) = asked.recv() => {
                let _ = reply.send(paths.iter().map(|p| src.previous(p)).collect());
            }
            done = &mut build => return done,
        }
    }
}

/// What a build merges from: the repodata.json served last generation, and
/// the line to the source.
pub(super) struct Served {
    pub(super) bytes: Vec<u8>,
    pub(super) ask: Ask,
}

impl Served {
    /// The served document parsed; one that cannot be read retains nothing
    /// (with a warning naming it).
    pub(super) fn parse(&self, prefix: &str) -> Option<Repodata<'_>> {
        Repodata::parse(&self.bytes)
            .map_err(|e| tracing::warn!(repodata = %format!("{prefix}repodata.json"), "retain: the repodata.json served last cannot be read, nothing retained: {e}"))
            .ok()
    }
}

/// A served record upstream no longer lists whose file is cached: its
/// index in the served document, its checked fields and its tree entry.
pub(super) struct Candidate {
    pub(super) index: usize,
    pub(super) rec: Record,
    pub(super) entry: Entry,
}

/// The records of `old` (the served document of the subdir at `prefix`)
/// that `listed` (says whether upstream's document lists a filename) does
/// not, that pass the checks of `subdir` and `allows` (the name filter),
/// and whose files the served generation has cached with the record's
/// sha256: each with the upstream URL and size its tree entry had.
pub(super) fn removed(
    old: &Repodata,
    ask: &Ask,
    prefix: &str,
    subdir: &str,
    listed: &dyn Fn(&str) -> bool,
    allows: &dyn Fn(&str) -> bool,
) -> Vec<Candidate> {
    let checked: Vec<(usize, &Listed, Record)> = old
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| !listed(&r.filename) && !old.duplicates.contains(&r.filename))
        .filter_map(|(i, r)| Some((i, r, repodata::check(r, subdir).ok()?)))
        .filter(|(_, _, rec)| allows(&rec.name))
        .collect();
    if checked.is_empty() {
        return Vec::new();
    }
    let paths = checked
        .iter()
        .map(|(_, r, _)| format!("{prefix}{}", r.filename))
        .collect();
    let answers = ask.previous(paths);
    checked
        .into_iter()
        .zip(answers)
        .filter_map(|((index, r, rec), prev)| {
            let (url, size) = cached(prev, &rec.sha256).or_else(|| {
                tracing::debug!(file = %r.filename, "removed upstream and not cached: gone");
                None
            })?;
            let entry = Entry {
                path: RelPath::new(format!("{prefix}{}", r.filename)).ok()?,
                mtime: rec.timestamp.and_then(|t| u32::try_from(t).ok()),
                body: Body::Remote {
                    url,
                    size: size.or(rec.size),
                    digest: rec.sha256.clone(),
                },
            };
            Some(Candidate { index, rec, entry })
        })
        .collect()
}

/// The URL and size of a served artifact cached with `digest`.
fn cached(prev: Option<Previous>, digest: &Digest) -> Option<(String, Option<u64>)> {
    match prev? {
        Previous::Artifact {
            url,
            size,
            digest: d,
            cached: true,
        } if d == *digest => Some((url, size)),
        _ => None,
    }
}
