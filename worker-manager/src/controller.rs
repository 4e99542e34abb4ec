//! The worker's side of the work protocol (`ick_api::work`): one client of
//! the controller, with tokens renewed on a 401.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ick_api::work::{
    ClaimRequest, Done, Heartbeat, HeartbeatReply, Leave, Presence, WorkAssignment, WorkerState,
};
use ick_api::{Problem, TokenSource};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::CallError;

/// How long a call other than a claim may take before it counts as lost.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Longer than the controller holds a presence connection open.
const PRESENCE_TIMEOUT: Duration = Duration::from_secs(400);

/// A worker saying it leaves does not hold up its stop for long.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one controller. Cheap to clone.
#[derive(Clone)]
pub struct ControllerClient {
    http: reqwest::Client,
    base: Arc<str>,
    tokens: Arc<TokenSource>,
}

impl ControllerClient {
    /// A client of the controller at `base`.
    pub fn new(http: reqwest::Client, base: &str, tokens: Arc<TokenSource>) -> Self {
        ControllerClient {
            http,
            base: base.trim_end_matches('/').into(),
            tokens,
        }
    }

    /// `POST /work/claim`: an assignment, or `None` when the wait ended.
    pub async fn claim(&self, request: &ClaimRequest) -> Result<Option<WorkAssignment>, CallError> {
        let body = to_json(request)?;
        let timeout = Duration::from_secs(request.wait) + Duration::from_secs(20);
        let response = self.post("/work/claim", body, timeout).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        json(response).await.map(Some)
    }

    /// `POST /work/{node}/heartbeat`.
    pub async fn heartbeat(&self, node: &str, attempt: i64) -> Result<HeartbeatReply, CallError> {
        let body = to_json(&Heartbeat { attempt })?;
        let response = self
            .post(&format!("/work/{node}/heartbeat"), body, CALL_TIMEOUT)
            .await?;
        json(response).await
    }

    /// `POST /work/{node}/output` with a body already encoded as an
    /// `OutputBatch`.
    pub async fn output(&self, node: &str, batch: Bytes) -> Result<(), CallError> {
        self.post(&format!("/work/{node}/output"), batch, CALL_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// `POST /work/{node}/done`.
    pub async fn done(&self, node: &str, done: &Done) -> Result<(), CallError> {
        let body = to_json(done)?;
        self.post(&format!("/work/{node}/done"), body, CALL_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// `POST /work/presence`: the open connection, whose body the caller
    /// reads until the controller ends it (after a few minutes).
    pub async fn presence(
        &self,
        worker: &str,
        draining: bool,
    ) -> Result<reqwest::Response, CallError> {
        let body = to_json(&Presence {
            worker: worker.to_string(),
            draining,
        })?;
        self.post("/work/presence", body, PRESENCE_TIMEOUT).await
    }

    /// `POST /work/leave`.
    pub async fn leave(&self, worker: &str, state: WorkerState) -> Result<(), CallError> {
        let body = to_json(&Leave {
            worker: worker.to_string(),
            state,
        })?;
        self.post("/work/leave", body, LEAVE_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// Sends a POST with a bearer token; on a 401 gets a fresh token and
    /// sends once more. Errors unless the answer is a success.
    async fn post(
        &self,
        path: &str,
        bytes: Bytes,
        timeout: Duration,
    ) -> Result<reqwest::Response, CallError> {
        let url = ick_api::http::join(&self.base, path);
        let mut renewed = false;
        loop {
            let token = self.tokens.token().await?;
            let response = self
                .http
                .post(&url)
                .bearer_auth(&token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone())
                .timeout(timeout)
                .send()
                .await
                .map_err(|source| CallError::Transport {
                    url: url.clone(),
                    source,
                })?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !renewed {
                self.tokens.invalidate().await;
                renewed = true;
                continue;
            }
            if status.is_success() {
                return Ok(response);
            }
            let text = response.text().await.unwrap_or_default();
            let problem = serde_json::from_str::<Problem>(&text).unwrap_or_else(|_| {
                let mut detail: String = text.chars().take(300).collect();
                if detail.trim().is_empty() {
                    detail = status.canonical_reason().unwrap_or("error").to_string();
                }
                Problem::new(status, detail)
            });
            return Err(CallError::from_problem(problem));
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Bytes, CallError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| CallError::Protocol(e.to_string()))
}

async fn json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, CallError> {
    let url = response.url().to_string();
    let bytes = response
        .bytes()
        .await
        .map_err(|source| CallError::Transport { url, source })?;
    serde_json::from_slice(&bytes).map_err(|e| CallError::Protocol(format!("bad JSON: {e}")))
}
