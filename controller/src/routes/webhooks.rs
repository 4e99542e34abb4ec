//! `POST /webhooks/{github,gitea,gitlab,generic}`: no token (forges cannot
//! send one); the project's trigger secret signs the body instead.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ick_api::controller::WebhookAnswer;

use crate::AppState;
use crate::error::Result;
use crate::webhooks::{self, forges::Forge};

async fn receive(
    state: AppState,
    forge: Forge,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<WebhookAnswer>)> {
    let (status, answer) = webhooks::receive(&state, forge, &headers, body).await?;
    Ok((status, Json(answer)))
}

pub(super) async fn github(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<WebhookAnswer>)> {
    receive(state, Forge::GitHub, headers, body).await
}

pub(super) async fn gitea(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<WebhookAnswer>)> {
    receive(state, Forge::Gitea, headers, body).await
}

pub(super) async fn gitlab(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<WebhookAnswer>)> {
    receive(state, Forge::GitLab, headers, body).await
}

pub(super) async fn generic(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<WebhookAnswer>)> {
    receive(state, Forge::Generic, headers, body).await
}
