//! The IDP's one error type, answered as problem+json.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ick_api::Problem;

/// What can go wrong in the IDP's admin API and storage.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// No client with that id.
    #[error("no client {0:?}")]
    ClientNotFound(String),
    /// Names are unique.
    #[error("a client named {0:?} already exists")]
    NameTaken(String),
    /// No such user, group or membership; the text says which.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken; the text says whose.
    #[error("{0}")]
    Conflict(String),
    /// The request is wrong; the text says how.
    #[error("{0}")]
    BadRequest(String),
    /// The database failed.
    #[error("storage failed: {0}")]
    Storage(#[from] sqlx::Error),
    /// Anything else that is our fault.
    #[error("{0}")]
    Internal(String),
}

/// Seconds a caller is told to wait when the database is away.
pub const RETRY_AFTER_SECONDS: u64 = 5;

impl IdpError {
    /// Whether the database could not be reached (stopped, no connection
    /// within the acquire timeout, a broken connection).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            IdpError::Storage(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            )
        )
    }
}

impl IntoResponse for IdpError {
    fn into_response(self) -> Response {
        if self.is_unreachable() {
            tracing::warn!(error = %self, "the database is away");
            return Problem::unavailable(
                "the identity provider cannot reach its database; try again shortly",
                RETRY_AFTER_SECONDS,
            );
        }
        let problem = match &self {
            IdpError::ClientNotFound(_) => Problem::new(StatusCode::NOT_FOUND, self.to_string()),
            IdpError::NameTaken(_) | IdpError::Conflict(_) => {
                Problem::new(StatusCode::CONFLICT, self.to_string())
            }
            IdpError::NotFound(_) => Problem::new(StatusCode::NOT_FOUND, self.to_string()),
            IdpError::BadRequest(_) => Problem::new(StatusCode::BAD_REQUEST, self.to_string()),
            IdpError::Storage(_) | IdpError::Internal(_) => {
                // The details are ours to read in the log, not the caller's.
                tracing::error!(error = %self, "internal error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the identity provider failed; see its log",
                )
            }
        };
        problem.into_response()
    }
}
