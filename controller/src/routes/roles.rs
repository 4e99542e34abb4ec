//! `/roles`: global roles (admin, creator), an admin's to grant.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use ick_api::auth::Authorized;
use ick_api::controller::{GlobalRole, Member, RoleBinding, RoleRequest};
use ick_api::server::JsonBody;

use crate::access::{self, Actor};
use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::members;

pub(super) async fn list(
    auth: Authorized<access::ReadRoles>,
    State(core): State<Core>,
) -> Result<Json<Vec<RoleBinding>>> {
    access::check_admin(&core, &auth.caller, "list the global roles").await?;
    Ok(Json(members::roles(&core).await?))
}

/// 201 when granted now, 200 when the member had it.
pub(super) async fn grant(
    auth: Authorized<access::ManageRoles>,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(request): JsonBody<RoleRequest>,
) -> Result<(StatusCode, Json<RoleRequest>)> {
    access::check_admin(&core, &auth.caller, "grant global roles").await?;
    let actor = Actor::of(&auth.caller, peer.ip());
    let granted = members::grant(&core, &request, &actor).await?;
    tracing::info!(member = %request.member, role = %request.role, by = %actor.id(), "global role granted");
    let status = if granted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(request)))
}

pub(super) async fn revoke(
    auth: Authorized<access::ManageRoles>,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((member, role)): Path<(String, String)>,
) -> Result<StatusCode> {
    access::check_admin(&core, &auth.caller, "revoke global roles").await?;
    let member: Member = member.parse().map_err(ControllerError::BadRequest)?;
    let role: GlobalRole = role.parse().map_err(ControllerError::BadRequest)?;
    let actor = Actor::of(&auth.caller, peer.ip());
    members::revoke(&core, &member, role, &actor).await?;
    tracing::info!(%member, %role, by = %actor.id(), "global role revoked");
    Ok(StatusCode::NO_CONTENT)
}
