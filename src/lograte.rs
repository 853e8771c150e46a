//! WARNs a client can trigger (a read of a file upstream cannot serve, a
//! lookup of a unit that fails) are limited per kind, so no user can flood
//! the log: at most [`PER_MINUTE`] a minute from each call site of
//! [`warn_limited!`](crate::warn_limited) or
//! [`info_limited!`](crate::info_limited); the last of them is followed by
//! a line saying that more are suppressed, and the next one that gets
//! through (a minute later) is preceded by how many were. Each
//! call site keeps its own count in a `static` of its own: the state is the
//! log line's, shared with nothing else.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// WARNs per kind per minute before suppression.
pub const PER_MINUTE: u32 = 10;

const WINDOW: Duration = Duration::from_secs(60);

/// One kind's count in the current minute.
pub struct RateLimit {
    state: Mutex<Window>,
    per_window: u32,
}

struct Window {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl RateLimit {
    pub const fn new(per_window: u32) -> RateLimit {
        RateLimit {
            state: Mutex::new(Window {
                started: None,
                logged: 0,
                suppressed: 0,
            }),
            per_window,
        }
    }

    /// `None`: suppress this one. `Some((n, last))`: log it, after saying
    /// that `n` were suppressed since the last that was; `last`: it is this
    /// minute's last, say so after it.
    pub fn check(&self) -> Option<(u64, bool)> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Option<(u64, bool)> {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if w.started.is_none_or(|s| now.duration_since(s) >= WINDOW) {
            w.started = Some(now);
            w.logged = 0;
        }
        if w.logged < self.per_window {
            w.logged += 1;
            Some((
                std::mem::take(&mut w.suppressed),
                w.logged == self.per_window,
            ))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

/// `tracing::warn!`, limited to [`PER_MINUTE`] a minute at this call site.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => { $crate::log_limited!(warn, $($arg)+) };
}

/// `tracing::info!`, limited to [`PER_MINUTE`] a minute at this call site.
#[macro_export]
macro_rules! info_limited {
    ($($arg:tt)+) => { $crate::log_limited!(info, $($arg)+) };
}

/// `tracing::$level!`, limited to [`PER_MINUTE`] a minute at this call
/// site; the lines about suppression are at the same level.
#[macro_export]
macro_rules! log_limited {
    ($level:ident, $($arg:tt)+) => {{
        static LIMIT: $crate::lograte::RateLimit =
            $crate::lograte::RateLimit::new($crate::lograte::PER_MINUTE);
        if let Some((suppressed, last)) = LIMIT.check() {
            if suppressed > 0 {
                tracing::$level!("suppressed {suppressed} messages like the next one");
            }
            tracing::$level!($($arg)+);
            if last {
                tracing::$level!("more messages like the last one are suppressed for a minute");
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_logs_its_quota_a_minute_then_says_how_many_it_suppressed() {
        let limit = RateLimit::new(3);
        let t0 = Instant::now();
        let got: Vec<_> = (0..10).map(|_| limit.check_at(t0)).collect();
        assert_eq!(
            got[..3],
            [Some((0, false)), Some((0, false)), Some((0, true))]
        );
        assert!(got[3..].iter().all(Option::is_none));
        let later = t0 + WINDOW;
        assert_eq!(
            limit.check_at(later),
            Some((7, false)),
            "the next minute reports them"
        );
        assert_eq!(limit.check_at(later), Some((0, false)));
    }
}
