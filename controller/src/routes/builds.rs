//! `/builds` and `POST /projects/{name}/builds`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ick_api::auth::Authorized;
use ick_api::controller::{BuildList, BuildQuery, BuildSummary, BuildView, TriggerRequest};

use super::MaybeAuthorized;
use crate::access::{self, Actor, Readable};
use crate::builds;
use crate::core::Core;
use crate::error::{ControllerError, Result};

pub(super) async fn trigger(
    auth: Authorized<access::Trigger>,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response> {
    access::check::<access::Trigger>(&core, Some(&auth.caller), &name).await?;
    let request: TriggerRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ControllerError::BadRequest(format!("the trigger request is not valid JSON: {e}"))
        })?
    };
    let actor = Actor::of(&auth.caller, peer.ip());
    let build = builds::trigger(&core, &name, request, &actor).await?;
    let location = format!("/builds/{}", build.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(build),
    )
        .into_response())
}

/// Builds of the projects the caller may read; without a token, only
/// with `project=` naming a public one.
pub(super) async fn list(
    auth: MaybeAuthorized<access::ReadBuilds>,
    State(core): State<Core>,
    Query(query): Query<BuildQuery>,
) -> Result<Json<BuildList>> {
    let caller = auth.caller.as_ref();
    let readable = match &query.project {
        Some(project) => {
            access::check::<access::ReadBuilds>(&core, caller, project).await?;
            Readable::All
        }
        None if caller.is_none() => return Err(ControllerError::NoToken),
        None => access::readable(&core, caller).await?,
    };
    Ok(Json(builds::list(&core, &query, &readable).await?))
}

/// A build of a project the caller may read (without a token: a public
/// one); another is answered as none (404).
pub(super) async fn show(
    auth: MaybeAuthorized<access::ReadBuilds>,
    State(core): State<Core>,
    Path(id): Path<String>,
) -> Result<Json<BuildView>> {
    let build = builds::get(&core, &id).await?;
    access::check_build::<access::ReadBuilds>(&core, auth.caller.as_ref(), &build.project, || {
        format!("no build {id:?}")
    })
    .await?;
    Ok(Json(builds::view(&core, build).await?))
}

pub(super) async fn show_by_number(
    auth: MaybeAuthorized<access::ReadBuilds>,
    State(core): State<Core>,
    Path((name, number)): Path<(String, i64)>,
) -> Result<Json<BuildView>> {
    access::check_build::<access::ReadBuilds>(&core, auth.caller.as_ref(), &name, || {
        format!("no build {name} #{number}")
    })
    .await?;
    let build = builds::get_by_number(&core, &name, number).await?;
    Ok(Json(builds::view(&core, build).await?))
}

pub(super) async fn cancel(
    auth: Authorized<access::Cancel>,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Json<BuildSummary>> {
    let build = builds::get(&core, &id).await?;
    access::check_build::<access::Cancel>(&core, Some(&auth.caller), &build.project, || {
        format!("no build {id:?}")
    })
    .await?;
    let actor = Actor::of(&auth.caller, peer.ip());
    Ok(Json(builds::cancel(&core, &id, &actor).await?))
}

pub(super) async fn retry(
    auth: Authorized<access::Retry>,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Json<BuildSummary>> {
    let build = builds::get(&core, &id).await?;
    access::check_build::<access::Retry>(&core, Some(&auth.caller), &build.project, || {
        format!("no build {id:?}")
    })
    .await?;
    let actor = Actor::of(&auth.caller, peer.ip());
    Ok(Json(builds::retry(&core, &id, &actor).await?))
}
