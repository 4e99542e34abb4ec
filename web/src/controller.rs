//! The controller's public HTTP API, called with the person's token (or
//! none, for a public project): the dashboard shows and does exactly what
//! their roles allow, because the controller decides.

use ick_api::controller::LogChunk;
use ick_api::problem::Problem;
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, WebError};

#[derive(Clone)]
pub struct Controller {
    http: reqwest::Client,
    base: String,
}

pub use ick_api::http::segment;

impl Controller {
    pub fn new(http: reqwest::Client, base: &str) -> Controller {
        Controller {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    fn request(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .map_err(|e| WebError::Upstream(format!("the controller is unreachable: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let problem: Option<Problem> = response.json().await.ok();
        let detail = problem
            .and_then(|p| p.detail.or(Some(p.title)))
            .unwrap_or_else(|| status.to_string());
        Err(match status {
            StatusCode::UNAUTHORIZED => WebError::Unauthenticated,
            StatusCode::FORBIDDEN => WebError::Forbidden(detail),
            StatusCode::NOT_FOUND => WebError::NotFound(detail),
            s if s.is_client_error() => WebError::BadRequest(detail),
            _ => WebError::Upstream(format!("the controller failed: {detail}")),
        })
    }

    /// `GET path?query`, as JSON.
    pub async fn get<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        token: Option<&str>,
        path: &str,
        query: &Q,
    ) -> Result<T> {
        let request = self.request(reqwest::Method::GET, token, path).query(query);
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|e| WebError::Upstream(format!("the controller answered oddly: {e}")))
    }

    /// `POST path` with an empty JSON body, its answer unread.
    pub async fn post(&self, token: &str, path: &str) -> Result<()> {
        self.post_json::<serde::de::IgnoredAny>(token, path)
            .await
            .map(|_| ())
    }

    /// `POST path` with an empty JSON body, reading the answer.
    pub async fn post_json<T: DeserializeOwned>(&self, token: &str, path: &str) -> Result<T> {
        let request = self
            .request(reqwest::Method::POST, Some(token), path)
            .json(&serde_json::json!({}));
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|e| WebError::Upstream(format!("the controller answered oddly: {e}")))
    }

    /// A page of a build's log: its chunks, and the cursor of the next.
    pub async fn log_page(
        &self,
        token: Option<&str>,
        build: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<LogChunk>, Option<String>)> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        let request = self
            .request(
                reqwest::Method::GET,
                token,
                &format!("/builds/{}/log", segment(build)),
            )
            .query(&query);
        let response = self.send(request).await?;
        let next = response
            .headers()
            .get(ick_api::controller::NEXT_PAGE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let chunks = response
            .json()
            .await
            .map_err(|e| WebError::Upstream(format!("the controller answered oddly: {e}")))?;
        Ok((chunks, next))
    }

    /// The build's live log (Server-Sent Events), to stream through.
    pub async fn follow(&self, token: Option<&str>, build: &str) -> Result<reqwest::Response> {
        let request = self
            .request(
                reqwest::Method::GET,
                token,
                &format!("/builds/{}/log/stream", segment(build)),
            )
            .header(reqwest::header::ACCEPT, "text/event-stream");
        self.send(request).await
    }

    /// The whole log as text, streamed through.
    pub async fn raw_log(&self, token: Option<&str>, build: &str) -> Result<reqwest::Response> {
        let request = self
            .request(
                reqwest::Method::GET,
                token,
                &format!("/builds/{}/log", segment(build)),
            )
            .header(reqwest::header::ACCEPT, "text/plain");
        self.send(request).await
    }
}
