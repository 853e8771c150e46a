//! Descriptors shared and kept for reuse: one open file per cached object
//! however many handles read it, and what each holder must forget when a
//! store removes objects (see `store/removals.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use super::Fs;
use crate::store::{Removed, Store};

/// One object of one store: what a descriptor kept for reuse is open on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// [`Store::id`].
    pub store: u64,
    pub digest: crate::digest::Digest,
}

/// Where a holder of kept descriptors has read each store's removal log to
/// ([`Store::removed_since`]).
#[derive(Default)]
pub struct Cursors(HashMap<u64, u64>);

impl Cursors {
    /// What `store` removed since this holder last asked; `None` if nothing.
    pub fn removed(&mut self, store: &Store) -> Option<crate::store::Removed> {
        let count = store.removal_count();
        let cursor = self.0.entry(store.id()).or_insert(0);
        if *cursor == count {
            return None;
        }
        let (now, removed) = store.removed_since(*cursor);
        *cursor = now;
        (!removed.is_empty()).then_some(removed)
    }
}

#[derive(Default)]
pub(super) struct OpenFiles {
    pub(super) by_key: HashMap<ObjectKey, std::sync::Weak<File>>,
    /// How far each store's removals have been applied to `by_key`.
    pub(super) cursors: Cursors,
}

impl Fs {
    /// The local file of a cached object, sharing one descriptor among all
    /// handles open on it. A descriptor of an object the store has removed
    /// since is never shared again.
    pub(super) fn local(
        &self,
        store: &Store,
        d: &crate::digest::Digest,
    ) -> Result<Arc<File>, crate::store::Absent> {
        let mut open = self.open_files.lock().unwrap();
        let OpenFiles { by_key, cursors } = &mut *open;
        match cursors.removed(store) {
            None => {}
            Some(Removed::Lost) => by_key.retain(|k, _| k.store != store.id()),
            Some(Removed::Objects(list)) => {
                for digest in list {
                    by_key.remove(&ObjectKey {
                        store: store.id(),
                        digest,
                    });
                }
            }
        }
        let key = ObjectKey {
            store: store.id(),
            digest: d.clone(),
        };
        if let Some(f) = by_key.get(&key).and_then(std::sync::Weak::upgrade) {
            store.mark_used(d);
            return Ok(f);
        }
        let (f, _) = store.open_object(d)?;
        let f = Arc::new(f);
        if by_key.len() > 4096 {
            by_key.retain(|_, w| w.strong_count() > 0);
        }
        by_key.insert(key, Arc::downgrade(&f));
        Ok(f)
    }
}
