//! Passthrough bookkeeping: which inode has which kernel backing id, which
//! handles share it, which idle ids are kept for reuse, and which of those
//! must go because the store removed the object behind them.
//!
//! The kernel allows one backing id per inode, shared by every handle open
//! on it, and refuses to mix: while an inode has a passthrough handle, every
//! open of it must be passthrough, and a passthrough open fails while a
//! handle served by regfs (page-cached) is open on it. So an inode is either
//! in passthrough (`by_ino`) or has regfs-served handles (`direct`), never
//! both.
//!
//! An idle id holds its cache file open. When the store removes that object
//! (evicted: its disk space must come back; found bad by `verify --repair`:
//! it must not be served again) exactly that id is dropped, and an id still
//! in use is dropped at its last release instead of being kept. Ids of
//! objects still present stay, so a cache that evicts all the time (smaller
//! than its working set) keeps reusing the ids of what it keeps.

use std::collections::{BTreeMap, HashMap};

use crate::fs::{Cursors, ObjectKey};
use crate::store::{Removed, Store};

pub(super) struct Backing<Id> {
    /// Backing id by inode. Ids whose last handle closed stay for reuse, up
    /// to `max_idle` of them, least recently used evicted first.
    pub(super) by_ino: HashMap<u64, Shared<Id>>,
    /// The idle ids' inodes by when they went idle (a release count).
    pub(super) idle: BTreeMap<u64, u64>,
    releases: u64,
    max_idle: usize,
    /// Regfs-served (page-cached, not passthrough) handles open per inode.
    pub(super) direct: HashMap<u64, usize>,
    /// Each handle's inode, and whether it is passthrough.
    by_fh: HashMap<u64, (u64, bool)>,
    /// How far each store's removals have been applied.
    cursors: Cursors,
}

pub(super) struct Shared<Id> {
    pub(super) id: Id,
    users: usize,
    /// Its key in `Backing::idle` while `users` is 0.
    idle_since: u64,
    /// The store object the id's file is.
    object: ObjectKey,
    /// The store removed the object while the id was in use: drop it at
    /// its last release rather than keep it.
    gone: bool,
}

impl<Id> Backing<Id> {
    pub(super) fn new(max_idle: usize) -> Self {
        Backing {
            by_ino: HashMap::new(),
            idle: BTreeMap::new(),
            releases: 0,
            max_idle,
            direct: HashMap::new(),
            by_fh: HashMap::new(),
            cursors: Cursors::default(),
        }
    }

    /// Shares the inode's backing id with a new handle, if it has one.
    pub(super) fn join(&mut self, fh: u64, ino: u64) -> Option<&Id> {
        let shared = self.by_ino.get_mut(&ino)?;
        if shared.users == 0 {
            self.idle.remove(&shared.idle_since);
        }
        shared.users += 1;
        self.by_fh.insert(fh, (ino, true));
        Some(&shared.id)
    }

    /// Records a new backing id on `object`, used by its first handle.
    pub(super) fn insert(&mut self, fh: u64, ino: u64, id: Id, object: ObjectKey) {
        let shared = Shared {
            id,
            users: 1,
            idle_since: 0,
            object,
            gone: false,
        };
        if let Some(old) = self.by_ino.insert(ino, shared) {
            if old.users == 0 {
                self.idle.remove(&old.idle_since);
            }
        }
        self.by_fh.insert(fh, (ino, true));
    }

    pub(super) fn add_direct(&mut self, fh: u64, ino: u64) {
        *self.direct.entry(ino).or_default() += 1;
        self.by_fh.insert(fh, (ino, false));
    }

    pub(super) fn release(&mut self, fh: u64) {
        let Some((ino, passthrough)) = self.by_fh.remove(&fh) else {
            return;
        };
        if !passthrough {
            if let Some(n) = self.direct.get_mut(&ino) {
                *n -= 1;
                if *n == 0 {
                    self.direct.remove(&ino);
                }
            }
            return;
        }
        let Some(shared) = self.by_ino.get_mut(&ino) else {
            return;
        };
        shared.users -= 1;
        if shared.users > 0 {
            return;
        }
        if shared.gone {
            self.by_ino.remove(&ino);
            return;
        }
        self.releases += 1;
        shared.idle_since = self.releases;
        self.idle.insert(self.releases, ino);
        while self.idle.len() > self.max_idle {
            let (_, old) = self.idle.pop_first().expect("over the limit, so not empty");
            self.by_ino.remove(&old);
        }
    }

    /// Applies what `store` removed since the last call: no id kept for
    /// reuse may reach a removed object.
    pub(super) fn apply_removals(&mut self, store: &Store) {
        if let Some(removed) = self.cursors.removed(store) {
            self.forget(store.id(), &removed);
        }
    }

