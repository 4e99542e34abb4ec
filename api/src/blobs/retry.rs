//! When and how long the blob client waits before trying again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exponential backoff with jitter. The count of attempts starts over
/// whenever a transfer makes progress, so a long transfer over a flaky link
/// is not given up because of failures spread over hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in a row without progress before giving up (at least 1).
    pub attempts: u32,
    /// The first wait.
    pub first_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 6 tries, waiting 0.25 s, 0.5 s, 1 s, … up to 8 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn never() -> Self {
        RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait after the `failures`-th failure in a row (1-based): the
    /// exponential delay, less up to a quarter at random so that many
    /// clients cut at once do not come back at once.
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        let base = self
            .first_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = base / 4 * (nanos % 1000) / 1000;
        base - jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy::default();
        let d1 = p.delay(1);
        assert!(
            d1 <= Duration::from_millis(250) && d1 >= Duration::from_millis(187),
            "{d1:?}"
        );
        let d3 = p.delay(3);
        assert!(
            d3 <= Duration::from_secs(1) && d3 >= Duration::from_millis(750),
            "{d3:?}"
        );
        assert!(p.delay(30) <= Duration::from_secs(8));
        assert!(p.delay(30) >= Duration::from_secs(6));
    }
}
