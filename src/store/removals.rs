//! What a store removed, for whoever keeps descriptors of its objects open
//! for reuse (the filesystem's shared files, the kernel's passthrough
//! backing ids). A removed object's file is unlinked, but a descriptor kept
//! open still reaches it: it still takes disk space (an evicted object) or
//! still serves bytes that must not be served (an object discarded as bad).
//!
//! Each store counts its removals and keeps the last [`LOG_CAP`] removed
//! digests. A holder keeps a cursor (the count it last saw) and asks what
//! was removed since; when that is more than the log holds it hears
//! [`Removed::Lost`] and must drop everything it keeps from that store.
//! Waiting holders are woken through a `watch` channel on the count.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use tokio::sync::watch;

use crate::digest::Digest;

/// Removals remembered per store: beyond this a holder drops all it keeps.
pub const LOG_CAP: usize = 8192;

/// What was removed since a cursor.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// Exactly these objects (possibly none).
    Objects(HashSet<Digest>),
    /// More than the log remembers: assume anything kept may be gone.
    Lost,
}

impl Removed {
    pub fn contains(&self, d: &Digest) -> bool {
        match self {
            Removed::Objects(list) => list.contains(d),
            Removed::Lost => true,
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Removed::Objects(list) if list.is_empty())
    }
}

pub(super) struct Removals {
    /// Removals so far.
    count: watch::Sender<u64>,
    /// The last removals, each with its number (1-based, increasing).
    log: Mutex<VecDeque<(u64, Digest)>>,
}

impl Removals {
    pub(super) fn new() -> Removals {
        Removals {
            count: watch::Sender::new(0),
            log: Mutex::new(VecDeque::new()),
        }
    }

    pub(super) fn record(&self, d: &Digest) {
        let mut log = self.log.lock().unwrap();
        let n = *self.count.borrow() + 1;
        if log.len() == LOG_CAP {
            log.pop_front();
        }
        log.push_back((n, d.clone()));
        // Under the log's lock, so that the count never runs ahead of it.
        self.count.send_replace(n);
    }

    pub(super) fn count(&self) -> u64 {
        *self.count.borrow()
    }

    pub(super) fn since(&self, cursor: u64) -> (u64, Removed) {
        let log = self.log.lock().unwrap();
        let now = *self.count.borrow();
        if now == cursor {
            return (now, Removed::Objects(HashSet::new()));
        }
        match log.front() {
            Some((first, _)) if *first <= cursor + 1 => {
                let list = log
                    .iter()
                    .filter(|(n, _)| *n > cursor)
                    .map(|(_, d)| d.clone())
                    .collect();
                (now, Removed::Objects(list))
            }
            _ => (now, Removed::Lost),
        }
    }

    pub(super) fn watch(&self) -> watch::Receiver<u64> {
        self.count.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u32) -> Digest {
        Digest::sha256_of(&n.to_le_bytes())
    }

    fn objects(list: &[Digest]) -> Removed {
        Removed::Objects(list.iter().cloned().collect())
    }

    #[test]
    fn a_cursor_hears_exactly_what_was_removed_since() {
        let r = Removals::new();
        assert_eq!(r.since(0), (0, objects(&[])));
        r.record(&d(1));
        r.record(&d(2));
        let (cursor, removed) = r.since(0);
        assert_eq!((cursor, removed), (2, objects(&[d(1), d(2)])));
        r.record(&d(3));
        assert_eq!(r.since(cursor), (3, objects(&[d(3)])));
        assert_eq!(r.since(3), (3, objects(&[])));
    }

    #[test]
    fn a_cursor_older_than_the_log_hears_lost() {
        let r = Removals::new();
        for n in 0..LOG_CAP as u32 + 1 {
            r.record(&d(n));
        }
        assert_eq!(r.since(0).1, Removed::Lost);
        let (now, removed) = r.since(1);
        assert_eq!(now, LOG_CAP as u64 + 1);
        assert!(matches!(removed, Removed::Objects(ref l) if l.len() == LOG_CAP));
    }
}