    /// Drops the idle ids on objects of `store` in `removed`, and marks
    /// those in use (the kernel needs them until their handles close).
    fn forget(&mut self, store: u64, removed: &Removed) {
        let mut doomed = Vec::new();
        for (ino, shared) in &mut self.by_ino {
            if shared.object.store == store && removed.contains(&shared.object.digest) {
                if shared.users == 0 {
                    doomed.push((*ino, shared.idle_since));
                } else {
                    shared.gone = true;
                }
            }
        }
        for (ino, idle_since) in doomed {
            self.idle.remove(&idle_since);
            self.by_ino.remove(&ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Backing;
    use crate::digest::Digest;
    use crate::fs::ObjectKey;
    use crate::fuse::idle_ids;
    use crate::store::Store;

    const IDLE_IDS: usize = 4096;

    fn key(ino: u64) -> ObjectKey {
        ObjectKey {
            store: 0,
            digest: Digest::sha256_of(&ino.to_le_bytes()),
        }
    }

    fn open(b: &mut Backing<u32>, fh: u64, ino: u64) -> u32 {
        match b.join(fh, ino) {
            Some(id) => *id,
            None => {
                b.insert(fh, ino, fh as u32, key(ino));
                fh as u32
            }
        }
    }

    #[test]
    fn idle_backing_ids_are_reused_and_evicted_least_recently_used_first() {
        let mut b = Backing::<u32>::new(IDLE_IDS);
        let files = IDLE_IDS as u64 / 2;
        let mut fh = 0;
        // A working set of half the budget, opened and closed many times
        // (as `cat` over a tree does): each inode keeps its first id.
        for pass in 0..10 {
            for ino in 0..files {
                fh += 1;
                let id = open(&mut b, fh, ino);
                if pass > 0 {
                    assert_eq!(id, ino as u32 + 1, "pass {pass}: inode {ino} got a new id");
                }
                b.release(fh);
            }
        }
        assert_eq!(b.idle.len(), files as usize, "one idle entry per idle id");
        // Touch inode 0 again, then go idle on a full budget of others: the
        // least recently used go first and inode 0, recent, stays.
        fh += 1;
        open(&mut b, fh, 0);
        b.release(fh);
        for ino in files..files + IDLE_IDS as u64 - 1 {
            fh += 1;
            open(&mut b, fh, ino);
            b.release(fh);
        }
        assert_eq!(b.idle.len(), IDLE_IDS);
        assert_eq!(b.by_ino.len(), IDLE_IDS);
        assert!(b.by_ino.contains_key(&0), "the recently used id stays");
        assert!(
            !b.by_ino.contains_key(&1),
            "the least recently used one went"
        );
    }

    #[test]
    fn idle_ids_are_bounded_by_the_descriptor_limit() {
        assert_eq!(idle_ids(1024), 256);
        assert_eq!(idle_ids(65536), 4096);
        assert_eq!(idle_ids(20), 16);
    }

    #[test]
    fn an_id_in_use_is_never_evicted() {
        let mut b = Backing::<u32>::new(IDLE_IDS);
        b.insert(1, 7, 70, key(7));
        for fh in 2..(IDLE_IDS as u64 * 3) {
            open(&mut b, fh, fh + 100);
            b.release(fh);
        }
        assert_eq!(b.join(99_999, 7), Some(&70));
        b.release(1);
        b.release(99_999);
        assert_eq!(b.idle.len(), IDLE_IDS);
        assert!(
            b.by_ino.contains_key(&7),
            "the id in use became the newest idle one"
        );
    }

    #[test]
    fn a_removed_object_loses_exactly_its_ids_and_the_others_stay() {
        let dir = std::env::temp_dir().join(format!("regfs-backing-{}", std::process::id()));
        let store = Store::open(&dir, None).unwrap();
        let k = |ino: u64| ObjectKey {
            store: store.id(),
            digest: Digest::sha256_of(&ino.to_le_bytes()),
        };
        for ino in [10u64, 20, 30] {
            store.put_bytes(&k(ino).digest, &ino.to_le_bytes()).unwrap();
        }
        let mut b = Backing::<u32>::new(IDLE_IDS);
        // 10 and 20 idle, 30 in use.
        for (fh, ino) in [(1, 10), (2, 20), (3, 30)] {
            b.insert(fh, ino, fh as u32, k(ino));
        }
        b.release(1);
        b.release(2);
        b.apply_removals(&store);
        assert_eq!(b.by_ino.len(), 3, "nothing removed yet: nothing dropped");
        store.remove(&k(10).digest);
        store.remove(&k(30).digest);
        b.apply_removals(&store);
        assert!(!b.by_ino.contains_key(&10), "the removed idle id went");
        assert_eq!(b.join(4, 20), Some(&2), "the other idle id is reused");
        assert!(b.by_ino.contains_key(&30), "an id in use stays while used");
        b.release(3);
        assert!(
            !b.by_ino.contains_key(&30),
            "and goes at its last release instead of idling"
        );
        b.release(4);
        assert_eq!(b.idle.len(), 1);
        // Another store's removals are not this one's.
        let other = Store::open(&dir.join("other"), None).unwrap();
        other
            .put_bytes(&k(20).digest, &20u64.to_le_bytes())
            .unwrap();
        other.remove(&k(20).digest);
        b.apply_removals(&other);
        assert!(b.by_ino.contains_key(&20));
    }
}
