//! The worker-manager's metrics, served without a token on an address of
//! their own (`metrics.listen`): actions running, their durations and ends
//! by kind, and output not yet delivered to the controller.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ick_api::server::{HistogramFamily, Metrics, Refresh};
use ick_api::work::Outcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::Shared;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    kind: String,
    outcome: &'static str,
}

/// Seconds, from 10 ms to about 1.5 hours, doubling.
fn action_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 20))
}

/// What the worker-manager counts.
#[derive(Clone)]
pub struct Counters {
    duration: HistogramFamily<KindLabels>,
    ended: Family<EndLabels, Counter>,
    running: Gauge,
    /// Bytes of output chunks not yet held by the controller, every
    /// action's together (the output queues move it).
    pub buffered: Gauge,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            duration: HistogramFamily::new_with_constructor(action_buckets),
            ended: Family::default(),
            running: Gauge::default(),
            buffered: Gauge::default(),
        }
    }
}

impl Counters {
    /// An action of `kind` ended as `outcome` (`succeeded` for an exit
    /// with status 0) after running `ran`.
    pub fn ended(&self, kind: &str, outcome: Outcome, succeeded: bool, ran: Duration) {
        let outcome = match outcome {
            _ if succeeded => "succeeded",
            Outcome::Exited => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Cancelled => "cancelled",
            Outcome::Error => "error",
        };
        let kind = kind.to_string();
        self.duration
            .get_or_create(&KindLabels { kind: kind.clone() })
            .observe(ran.as_secs_f64());
        self.ended.get_or_create(&EndLabels { kind, outcome }).inc();
    }
}

/// The metrics of the worker-manager `shared`, and what reads its running
/// actions before each scrape.
pub(crate) fn metrics(shared: &Arc<Shared>) -> (Metrics, Refresh) {
    let counters = &shared.counters;
    let metrics = Metrics::new(|registry| {
        registry.register(
            "actions_running",
            "Actions running on this worker",
            counters.running.clone(),
        );
        registry.register(
            "action_duration_seconds",
            "From an action's start to its end, by kind",
            counters.duration.clone(),
        );
        registry.register(
            "actions_ended",
            "Actions ended, by kind and outcome (succeeded, failed, timed_out, \
             cancelled, error)",
            counters.ended.clone(),
        );
        registry.register(
            "output_buffered_bytes",
            "Output not yet delivered to the controller",
            counters.buffered.clone(),
        );
    });
    let shared = shared.clone();
    let refresh: Refresh = Arc::new(move || {
        let busy = shared.busy.load(Ordering::SeqCst);
        shared.counters.running.set(i64::from(busy));
        Box::pin(async {})
    });
    (metrics, refresh)
}
