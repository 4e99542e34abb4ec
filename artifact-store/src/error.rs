//! The artifact store's one error type, answered as problem+json.

use std::io;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ick_api::Problem;
use ick_api::blobs::{Digest, DigestError, RefNameError, UPLOAD_OFFSET};

/// What can go wrong in the artifact store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A path or query held something that is not a digest.
    #[error(transparent)]
    BadDigest(#[from] DigestError),
    /// Not a valid ref name or prefix.
    #[error(transparent)]
    BadRefName(#[from] RefNameError),
    /// The request is wrong; the text says how.
    #[error("{0}")]
    BadRequest(String),
    /// The bytes do not hash to the declared digest.
    #[error(
        "the bytes received hash to {actual}, not to the declared {declared}; nothing was stored"
    )]
    DigestMismatch {
        /// What the client said.
        declared: Digest,
        /// What the bytes are.
        actual: Digest,
    },
    /// No such blob.
    #[error("there is no blob {0}")]
    BlobNotFound(Digest),
    /// No such ref.
    #[error("there is no ref {0:?}")]
    RefNotFound(String),
    /// No such upload session (or not the caller's).
    #[error("there is no upload session {0:?}; it may have completed, been aborted or expired")]
    UploadNotFound(String),
    /// A ref must point at an existing blob.
    #[error("there is no blob {0}: upload it before pointing a ref at it")]
    RefTargetMissing(Digest),
    /// A newer request for the same upload session took over.
    #[error("a newer request for this upload session took over; ask HEAD for the offset")]
    Superseded,
    /// A chunk does not start where the session ends.
    #[error(
        "the chunk starts at byte {got} but the session holds {held} bytes; send from byte {held}"
    )]
    WrongOffset {
        /// What the session holds.
        held: u64,
        /// Where the chunk started.
        got: u64,
    },
    /// The asked range lies outside the blob.
    #[error("the range is outside the blob's {size} bytes")]
    RangeNotSatisfiable {
        /// The blob's size.
        size: u64,
    },
    /// More than the configured maximum.
    #[error("the blob would be larger than the store's limit of {limit} bytes; nothing was stored")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The disk (or bucket quota) is full.
    #[error("the store is out of space; nothing was stored")]
    InsufficientStorage,
    /// The request body ended before it was complete (a cut connection).
    #[error("the request body broke off: {0}")]
    BodyBroken(String),
    /// Storage failed.
    #[error("storage failed: {0}")]
    Storage(String),
    /// Anything else that is our fault.
    #[error("{0}")]
    Internal(String),
}

impl StoreError {
    /// An I/O error while `doing` something: full disks are 507, the rest
    /// is ours.
    pub fn io(doing: &str, e: io::Error) -> StoreError {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                StoreError::InsufficientStorage
            }
            _ => StoreError::Storage(format!("{doing}: {e}")),
        }
    }
}

impl From<object_store::Error> for StoreError {
    fn from(e: object_store::Error) -> Self {
        StoreError::Storage(format!("object store: {e}"))
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Internal(format!("a blocking task failed: {e}"))
    }
}

impl IntoResponse for StoreError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let (problem, extra) = match &self {
            StoreError::BadDigest(_) => (
                Problem::new(StatusCode::BAD_REQUEST, detail).with_title("Invalid digest"),
                None,
            ),
            StoreError::BadRefName(_) => (
                Problem::new(StatusCode::BAD_REQUEST, detail).with_title("Invalid ref name"),
                None,
            ),
            StoreError::BadRequest(_) => (Problem::new(StatusCode::BAD_REQUEST, detail), None),
            StoreError::DigestMismatch { declared, actual } => (
                Problem::new(StatusCode::BAD_REQUEST, detail)
                    .with_title("Digest mismatch")
                    .with("declared", declared.to_string())
                    .with("actual", actual.to_string()),
                None,
            ),
            StoreError::BodyBroken(_) => (
                Problem::new(StatusCode::BAD_REQUEST, detail).with_title("Incomplete body"),
                None,
            ),
            StoreError::BlobNotFound(_)
            | StoreError::RefNotFound(_)
            | StoreError::UploadNotFound(_) => (Problem::new(StatusCode::NOT_FOUND, detail), None),
            StoreError::RefTargetMissing(_) => (
                Problem::new(StatusCode::CONFLICT, detail).with_title("Unknown blob"),
                None,
            ),
            StoreError::Superseded => (
                Problem::new(StatusCode::CONFLICT, detail).with_title("Superseded"),
                None,
            ),
            StoreError::WrongOffset { held, .. } => (
                Problem::new(StatusCode::RANGE_NOT_SATISFIABLE, detail)
                    .with_title("Wrong offset")
                    .with("offset", *held),
                Some((UPLOAD_OFFSET, held.to_string())),
            ),
            StoreError::RangeNotSatisfiable { size } => (
                Problem::new(StatusCode::RANGE_NOT_SATISFIABLE, detail),
                Some((header::CONTENT_RANGE.as_str(), format!("bytes */{size}"))),
            ),
            StoreError::TooLarge { limit } => (
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
                    .with_title("Blob too large")
                    .with("limit", *limit),
                None,
            ),
            StoreError::InsufficientStorage => (
                Problem::new(StatusCode::INSUFFICIENT_STORAGE, detail).with_title("Out of space"),
                None,
            ),
            StoreError::Storage(_) | StoreError::Internal(_) => {
                // The details are ours to read in the log, not the caller's.
                tracing::error!(error = %self, "internal error");
                (
                    Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the artifact store failed; see its log",
                    ),
                    None,
                )
            }
        };
        let mut response = problem.into_response();
        if let Some((name, value)) = extra
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
