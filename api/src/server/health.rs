use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;

use crate::problem::Problem;

/// How long `/readyz` waits for the service's check: a load balancer
/// asking must hear "not ready" quickly, not hang with a stalled database.
pub const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// A service's answer to "can you serve requests now?": `Err` says why not.
/// `/readyz` answers 503 if it takes longer than [`READY_WITHIN`].
pub type Readiness = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// `GET /healthz` (the process is up; names the service and its version)
/// and `GET /readyz` (its storage and keys are usable). Neither needs a token.
pub fn health_routes<S: Clone + Send + Sync + 'static>(
    service: &'static str,
    ready: Readiness,
) -> Router<S> {
    Router::new()
        .route(
            "/healthz",
            get(move || async move {
                Json(serde_json::json!({
                    "status": "ok",
                    "service": service,
                    "version": crate::VERSION,
                }))
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match tokio::time::timeout(READY_WITHIN, ready()).await {
                        Ok(Ok(())) => Json(serde_json::json!({"status": "ready"})).into_response(),
                        Ok(Err(why)) => not_ready(why),
                        Err(_) => not_ready(format!(
                            "the readiness check did not finish within {} s",
                            READY_WITHIN.as_secs()
                        )),
                    }
                }
            }),
        )
}

fn not_ready(why: String) -> Response {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, why)
        .with_title("Not ready")
        .into_response()
}
