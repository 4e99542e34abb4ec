//! What can go wrong: an action that cannot run (its message ends the node
//! and is shown to the user), and a call to the controller that failed
//! (the worker retries, gives up on a stale attempt, or says why).

use ick_api::work::{PROBLEM_MISSING_CHUNKS, PROBLEM_STALE_ATTEMPT};
use ick_api::{Problem, TokenError};

/// Why an action could not run (bad spec, missing blob, no plugin...). The
/// text is the node's message: it says what to fix, never our internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ActionError(pub String);

impl ActionError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ActionError(message.into())
    }
}

impl From<String> for ActionError {
    fn from(message: String) -> Self {
        ActionError(message)
    }
}

/// A failed call to the controller.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The attempt is no longer current (or the node is gone): stop
    /// working on it and report nothing more.
    #[error("the attempt is no longer current: {0}")]
    Stale(String),
    /// `done` was refused: the controller holds only `held` chunks.
    #[error("the controller holds only {held} chunks of the attempt")]
    MissingChunks {
        /// Chunks it holds.
        held: i64,
    },
    /// The controller refused for another reason.
    #[error("the controller refused: {0}")]
    Refused(Problem),
    /// The controller could not be reached, or the connection broke.
    #[error("cannot reach the controller at {url}: {source}")]
    Transport {
        /// What was asked.
        url: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
    /// No token could be had.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The controller answered something this worker does not understand.
    #[error("unexpected answer from the controller: {0}")]
    Protocol(String),
}

impl CallError {
    /// The error a non-success answer carries.
    pub(crate) fn from_problem(problem: Problem) -> CallError {
        match problem.status {
            409 if problem.kind == PROBLEM_STALE_ATTEMPT => CallError::Stale(problem.to_string()),
            409 if problem.kind == PROBLEM_MISSING_CHUNKS => CallError::MissingChunks {
                held: problem
                    .extensions
                    .get("held")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0),
            },
            404 => CallError::Stale(problem.to_string()),
            _ => CallError::Refused(problem),
        }
    }

    /// Whether trying again later may help: a broken connection, the
    /// controller's temporary troubles, or the IDP's.
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Transport { .. } | CallError::Token(_) | CallError::Protocol(_) => true,
            CallError::Refused(problem) => {
                matches!(problem.status, 401 | 408 | 429 | 500 | 502 | 503 | 504)
            }
            CallError::Stale(_) | CallError::MissingChunks { .. } => false,
        }
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Refused(problem) => Some(problem.status),
            _ => None,
        }
    }
}
