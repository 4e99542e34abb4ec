//! When and how long the blob client waits before trying again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::client::BlobError;

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

/// The retries of one operation: counts the failures since its last
/// progress and, with an outage limit, how long they have lasted.
#[derive(Debug)]
pub(super) struct Backoff {
    policy: RetryPolicy,
    /// With a limit, failures are retried until the store has been away
    /// this long, however many tries that takes.
    outage: Option<Duration>,
    /// Where the store is, for the final error.
    store: String,
    failures: u32,
    since: Option<Instant>,
}

impl Backoff {
    pub(super) fn new(policy: RetryPolicy, outage: Option<Duration>, store: &str) -> Backoff {
        Backoff {
            policy,
            outage,
            store: store.to_string(),
            failures: 0,
            since: None,
        }
    }

    /// The operation moved on: the next failure starts a new count.
    pub(super) fn progressed(&mut self) {
        self.failures = 0;
        self.since = None;
    }

    /// After a failure worth another try (the caller decides which are):
    /// waits, or answers the error to give up with when the tries (or the
    /// outage limit) are spent.
    pub(super) async fn wait(&mut self, error: BlobError, what: &str) -> Result<(), BlobError> {
        self.failures += 1;
        let since = *self.since.get_or_insert_with(Instant::now);
        let delay = self.policy.delay(self.failures);
        let delay = match self.outage {
            Some(limit) => {
                let away = since.elapsed();
                if away >= limit {
                    return Err(BlobError::unreachable(&self.store, limit, error));
                }
                // The last try comes at the limit, not a whole delay after.
                delay.min(limit - away)
            }
            None if self.failures >= self.policy.attempts => return Err(error),
            None => delay,
        };
        tracing::warn!(error = %error, failures = self.failures, ?delay, "{what} failed; trying again");
        tokio::time::sleep(delay).await;
        Ok(())
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

    fn cut() -> BlobError {
        BlobError::Stalled(Duration::from_secs(1))
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            first_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
        }
    }

    #[tokio::test]
    async fn an_outage_limit_retries_until_the_store_was_away_that_long() {
        let limit = Duration::from_millis(400);
        let mut backoff = Backoff::new(quick(), Some(limit), "http://store");
        let start = Instant::now();
        let mut tries = 0;
        let error = loop {
            match backoff.wait(cut(), "test").await {
                Ok(()) => tries += 1,
                Err(e) => break e,
            }
        };
        // Far more than `attempts`: the waits are capped, the time counts.
        assert!(tries > 8, "{tries} tries");
        assert!(start.elapsed() >= limit);
        assert_eq!(
            error.to_string(),
            "artifact store at http://store unreachable for 400ms: the transfer stalled: nothing arrived for 1s"
        );
        assert!(!error.is_transient());
    }

    #[tokio::test]
    async fn progress_starts_the_outage_clock_again() {
        let limit = Duration::from_millis(300);
        let mut backoff = Backoff::new(quick(), Some(limit), "http://store");
        // Away 200 ms, back, then away 200 ms again: never 300 ms in a row.
        for _ in 0..2 {
            let round = Instant::now();
            while round.elapsed() < Duration::from_millis(200) {
                backoff.wait(cut(), "test").await.expect("within the limit");
            }
            backoff.progressed();
        }
    }

    #[tokio::test]
    async fn without_a_limit_the_attempts_count() {
        let mut backoff = Backoff::new(quick(), None, "http://store");
        backoff.wait(cut(), "test").await.expect("a try left");
        let error = backoff.wait(cut(), "test").await.expect_err("spent");
        assert!(matches!(error, BlobError::Stalled(_)), "{error}");
    }
}
