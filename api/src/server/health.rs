use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;

use crate::problem::Problem;

/// A service's answer to "can you serve requests now?": `Err` says why not.
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
                    match ready().await {
                        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
                        Err(why) => not_ready(why),
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
