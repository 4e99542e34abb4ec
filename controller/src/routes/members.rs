//! `/projects/{name}/members`: who has which role on a project; and
//! `/projects/{name}/access`: what the caller may do there.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use ick_api::auth::Authorized;
use ick_api::controller::{Member, MemberRequest, Membership, ProjectAccess};
use ick_api::server::JsonBody;

use super::MaybeAuthorized;
use crate::access::{self, Actor};
use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::members::{self, Put};

/// Whoever may read the project (with a token) sees its members.
pub(super) async fn list(
    auth: Authorized<access::ReadMembers>,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Membership>>> {
    access::check::<access::ReadMembers>(&core, Some(&auth.caller), &name).await?;
    Ok(Json(members::list(&core, &name).await?))
}

/// What the caller may do to the project (without a token too, for a
/// public project: then only reading).
pub(super) async fn access(
    auth: MaybeAuthorized<access::ReadProjects>,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<ProjectAccess>> {
    Ok(Json(
        access::project_access(&core, auth.caller.as_ref(), &name).await?,
    ))
}

/// 201 for a new member, 200 for a changed (or the same) role.
pub(super) async fn set(
    auth: Authorized<access::ManageMembers>,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<MemberRequest>,
) -> Result<(StatusCode, Json<Membership>)> {
    access::check::<access::ManageMembers>(&core, Some(&auth.caller), &name).await?;
    let actor = Actor::of(&auth.caller, peer.ip());
    let (put, membership) = members::set(&core, &name, &request, &actor).await?;
    tracing::info!(project = %name, member = %request.member, role = %request.role, by = %actor.id(), "member set");
    let status = match put {
        Put::Added => StatusCode::CREATED,
        Put::Kept => StatusCode::OK,
    };
    Ok((status, Json(membership)))
}

pub(super) async fn remove(
    auth: Authorized<access::ManageMembers>,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((name, member)): Path<(String, String)>,
) -> Result<StatusCode> {
    access::check::<access::ManageMembers>(&core, Some(&auth.caller), &name).await?;
    let member: Member = member.parse().map_err(ControllerError::BadRequest)?;
    let actor = Actor::of(&auth.caller, peer.ip());
    members::remove(&core, &name, &member, &actor).await?;
    tracing::info!(project = %name, %member, by = %actor.id(), "member removed");
    Ok(StatusCode::NO_CONTENT)
}
