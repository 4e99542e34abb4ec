//! The artifact store's own metrics, beside the HTTP ones every service
//! has: bytes of blobs in and out, and what is stored (blobs, their bytes,
//! open upload sessions).
//!
//! What is stored is counted by listing every blob at the first scrape and
//! then every [`RECOUNT`]; in between, this process's own commits and
//! deletes move the gauges, so that they stay current without a listing
//! per scrape (another store on the same bucket is seen at the recount).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ick_api::server::{Metrics, Refresh};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::backend::Backend;
use crate::uploads::Uploads;

/// How often the blobs are listed again.
pub const RECOUNT: Duration = Duration::from_secs(300);

/// What the store counts.
#[derive(Clone, Default)]
pub struct Counters {
    bytes_in: Counter,
    bytes_out: Counter,
    blobs: Gauge,
    stored_bytes: Gauge,
    sessions: Gauge,
    counted_at: Arc<Mutex<Option<Instant>>>,
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Counters {
    /// A blob of `size` bytes was received whole (stored now or before).
    pub fn received(&self, size: u64) {
        self.bytes_in.inc_by(size);
    }

    /// `bytes` of a blob were sent.
    pub fn sent(&self, bytes: usize) {
        self.bytes_out.inc_by(bytes as u64);
    }

    /// A new blob of `size` bytes is stored.
    pub fn stored(&self, size: u64) {
        self.blobs.inc();
        self.stored_bytes.inc_by(gauge_value(size));
    }

    /// A blob of `size` bytes was deleted.
    pub fn deleted(&self, size: u64) {
        self.blobs.dec();
        self.stored_bytes.dec_by(gauge_value(size));
    }

    /// The store's metrics, these among them, and what refreshes the
    /// gauges from `backend` and `uploads` before each read.
    pub fn metrics<B: Backend>(&self, backend: B, uploads: Arc<Uploads>) -> (Metrics, Refresh) {
        let metrics = Metrics::new(|registry| {
            registry.register(
                "blob_bytes_in",
                "Bytes of blobs received whole (uploads that ended stored)",
                self.bytes_in.clone(),
            );
            registry.register(
                "blob_bytes_out",
                "Bytes of blobs sent",
                self.bytes_out.clone(),
            );
            registry.register("blobs", "Blobs stored", self.blobs.clone());
            registry.register(
                "blob_storage_bytes",
                "Bytes the stored blobs take",
                self.stored_bytes.clone(),
            );
            registry.register(
                "upload_sessions",
                "Resumable upload sessions open",
                self.sessions.clone(),
            );
        });
        let counters = self.clone();
        let refresh: Refresh = Arc::new(move || {
            let (counters, backend, uploads) = (counters.clone(), backend.clone(), uploads.clone());
            Box::pin(async move { counters.refresh(&backend, &uploads).await })
        });
        (metrics, refresh)
    }

    async fn refresh<B: Backend>(&self, backend: &B, uploads: &Uploads) {
        match uploads.count().await {
            Ok(n) => {
                self.sessions.set(gauge_value(n));
            }
            Err(e) => tracing::warn!(error = %e, "cannot count upload sessions for /metrics"),
        }
        let due = self
            .counted_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|at| at.elapsed() >= RECOUNT);
        if !due {
            return;
        }
        match backend.usage().await {
            Ok(usage) => {
                self.blobs.set(gauge_value(usage.blobs));
                self.stored_bytes.set(gauge_value(usage.bytes));
                *self.counted_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "cannot count the blobs for /metrics"),
        }
    }
}
