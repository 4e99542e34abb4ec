//! What every Ick service does the same way: load its config, log, serve
//! HTTP (optionally TLS) with health endpoints and problem+json errors, and
//! stop gracefully. Kept here so that the services cannot drift apart.

mod bytesize;
mod config;
mod health;
mod json;
mod limiter;
mod logging;
mod metrics;
mod problem_layer;
mod serve;

pub use bytesize::ByteSize;
pub use config::{HttpConfig, TlsFiles, load_yaml};
pub use health::{Readiness, health_routes};
pub use json::{JsonBody, JsonBodyRejection};
pub use limiter::FailureLimiter;
pub use logging::{LogFormat, init_logging, stderr_colours};
pub use metrics::{HistogramFamily, METRICS_PATH, Metrics, Refresh, latency_buckets};
pub use problem_layer::finish_router;
pub use serve::{Running, STOP_WITH_STDIN_ENV, serve, shutdown_signal};
