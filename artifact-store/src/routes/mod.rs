//! The HTTP API: one file per resource.

mod blobs;
mod refs;
mod uploads;

use axum::Router;
use axum::extract::Request;
use axum::http::header::IntoHeaderName;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

use crate::AppState;
use crate::backend::Backend;
use crate::error::StoreError;

/// Every route but health, which `lib.rs` adds.
pub(crate) fn router<B: Backend>(state: AppState<B>) -> Router {
    Router::new()
        .route("/blobs", post(blobs::post::<B>))
        .route(
            "/blobs/{digest}",
            get(blobs::get::<B>)
                .head(blobs::head::<B>)
                .put(blobs::put::<B>)
                .delete(blobs::delete::<B>),
        )
        .route("/uploads", post(uploads::create::<B>))
        .route(
            "/uploads/{id}",
            axum::routing::patch(uploads::append::<B>)
                .head(uploads::status::<B>)
                .put(uploads::complete::<B>)
                .delete(uploads::abort::<B>),
        )
        .route("/refs", get(refs::list::<B>))
        .route(
            "/refs/{*name}",
            get(refs::get::<B>)
                .put(refs::set::<B>)
                .delete(refs::delete::<B>),
        )
        .layer(axum::middleware::from_fn(close_after_refused_bodies))
        .with_state(state)
}

/// An error may be answered before the request body was read (a 413 on
/// the declared length, a full disk); then the connection cannot carry
/// another request, and saying so keeps clients from reusing it.
async fn close_after_refused_bodies(request: Request, next: Next) -> Response {
    let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
        || content_length(request.headers()).is_ok_and(|len| len.unwrap_or(0) > 0);
    let mut response = next.run(request).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        set(response.headers_mut(), header::CONNECTION, "close");
    }
    response
}

/// The `Content-Length` a request declares, if any.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, StoreError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| StoreError::BadRequest("Content-Length is not a number".into())),
    }
}

/// Adds a header whose value we made (so it is valid).
fn set(headers: &mut HeaderMap, name: impl IntoHeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}
