//! `/uploads`: resumable upload sessions.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ick_api::auth::Authorized;
use ick_api::auth::scopes::BlobsWrite;
use ick_api::blobs::{ChunkRange, Digest, UPLOAD_OFFSET, UploadStatus};
use serde::Deserialize;

use super::blobs::stored;
use super::{content_length, set};
use crate::AppState;
use crate::backend::Backend;
use crate::error::StoreError;
use crate::uploads::ChunkHeaders;

/// Headers that tell a session's state, OCI's `Range` among them.
fn offset_headers(response: &mut Response, id: &str, offset: u64) {
    let headers = response.headers_mut();
    set(headers, header::LOCATION, &format!("/uploads/{id}"));
    set(headers, UPLOAD_OFFSET, &offset.to_string());
    if offset > 0 {
        set(headers, header::RANGE, &format!("0-{}", offset - 1));
    }
}

fn chunk_headers(headers: &HeaderMap) -> Result<ChunkHeaders, StoreError> {
    let range = match headers.get(header::CONTENT_RANGE) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| StoreError::BadRequest("Content-Range is not text".into()))?;
            Some(ChunkRange::parse(value).map_err(StoreError::BadRequest)?)
        }
    };
    Ok(ChunkHeaders {
        range,
        length: content_length(headers)?,
    })
}

/// `POST /uploads`: opens a session.
pub(super) async fn create<B: Backend>(
    State(state): State<AppState<B>>,
    auth: Authorized<BlobsWrite>,
) -> Result<Response, StoreError> {
    let id = state.uploads.create(&auth.caller.client_id).await?;
    tracing::info!(upload = %id, "upload session opened");
    let mut response = (
        StatusCode::CREATED,
        Json(UploadStatus {
            id: id.clone(),
            offset: 0,
        }),
    )
        .into_response();
    offset_headers(&mut response, &id, 0);
    Ok(response)
}

/// `HEAD /uploads/{id}`: the offset.
pub(super) async fn status<B: Backend>(
    State(state): State<AppState<B>>,
    auth: Authorized<BlobsWrite>,
    Path(id): Path<String>,
) -> Result<Response, StoreError> {
    let offset = state.uploads.offset(&id, &auth.caller.client_id).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    offset_headers(&mut response, &id, offset);
    Ok(response)
}

/// `PATCH /uploads/{id}`: appends a chunk at the offset its
/// `Content-Range` gives (or at the end, without one).
pub(super) async fn append<B: Backend>(
    State(state): State<AppState<B>>,
    auth: Authorized<BlobsWrite>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, StoreError> {
    let chunk = chunk_headers(&headers)?;
    let offset = state
        .uploads
        .append(
            &id,
            &auth.caller.client_id,
            chunk,
            body,
            state.max_blob_size,
        )
        .await?;
    let mut response = StatusCode::ACCEPTED.into_response();
    offset_headers(&mut response, &id, offset);
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub(super) struct CompleteQuery {
    digest: Option<String>,
}

/// `PUT /uploads/{id}?digest=`: checks the digest and makes the blob.
pub(super) async fn complete<B: Backend>(
    State(state): State<AppState<B>>,
    auth: Authorized<BlobsWrite>,
    Path(id): Path<String>,
    Query(query): Query<CompleteQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, StoreError> {
    let declared: Digest = query
        .digest
        .ok_or_else(|| {
            StoreError::BadRequest(
                "the digest query parameter (?digest=sha256:…) is required".into(),
            )
        })?
        .parse()?;
    let chunk = chunk_headers(&headers)?;
    let (info, created) = state
        .uploads
        .complete(
            &id,
            &auth.caller.client_id,
            declared,
            chunk,
            body,
            state.max_blob_size,
            &state.backend,
        )
        .await?;
    state.counters.received(info.size);
    if created {
        state.counters.stored(info.size);
    }
    tracing::info!(upload = %id, digest = %info.digest, size = info.size, "upload completed");
    Ok(stored(info, created))
}

/// `DELETE /uploads/{id}`: abandons the session and its bytes.
pub(super) async fn abort<B: Backend>(
    State(state): State<AppState<B>>,
    auth: Authorized<BlobsWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, StoreError> {
    state.uploads.abort(&id, &auth.caller.client_id).await?;
    tracing::info!(upload = %id, "upload session aborted");
    Ok(StatusCode::NO_CONTENT)
}
