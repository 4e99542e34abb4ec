//! The dashboard's one error type, answered as an HTML page (or, for a
//! person who must log in first, a redirect to the login).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The page needs a login (the controller answered 401).
    #[error("log in to see this page")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// The controller or the IDP failed or is away.
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, WebError>;

/// Marks a response that should become a redirect to the login, with the
/// page asked for as where to come back to (see `routes::login_first`).
#[derive(Clone, Copy)]
pub struct NeedsLogin;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            WebError::Unauthenticated => {
                let mut response = StatusCode::UNAUTHORIZED.into_response();
                response.extensions_mut().insert(NeedsLogin);
                return response;
            }
            WebError::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
            WebError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            WebError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request"),
            WebError::Upstream(_) => (StatusCode::BAD_GATEWAY, "Ick is not answering"),
            WebError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Something broke"),
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "page failed");
        }
        let page = ErrorPage {
            title,
            message: self.to_string(),
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, self.to_string()).into_response(),
        }
    }
}
