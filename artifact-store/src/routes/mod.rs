//! The HTTP API: one file per resource.

mod blobs;
mod refs;
mod uploads;

use axum::Router;
use axum::http::header::IntoHeaderName;
use axum::http::{HeaderMap, HeaderValue, header};
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
        .with_state(state)
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
