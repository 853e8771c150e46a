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
        log_while_running(&task);
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

/// How often a long task says how far it is, in the log (the journal has no
/// progress line).
pub const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// While `task` runs (on a tokio runtime), an INFO line every [`LOG_EVERY`]
/// with how far it is; a task that ends sooner logs nothing.
fn log_while_running(task: &Arc<Task>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(task);
    rt.spawn(async move {
        let started = std::time::Instant::now();
        loop {
            tokio::time::sleep(LOG_EVERY).await;
            // Gone once its `Running` is dropped.
            let Some(t) = weak.upgrade() else {
                return;
            };
            let (done, total) = (t.done.load(Relaxed), t.total.load(Relaxed));
            tracing::info!(
                mirror = t.mirror.as_deref().unwrap_or("-"),
                done,
                total,
                failed = t.failed.load(Relaxed),
                bytes = t.bytes.load(Relaxed),
                secs = started.elapsed().as_secs(),
                "{} in progress: {done} of {total}",
                t.what
            );
        }
    });
}

/// This process's board.
pub fn board() -> &'static Board {
    static BOARD: std::sync::OnceLock<Board> = std::sync::OnceLock::new();
    BOARD.get_or_init(Board::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log line written into a shared buffer.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_long_task_says_how_far_it_is_in_the_log_and_stops_when_done() {
        let lines = Lines::default();
        let w = lines.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(sub, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async {
                let board = Board::default();
                let running = board.start(Some("debian"), "sync", 500);
                running.task.step(10, true);
                tokio::time::sleep(LOG_EVERY * 2 + std::time::Duration::from_secs(1)).await;
                drop(running);
                tokio::time::sleep(LOG_EVERY * 3).await;
            });
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text.matches("sync in progress: 1 of 500").count(),
            2,
            "{text}"
        );
        assert!(text.contains("mirror=\"debian\""), "{text}");
    }
}
