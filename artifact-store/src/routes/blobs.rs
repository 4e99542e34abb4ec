//! `/blobs`: whole blobs in and out.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use ick_api::auth::Authorized;
use ick_api::auth::scopes::{BlobsDelete, BlobsRead, BlobsWrite};
use ick_api::blobs::{BlobInfo, ByteRange, Digest, Hasher, content_range};
use tokio_util::sync::CancellationToken;

use super::{content_length, set};
use crate::AppState;
use crate::backend::{Backend, Staged};
use crate::error::StoreError;
use crate::staging::{ChunkWriter, Stop, TempFile, pump};

/// `POST /blobs`: stores the body under its digest.
pub(super) async fn post<B: Backend>(
    State(state): State<AppState<B>>,
    _: Authorized<BlobsWrite>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, StoreError> {
    ingest(&state, None, &headers, body).await
}

/// `PUT /blobs/{digest}`: the same, refusing bytes that hash otherwise.
pub(super) async fn put<B: Backend>(
    State(state): State<AppState<B>>,
    _: Authorized<BlobsWrite>,
    Path(digest): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, StoreError> {
    let declared: Digest = digest.parse()?;
    ingest(&state, Some(declared), &headers, body).await
}

/// The answer to a finished upload: 201 for a new blob, 200 for one that
/// was already there.
pub(super) fn stored(info: BlobInfo, created: bool) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(&info)).into_response();
    set(
        response.headers_mut(),
        header::LOCATION,
        &format!("/blobs/{}", info.digest),
    );
    response
}

async fn ingest<B: Backend>(
    state: &AppState<B>,
    declared: Option<Digest>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, StoreError> {
    let max = state.max_blob_size;
    if content_length(headers)?.is_some_and(|len| len > max) {
        return Err(StoreError::TooLarge { limit: max });
    }
    let (tmp, file) = state
        .backend
        .staging()
        .temp_file_async()
        .await
        .map_err(|e| StoreError::io("creating a temporary file", e))?;
    let result = receive(state, declared, body, &tmp, file).await;
    // Whatever happened, the staging file is gone before the answer.
    tmp.remove().await;
    let (info, created) = result?;
    tracing::info!(digest = %info.digest, size = info.size, created, "blob stored");
    Ok(stored(info, created))
}

/// Hashes the body into `tmp` and commits it.
async fn receive<B: Backend>(
    state: &AppState<B>,
    declared: Option<Digest>,
    body: Body,
    tmp: &TempFile,
    file: std::fs::File,
) -> Result<(BlobInfo, bool), StoreError> {
    let max = state.max_blob_size;
    let mut writer = ChunkWriter::spawn(file, Some(Hasher::new()));
    // Nothing takes over a single-request upload.
    let never = CancellationToken::new();
    let pumped = pump(body, &mut writer, max, &never).await;
    // The writer's error (a full disk) explains a stop best.
    let written = writer
        .finish()
        .await
        .map_err(|e| StoreError::io("writing a blob", e))?;
    match pumped {
        Ok(_) => {}
        Err((Stop::TooLarge, _)) => return Err(StoreError::TooLarge { limit: max }),
        Err((Stop::Broken(why), _)) => return Err(StoreError::BodyBroken(why)),
        Err((Stop::WriterStopped | Stop::Cancelled, _)) => {
            return Err(StoreError::Internal("the blob writer stopped".into()));
        }
    }
    let actual = written
        .hasher
        .ok_or_else(|| StoreError::Internal("the blob writer did not hash".into()))?
        .finish();
    if let Some(declared) = declared
        && declared != actual
    {
        return Err(StoreError::DigestMismatch { declared, actual });
    }
    let size = written.bytes;
    let created = state
        .backend
        .commit(Staged {
            path: tmp.path().to_path_buf(),
            file: written.file,
            digest: actual,
            size,
        })
        .await?;
    state.counters.received(size);
    if created {
        state.counters.stored(size);
    }
    Ok((
        BlobInfo {
            digest: actual,
            size,
        },
        created,
    ))
}

fn blob_headers(headers: &mut HeaderMap, digest: &Digest, length: u64) {
    set(headers, header::CONTENT_LENGTH, &length.to_string());
    set(headers, header::CONTENT_TYPE, "application/octet-stream");
    set(headers, header::ETAG, &digest.etag());
    set(headers, header::ACCEPT_RANGES, "bytes");
    // The bytes under a digest never change.
    set(
        headers,
        header::CACHE_CONTROL,
        "private, max-age=31536000, immutable",
    );
}

/// `GET /blobs/{digest}`: the bytes, or a range of them (206).
pub(super) async fn get<B: Backend>(
    State(state): State<AppState<B>>,
    _: Authorized<BlobsRead>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Result<Response, StoreError> {
    let digest: Digest = digest.parse()?;
    let size = state
        .backend
        .size(&digest)
        .await?
        .ok_or(StoreError::BlobNotFound(digest))?;
    let etag = digest.etag();
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        set(response.headers_mut(), header::ETAG, &etag);
        return Ok(response);
    }
    let asked = match headers.get(header::RANGE) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| StoreError::BadRequest("the Range header is not text".into()))?;
            ByteRange::parse_header(value).map_err(StoreError::BadRequest)?
        }
    };
    let range = match asked {
        None => None,
        Some(asked) => Some(
            asked
                .resolve(size)
                .ok_or(StoreError::RangeNotSatisfiable { size })?,
        ),
    };
    let stream = state
        .backend
        .read(&digest, range.clone())
        .await?
        .ok_or(StoreError::BlobNotFound(digest))?;
    let counters = state.counters.clone();
    let stream = stream.inspect_ok(move |chunk| counters.sent(chunk.len()));
    let mut response = Body::from_stream(stream).into_response();
    match range {
        None => blob_headers(response.headers_mut(), &digest, size),
        Some(range) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            blob_headers(response.headers_mut(), &digest, range.end - range.start);
            set(
                response.headers_mut(),
                header::CONTENT_RANGE,
                &content_range(&range, size),
            );
        }
    }
    Ok(response)
}

/// `HEAD /blobs/{digest}`: the size and entity tag.
pub(super) async fn head<B: Backend>(
    State(state): State<AppState<B>>,
    _: Authorized<BlobsRead>,
    Path(digest): Path<String>,
) -> Result<Response, StoreError> {
    let digest: Digest = digest.parse()?;
    let size = state
        .backend
        .size(&digest)
        .await?
        .ok_or(StoreError::BlobNotFound(digest))?;
    let mut response = StatusCode::OK.into_response();
    blob_headers(response.headers_mut(), &digest, size);
    Ok(response)
}

/// `DELETE /blobs/{digest}`.
pub(super) async fn delete<B: Backend>(
    State(state): State<AppState<B>>,
    _: Authorized<BlobsDelete>,
    Path(digest): Path<String>,
) -> Result<StatusCode, StoreError> {
    let digest: Digest = digest.parse()?;
    let size = state.backend.size(&digest).await?;
    if state.backend.delete(&digest).await? {
        state.counters.deleted(size.unwrap_or(0));
        tracing::info!(%digest, "blob deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(StoreError::BlobNotFound(digest))
    }
}
