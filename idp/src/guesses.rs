//! Limits on guessing a credential (a client's secret, a person's
//! password): failures are counted per peer address, per (name, peer),
//! and per name for all the addresses it never authenticated from, so
//! that neither one address nor many can keep guessing, while a name that
//! is being guessed elsewhere can still be used from where it always is.

use std::net::IpAddr;
use std::time::Duration;

use ick_api::server::FailureLimiter;

use crate::config::FailureLimit;
use crate::metrics::Counters;

/// The counters one attempt at `name`'s credential touches.
pub struct Guesses<'a> {
    failures: &'a FailureLimiter,
    counters: &'a Counters,
    kind: &'static str,
    peer: String,
    pair: String,
    strangers: String,
    /// `name` authenticated from this peer before.
    known: bool,
}

impl<'a> Guesses<'a> {
    /// An attempt at the credential of `name`, a `kind` of one (`client`,
    /// `login`, `user_code`: each counted apart), from `peer`.
    pub fn new(
        failures: &'a FailureLimiter,
        counters: &'a Counters,
        kind: &'static str,
        name: &str,
        peer: IpAddr,
    ) -> Self {
        let pair = format!("{kind}:{name}@{peer}");
        Guesses {
            known: failures.is_known(&pair),
            failures,
            counters,
            kind,
            peer: format!("{kind}-peer:{peer}"),
            strangers: format!("{kind}:{name}:strangers"),
            pair,
        }
    }

    /// How long attempts stay refused, if they are.
    pub fn blocked_for(&self, limits: &FailureLimit) -> Option<Duration> {
        let mut keys = vec![
            (&self.peer, limits.max_failures_per_peer),
            (&self.pair, limits.max_failures),
        ];
        if !self.known {
            keys.push((&self.strangers, limits.max_failures));
        }
        keys.into_iter()
            .filter_map(|(key, max)| self.failures.blocked_for(key, max))
            .max()
    }

    /// The credential was wrong.
    pub fn failed(&self) {
        self.counters.failed(self.kind);
        self.failures.record_failure(&self.peer);
        self.failures.record_failure(&self.pair);
        if !self.known {
            self.failures.record_failure(&self.strangers);
        }
    }

    /// The credential was right: this peer is known for this name.
    pub fn succeeded(&self) {
        self.failures.mark_known(&self.pair);
    }
}
