use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::trace::TraceLayer;

use crate::problem::{PROBLEM_JSON, Problem};

/// Adds what every service's router needs: a problem+json 404 for unknown
/// paths, problem+json for every error that was not already JSON (axum's
/// own rejections, 405, 413), the request body limit, and a tracing span per
/// request.
pub fn finish_router(router: Router, body_limit: usize) -> Router {
    router
        .fallback(|| async {
            Problem::new(StatusCode::NOT_FOUND, "there is nothing at this path").into_response()
        })
        .layer(middleware::from_fn(errors_as_problems))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                )
            }),
        )
}

async fn errors_as_problems(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with(PROBLEM_JSON)
                || ct.starts_with("application/json")
                || ct.starts_with("text/html")
        });
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // axum's rejection texts are short and say what was wrong with the input.
    let text = to_bytes(body, 4096).await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&text).trim().to_string();
    let problem = Problem::new(
        status,
        if detail.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            detail
        },
    );
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    Response::from_parts(parts, Body::from(body))
}
