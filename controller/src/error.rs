//! The controller's one error type, answered as problem+json in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ick_api::Problem;
use ick_api::work::{PROBLEM_MISSING_CHUNKS, PROBLEM_STALE_ATTEMPT};

use crate::store;

/// What can go wrong in the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// There is no such thing; the text names it.
    #[error("{0}")]
    NotFound(String),
    /// A definition does not parse or is not valid; YAML errors say where.
    #[error("{message}")]
    InvalidDefinition {
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    /// Definitions of a batch that do not parse or are not valid, each
    /// placed in its file.
    #[error("{}", .0.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))]
    InvalidDefinitions(Vec<ick_api::controller::DefinitionProblem>),
    /// The request is wrong; the text says how.
    #[error("{0}")]
    BadRequest(String),
    /// The request conflicts with the current state; the text says how.
    #[error("{0}")]
    Conflict(String),
    /// A web hook without a valid proof of its project's secret.
    #[error("{0}")]
    Unauthorized(String),
    /// No token, where only a public project could be read without one:
    /// answered as a request without a token is everywhere (401 with
    /// `WWW-Authenticate`).
    #[error("the request has no bearer token")]
    NoToken,
    /// The caller may not do this; the text says why.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failures from this caller; it may retry after the seconds
    /// given.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// The body is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// A work call from an attempt that is no longer current.
    #[error(
        "attempt {attempt} of node {node} is not current (the node is at attempt {current}, {status})"
    )]
    StaleAttempt {
        node: String,
        attempt: i64,
        current: i64,
        status: String,
    },
    /// `done` before all the attempt's chunks arrived.
    #[error(
        "the controller holds {held} of the {expected} chunks of this attempt: resend the others, then done again"
    )]
    MissingChunks { held: i64, expected: i64 },
    /// The database failed.
    #[error("storage failed: {0}")]
    Storage(#[from] sqlx::Error),
    /// Anything else that is our fault.
    #[error("{0}")]
    Internal(String),
}

impl ControllerError {
    /// An internal error from anything displayable.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ControllerError::Internal(e.to_string())
    }

    /// Whether the database asks for the transaction to be run again
    /// (Postgres deadlock or serialization failure).
    pub fn is_retryable(&self) -> bool {
        match self {
            ControllerError::Storage(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40001" | "40P01"))
            }
            _ => false,
        }
    }
}

impl IntoResponse for ControllerError {
    fn into_response(self) -> Response {
        let text = self.to_string();
        let problem = match self {
            ControllerError::NotFound(_) => Problem::new(StatusCode::NOT_FOUND, text),
            ControllerError::InvalidDefinition { line, column, .. } => {
                let mut p =
                    Problem::new(StatusCode::BAD_REQUEST, text).with_title("Invalid definition");
                if let Some(line) = line {
                    p = p.with("line", line);
                }
                if let Some(column) = column {
                    p = p.with("column", column);
                }
                p
            }
            ControllerError::InvalidDefinitions(problems) => {
                let detail = problems
                    .iter()
                    .map(|p| format!("{}: {}", p.origin(), p.message))
                    .collect::<Vec<_>>()
                    .join("\n");
                Problem::new(StatusCode::BAD_REQUEST, detail)
                    .with_title("Invalid definitions")
                    .with(
                        "errors",
                        serde_json::to_value(&problems).unwrap_or_default(),
                    )
            }
            ControllerError::BadRequest(_) => Problem::new(StatusCode::BAD_REQUEST, text),
            ControllerError::Conflict(_) => Problem::new(StatusCode::CONFLICT, text),
            ControllerError::Unauthorized(_) => Problem::new(StatusCode::UNAUTHORIZED, text),
            ControllerError::NoToken => {
                return ick_api::auth::AuthRejection::Unauthenticated(text).into_response();
            }
            ControllerError::Forbidden(_) => Problem::new(StatusCode::FORBIDDEN, text),
            ControllerError::TooLarge(_) => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, text),
            ControllerError::TooManyRequests { retry_after, .. } => {
                let mut response = Problem::new(StatusCode::TOO_MANY_REQUESTS, text)
                    .with("retry_after", retry_after)
                    .into_response();
                let headers = response.headers_mut();
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                // Answered before the body is read: the connection cannot
                // carry another request.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
            ControllerError::StaleAttempt { current, .. } => {
                let mut p = Problem::new(StatusCode::CONFLICT, text)
                    .with_title("Stale attempt")
                    .with("current_attempt", current);
                p.kind = PROBLEM_STALE_ATTEMPT.to_string();
                p
            }
            ControllerError::MissingChunks { held, expected } => {
                let mut p = Problem::new(StatusCode::CONFLICT, text)
                    .with_title("Missing output chunks")
                    .with("held", held)
                    .with("expected", expected);
                p.kind = PROBLEM_MISSING_CHUNKS.to_string();
                p
            }
            ControllerError::Storage(e) if store::unreachable(&e) => {
                tracing::warn!(error = %text, "the database is away");
                return Problem::unavailable(
                    "the controller cannot reach its database; try again shortly",
                    store::RETRY_AFTER_SECONDS,
                );
            }
            ControllerError::Storage(_) | ControllerError::Internal(_) => {
                // The details are ours to read in the log, not the caller's.
                tracing::error!(error = %text, "internal error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the controller failed; see its log",
                )
            }
        };
        problem.into_response()
    }
}

/// The controller's result type.
pub type Result<T, E = ControllerError> = std::result::Result<T, E>;
