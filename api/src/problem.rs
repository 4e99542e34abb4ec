//! RFC 9457 problem details: the body of every error Ick answers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The media type of a problem body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem: what went wrong, for a person and for a program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type", default = "about_blank")]
    pub kind: String,
    /// A short summary that does not change between occurrences.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, for a person to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Further members (e.g. `line` and `column` of a YAML error).
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

fn about_blank() -> String {
    "about:blank".to_string()
}

impl Problem {
    /// A problem with the status's standard title and the given detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            kind: about_blank(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: Some(detail.into()),
            extensions: Map::new(),
        }
    }

    /// The problem a refusal's body holds; for a body that is not one
    /// (a proxy's page), one made of its first 300 characters, or of the
    /// status if it is empty.
    pub fn of_refusal(status: StatusCode, body: &str) -> Self {
        serde_json::from_str::<Problem>(body).unwrap_or_else(|_| {
            let detail: String = body.chars().take(300).collect();
            match detail.trim().is_empty() {
                true => Problem::new(status, format!("HTTP {status}")),
                false => Problem::new(status, detail),
            }
        })
    }

    /// Replaces the title.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_string(), value.into());
        self
    }

    /// 503 with `Retry-After`: a part the service needs (its database) is
    /// away; the caller may try again after `retry_after` seconds.
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Response {
        let mut response = Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            .with("retry_after", retry_after)
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        response
    }

    /// The status as a `StatusCode` (500 if the number is not a status).
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(detail) => write!(f, "{}: {detail}", self.title),
            None => f.write_str(&self.title),
        }
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_rfc_9457_with_extensions_at_the_top_level() {
        let p = Problem::new(StatusCode::BAD_REQUEST, "bad yaml").with("line", 3);
        let v = serde_json::to_value(&p).expect("serializes");
        assert_eq!(
            v,
            serde_json::json!({
                "type": "about:blank", "title": "Bad Request", "status": 400,
                "detail": "bad yaml", "line": 3
            })
        );
        let back: Problem = serde_json::from_value(v).expect("parses");
        assert_eq!(back, p);
    }
}
