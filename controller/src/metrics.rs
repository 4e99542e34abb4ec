//! The controller's own metrics, beside the HTTP ones every service has:
//! counters and histograms of what this controller did (builds triggered
//! and ended, their durations and queue waits, claim waits, output bytes;
//! Prometheus sums them over controllers), and gauges read afresh from the
//! database at each scrape (builds by project and status, queued actions
//! by what they wait for, running actions, workers by state,
//! notifications by status).

use std::sync::Arc;

use ick_api::server::{HistogramFamily, Metrics, Refresh, latency_buckets};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::core::Core;
use crate::store::metrics as db;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectLabels {
    project: String,
}

/// Seconds, from 10 ms to about 1.5 hours, doubling: build durations and
/// queue waits.
fn build_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 20))
}

/// What this controller counts as it happens.
#[derive(Clone)]
pub struct Counters {
    triggered: Family<ProjectLabels, Counter>,
    ended: Family<BuildLabels, Counter>,
    duration: HistogramFamily<ProjectLabels>,
    queue_wait: HistogramFamily<ProjectLabels>,
    claim_wait: Histogram,
    output_bytes: Counter,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            triggered: Family::default(),
            ended: Family::default(),
            duration: HistogramFamily::new_with_constructor(build_buckets),
            queue_wait: HistogramFamily::new_with_constructor(build_buckets),
            claim_wait: latency_buckets(),
            output_bytes: Counter::default(),
        }
    }
}

fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

impl Counters {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "builds_triggered",
            "Builds triggered, by project",
            self.triggered.clone(),
        );
        registry.register(
            "builds_ended",
            "Builds ended, by project and status (succeeded, failed, cancelled)",
            self.ended.clone(),
        );
        registry.register(
            "build_duration_seconds",
            "From a build's first action handed out to its end, by project",
            self.duration.clone(),
        );
        registry.register(
            "build_queue_wait_seconds",
            "From a build's trigger to its first action handed out, by project",
            self.queue_wait.clone(),
        );
        registry.register(
            "claim_wait_seconds",
            "From an action becoming ready to its hand-out to a worker",
            self.claim_wait.clone(),
        );
        registry.register(
            "output_bytes",
            "Bytes of action output stored",
            self.output_bytes.clone(),
        );
    }

    pub fn triggered(&self, project: &str) {
        self.triggered
            .get_or_create(&ProjectLabels {
                project: project.to_string(),
            })
            .inc();
    }

    /// A build of `project` ended with `status`; it ran from `started_ms`
    /// (none if it never did) to `ended_ms`.
    pub fn ended(&self, project: &str, status: &str, started_ms: Option<i64>, ended_ms: i64) {
        self.ended
            .get_or_create(&BuildLabels {
                project: project.to_string(),
                status: status.to_string(),
            })
            .inc();
        if let Some(started) = started_ms {
            self.duration
                .get_or_create(&ProjectLabels {
                    project: project.to_string(),
                })
                .observe(seconds(ended_ms - started));
        }
    }

    /// A build of `project` triggered at `created_ms` had its first action
    /// handed out at `now_ms`.
    pub fn started(&self, project: &str, created_ms: i64, now_ms: i64) {
        self.queue_wait
            .get_or_create(&ProjectLabels {
                project: project.to_string(),
            })
            .observe(seconds(now_ms - created_ms));
    }

    /// An action ready since `ready_ms` was handed out at `now_ms`.
    pub fn claimed(&self, ready_ms: i64, now_ms: i64) {
        self.claim_wait.observe(seconds(now_ms - ready_ms));
    }

    pub fn output(&self, bytes: usize) {
        self.output_bytes.inc_by(bytes as u64);
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    project: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Default)]
struct Gauges {
    builds: Family<BuildLabels, Gauge>,
    queued: Family<ReasonLabels, Gauge>,
    ready: Gauge,
    running: Gauge,
    workers: Family<StateLabels, Gauge>,
    notifications: Family<StatusLabels, Gauge>,
}

/// The controller's metrics, and what refreshes them from `core`'s
/// database before each read.
pub fn controller_metrics(core: &Core) -> (Metrics, Refresh) {
    let gauges = Gauges::default();
    let metrics = Metrics::new(|registry| {
        core.counters.register(registry);
        registry.register(
            "nodes_queued",
            "Actions queued, by what they wait for: needs (earlier actions), \
             admission (the project's concurrency) or worker (ready, for a free worker)",
            gauges.queued.clone(),
        );
        registry.register(
            "builds",
            "Builds in the database, by project and status",
            gauges.builds.clone(),
        );
        registry.register(
            "nodes_ready",
            "Actions ready to run, waiting for a worker",
            gauges.ready.clone(),
        );
        registry.register("nodes_running", "Actions running", gauges.running.clone());
        registry.register(
            "workers",
            "Workers known, by state (online, draining, gone)",
            gauges.workers.clone(),
        );
        registry.register(
            "notifications",
            "Mails in the outbox, by status (pending, sent, failed)",
            gauges.notifications.clone(),
        );
    });
    let core = core.clone();
    let refresh: Refresh = Arc::new(move || {
        let (core, gauges) = (core.clone(), gauges.clone());
        Box::pin(async move {
            let counts = match core.store.conn().await {
                Ok(mut conn) => db::counts(&mut conn).await,
                Err(e) => Err(e),
            };
            match counts {
                Ok(counts) => gauges.set(counts),
                // The HTTP metrics still answer; these keep their last values.
                Err(e) => tracing::warn!(error = %e, "cannot read the counts for /metrics"),
            }
        })
    });
    (metrics, refresh)
}

impl Gauges {
    fn set(&self, counts: db::Counts) {
        // Cleared first, so that a deleted project's series goes away.
        self.builds.clear();
        for (project, status, n) in counts.builds {
            self.builds
                .get_or_create(&BuildLabels { project, status })
                .set(n);
        }
        self.queued.clear();
        for (reason, n) in counts.queued_nodes {
            self.queued.get_or_create(&ReasonLabels { reason }).set(n);
        }
        self.ready.set(counts.ready_nodes);
        self.running.set(counts.running_nodes);
        self.workers.clear();
        for (state, n) in counts.workers {
            self.workers.get_or_create(&StateLabels { state }).set(n);
        }
        self.notifications.clear();
        for (status, n) in counts.notifications {
            self.notifications
                .get_or_create(&StatusLabels { status })
                .set(n);
        }
    }
}
