//! Long-running work in flight (syncs, prefetches, verifies), for `status`
//! and the command line's progress line. Workers update atomics; readers
//! take snapshots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// One piece of work: `done` of `total` items, `bytes` so far.
#[derive(Debug)]
pub struct Task {
    pub mirror: Option<String>,
    pub what: &'static str,
    pub total: AtomicU64,
    pub done: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
}

impl Task {
    pub fn step(&self, bytes: u64, ok: bool) {
        self.done.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
        if !ok {
            self.failed.fetch_add(1, Relaxed);
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskSnapshot {
    pub mirror: Option<String>,
    pub what: String,
    pub done: u64,
    pub total: u64,
    pub failed: u64,
    pub bytes: u64,
}

/// The tasks running now.
#[derive(Default, Debug)]
pub struct Board {
    tasks: Mutex<Vec<Arc<Task>>>,
}

/// Removes its task from the board when dropped.
pub struct Running<'a> {
    board: &'a Board,
    pub task: Arc<Task>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.board
            .tasks
            .lock()
            .unwrap()
            .retain(|t| !Arc::ptr_eq(t, &self.task));
    }
}

impl Board {
    pub fn start(&self, mirror: Option<&str>, what: &'static str, total: u64) -> Running<'_> {
        let task = Arc::new(Task {
            mirror: mirror.map(str::to_string),
            what,
            total: AtomicU64::new(total),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        self.tasks.lock().unwrap().push(task.clone());
        Running { board: self, task }
    }

    pub fn snapshot(&self) -> Vec<TaskSnapshot> {
        self.tasks
            .lock()
            .unwrap()
            .iter()
            .map(|t| TaskSnapshot {
                mirror: t.mirror.clone(),
                what: t.what.to_string(),
                done: t.done.load(Relaxed),
                total: t.total.load(Relaxed),
                failed: t.failed.load(Relaxed),
                bytes: t.bytes.load(Relaxed),
            })
            .collect()
    }
}

/// This process's board.
pub fn board() -> &'static Board {
    static BOARD: std::sync::OnceLock<Board> = std::sync::OnceLock::new();
    BOARD.get_or_init(Board::default)
}
