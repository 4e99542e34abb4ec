//! `POST /webhooks/{github,gitea,gitlab,generic}[?project=NAME]`: no token
//! (forges cannot send one); the project's trigger secret signs the body
//! instead.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use ick_api::controller::WebhookAnswer;
use serde::Deserialize;

use super::AppState;
use crate::error::Result;
use crate::webhooks::{self, forges::Forge};

#[derive(Debug, Deserialize)]
pub(super) struct HookQuery {
    /// Try only this project's secret (for many projects).
    project: Option<String>,
}

async fn receive(
    state: AppState,
    forge: Forge,
    query: HookQuery,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<WebhookAnswer>)> {
    let only = query.project.as_deref();
    let (status, answer) = webhooks::receive(
        &state.core,
        &state.hook_failures,
        forge,
        only,
        peer.ip(),
        &headers,
        body,
    )
    .await?;
    Ok((status, Json(answer)))
}

pub(super) async fn github(
    State(state): State<AppState>,
    Query(query): Query<HookQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<WebhookAnswer>)> {
    receive(state, Forge::GitHub, query, peer, headers, body).await
}

pub(super) async fn gitea(
    State(state): State<AppState>,
    Query(query): Query<HookQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<WebhookAnswer>)> {
    receive(state, Forge::Gitea, query, peer, headers, body).await
}

pub(super) async fn gitlab(
    State(state): State<AppState>,
    Query(query): Query<HookQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<WebhookAnswer>)> {
    receive(state, Forge::GitLab, query, peer, headers, body).await
}

pub(super) async fn generic(
    State(state): State<AppState>,
    Query(query): Query<HookQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<WebhookAnswer>)> {
    receive(state, Forge::Generic, query, peer, headers, body).await
}
