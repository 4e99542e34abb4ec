//! Failed authentications (the IDP's client secrets, the controller's web
//! hook signatures), counted per key (client id, peer address) in fixed
//! windows. Hand-written because a token bucket
//! (`governor`) charges every attempt, and we must refuse the right secret
//! too while a key is locked, without charging successful requests.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Window {
    started: Instant,
    failures: u32,
}

/// Counts failures; a key with too many in its window is blocked until the
/// window ends.
pub struct FailureLimiter {
    window: Duration,
    windows: Mutex<HashMap<String, Window>>,
    /// Keys (client and address) that authenticated successfully.
    known: Mutex<HashSet<String>>,
}

impl FailureLimiter {
    pub fn new(window: Duration) -> Self {
        FailureLimiter {
            window,
            windows: Mutex::new(HashMap::new()),
            known: Mutex::new(HashSet::new()),
        }
    }

    /// Remembers that `key` authenticated successfully. Only successes
    /// add keys, so strangers cannot fill the set.
    pub fn mark_known(&self, key: &str) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() > 100_000 {
            known.clear();
        }
        known.insert(key.to_string());
    }

    /// Whether `key` authenticated successfully before.
    pub fn is_known(&self, key: &str) -> bool {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.contains(key)
    }

    /// How long `key` stays blocked (it had `max_failures` in its window),
    /// if it is.
    pub fn blocked_for(&self, key: &str, max_failures: u32) -> Option<Duration> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.get(key)?;
        let left = self.window.checked_sub(w.started.elapsed())?;
        (w.failures >= max_failures && !left.is_zero()).then_some(left)
    }

    /// Counts one failure for `key`.
    pub fn record_failure(&self, key: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 10_000 {
            let window = self.window;
            windows.retain(|_, w| w.started.elapsed() < window);
        }
        let w = windows.entry(key.to_string()).or_insert(Window {
            started: Instant::now(),
            failures: 0,
        });
        if w.started.elapsed() >= self.window {
            *w = Window {
                started: Instant::now(),
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_not_before() {
        let limiter = FailureLimiter::new(Duration::from_secs(60));
        for _ in 0..2 {
            limiter.record_failure("client:a");
        }
        assert!(limiter.blocked_for("client:a", 3).is_none());
        limiter.record_failure("client:a");
        let left = limiter.blocked_for("client:a", 3).expect("blocked");
        assert!(left <= Duration::from_secs(60));
        assert!(
            limiter.blocked_for("client:a", 4).is_none(),
            "a higher limit"
        );
        assert!(limiter.blocked_for("client:b", 3).is_none());
    }

    #[test]
    fn a_window_ends() {
        let limiter = FailureLimiter::new(Duration::from_millis(1));
        limiter.record_failure("k");
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.blocked_for("k", 1).is_none());
    }
}
