//! The controller's own metrics, beside the HTTP ones every service has:
//! gauges read afresh from the database at each scrape (builds by project
//! and status, ready and running actions, workers by state, notifications
//! by status).

use std::sync::Arc;

use ick_api::server::{Metrics, Refresh};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::core::Core;
use crate::store::metrics as db;

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

#[derive(Clone, Default)]
struct Gauges {
    builds: Family<BuildLabels, Gauge>,
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
