//! The admin API for people: `/users` and `/groups`, scope `idp:admin`.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use ick_api::audit::Actor;
use ick_api::auth::{Authorized, scopes::IdpAdmin};
use ick_api::idp::{CreateGroup, CreateUser, GroupInfo, SetPassword, UpdateUser, UserInfo};
use ick_api::server::JsonBody;

use crate::AppState;
use crate::error::IdpError;
use crate::people;

pub(super) async fn create_user(
    auth: Authorized<IdpAdmin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateUser>,
) -> Result<(StatusCode, Json<UserInfo>), IdpError> {
    let actor = Actor::of(&auth.caller, peer.ip());
    let user = people::create_user(&state.store, &actor, body).await?;
    tracing::info!(user = %user.name, "user created");
    Ok((StatusCode::CREATED, Json(user)))
}

pub(super) async fn list_users(
    _: Authorized<IdpAdmin>,
    State(state): State<AppState>,
) -> Result<Json<Vec<UserInfo>>, IdpError> {
    Ok(Json(people::list_users(&state.store).await?))
}

pub(super) async fn show_user(
    _: Authorized<IdpAdmin>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<UserInfo>, IdpError> {
    Ok(Json(people::show_user(&state.store, &name).await?))
}

pub(super) async fn update_user(
    auth: Authorized<IdpAdmin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<UpdateUser>,
) -> Result<Json<UserInfo>, IdpError> {
    let actor = Actor::of(&auth.caller, peer.ip());
    let user = people::update_user(&state.store, &actor, &name, body).await?;
    tracing::info!(user = %user.name, enabled = user.enabled, "user updated");
    Ok(Json(user))
}

pub(super) async fn delete_user(
    auth: Authorized<IdpAdmin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, IdpError> {
    let actor = Actor::of(&auth.caller, peer.ip());
    people::delete_user(&state.store, &actor, &name).await?;
    tracing::info!(user = %name, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn set_password(
    auth: Authorized<IdpAdmin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<SetPassword>,
) -> Result<StatusCode, IdpError> {
    let actor = Actor::of(&auth.caller, peer.ip());
    people::set_password(&state.store, &actor, &name, body.password).await?;
    tracing::info!(user = %name, "password changed; refresh tokens revoked");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn create_group(
    auth: Authorized<IdpAdmin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateGroup>,
) -> Result<(StatusCode, Json<GroupInfo>), IdpError> {
    let actor = Actor::of(&auth.caller, peer.ip());
    let group = people::create_group(&state.store, &actor, &body.name).await?;
    tracing::info!(group = %group.name, "group created");
    Ok((StatusCode::CREATED, Json(group)))
}

pub(super) async fn list_groups(
    _: Authorized<IdpAdmin>,
    State(state): State<AppState>,
) -> Result<Json<Vec<GroupInfo>>, IdpError> {
    Ok(Json(people::list_groups(&state.store).await?))
}

pub(super) async fn show_group(
    _: Authorized<IdpAdmin>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<GroupInfo>, IdpError> {
    Ok(Json(people::show_group(&state.store, &name).await?))
}

pub(super) async fn delete_group(
    auth: Authorized<IdpAdmin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, IdpError> {
    let actor = Actor::of(&auth.caller, peer.ip());
    people::delete_group(&state.store, &actor, &name).await?;
    tracing::info!(group = %name, "group deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn add_member(
    auth: Authorized<IdpAdmin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    Path((group, user)): Path<(String, String)>,
) -> Result<Json<GroupInfo>, IdpError> {
    let actor = Actor::of(&auth.caller, peer.ip());
    let info = people::set_member(&state.store, &actor, &group, &user, true).await?;
    tracing::info!(group = %group, user = %user, "member added");
    Ok(Json(info))
}

pub(super) async fn remove_member(
    auth: Authorized<IdpAdmin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    Path((group, user)): Path<(String, String)>,
) -> Result<Json<GroupInfo>, IdpError> {
    let actor = Actor::of(&auth.caller, peer.ip());
    let info = people::set_member(&state.store, &actor, &group, &user, false).await?;
    tracing::info!(group = %group, user = %user, "member removed");
    Ok(Json(info))
}
