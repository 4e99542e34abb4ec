//! The admin API: `/clients`, scope `idp:admin`.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use ick_api::audit::Actor;
use ick_api::auth::{Authorized, scopes::IdpAdmin};
use ick_api::oauth::{ClientInfo, ClientWithSecret, CreateClient, UpdateClient};
use ick_api::server::JsonBody;

use crate::AppState;
use crate::clients;
use crate::error::IdpError;

pub(super) async fn create(
    auth: Authorized<IdpAdmin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateClient>,
) -> Result<(StatusCode, Json<ClientWithSecret>), IdpError> {
    let actor = Actor::of(&auth.caller, peer.ip());
    let audience = body
        .audience
        .unwrap_or_else(|| state.config.default_audience.clone());
    let worker = clients::WorkerAttributes {
        name: body.worker_name,
        labels: body.labels,
    };
    let login = clients::LoginSettings {
        redirect_uris: body.redirect_uris,
        public: body.public,
        device: body.device,
    };
    let created = clients::create(
        &state.store,
        &actor,
        &body.name,
        body.scopes,
        &audience,
        worker,
        login,
    )
    .await?;
    tracing::info!(client_id = %created.client.id, name = %created.client.name, "client created");
    Ok((StatusCode::CREATED, Json(created)))
}

pub(super) async fn list(
    _: Authorized<IdpAdmin>,
    State(state): State<AppState>,
) -> Result<Json<Vec<ClientInfo>>, IdpError> {
    let all = state.store.list().await?;
    Ok(Json(all.iter().map(ClientInfo::from).collect()))
}

pub(super) async fn show(
    _: Authorized<IdpAdmin>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ClientInfo>, IdpError> {
    Ok(Json(clients::show(&state.store, &id).await?))
}

pub(super) async fn update(
    auth: Authorized<IdpAdmin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateClient>,
) -> Result<Json<ClientInfo>, IdpError> {
    let actor = Actor::of(&auth.caller, peer.ip());
    let worker = clients::WorkerAttributes {
        name: body.worker_name,
        labels: body.labels,
    };
    let updated = clients::update(
        &state.store,
        &actor,
        &id,
        body.scopes,
        body.enabled,
        worker,
        body.redirect_uris,
    )
    .await?;
    tracing::info!(client_id = %updated.id, enabled = updated.enabled, "client updated");
    Ok(Json(updated))
}

pub(super) async fn rotate(
    auth: Authorized<IdpAdmin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ClientWithSecret>, IdpError> {
    let actor = Actor::of(&auth.caller, peer.ip());
    let rotated = clients::rotate(&state.store, &actor, &id).await?;
    tracing::info!(client_id = %rotated.client.id, "client secret rotated");
    Ok(Json(rotated))
}

pub(super) async fn delete(
    auth: Authorized<IdpAdmin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, IdpError> {
    let actor = Actor::of(&auth.caller, peer.ip());
    clients::delete(&state.store, &actor, &id).await?;
    tracing::info!(client = %id, "client deleted");
    Ok(StatusCode::NO_CONTENT)
}
