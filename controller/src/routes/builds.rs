//! `/builds` and `POST /projects/{name}/builds`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ick_api::auth::Authorized;
use ick_api::controller::{BuildList, BuildQuery, BuildSummary, BuildView, TriggerRequest};

use crate::access;
use crate::builds;
use crate::core::Core;
use crate::error::{ControllerError, Result};

pub(super) async fn trigger(
    auth: Authorized<access::Trigger>,
    State(core): State<Core>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let request: TriggerRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ControllerError::BadRequest(format!("the trigger request is not valid JSON: {e}"))
        })?
    };
    let build = builds::trigger(&core, &name, request, auth.caller.display_name()).await?;
    let location = format!("/builds/{}", build.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(build),
    )
        .into_response())
}

pub(super) async fn list(
    _: Authorized<access::ReadBuilds>,
    State(core): State<Core>,
    Query(query): Query<BuildQuery>,
) -> Result<Json<BuildList>> {
    Ok(Json(builds::list(&core, &query).await?))
}

pub(super) async fn show(
    _: Authorized<access::ReadBuilds>,
    State(core): State<Core>,
    Path(id): Path<String>,
) -> Result<Json<BuildView>> {
    let build = builds::get(&core, &id).await?;
    Ok(Json(builds::view(&core, build).await?))
}

pub(super) async fn show_by_number(
    _: Authorized<access::ReadBuilds>,
    State(core): State<Core>,
    Path((name, number)): Path<(String, i64)>,
) -> Result<Json<BuildView>> {
    let build = builds::get_by_number(&core, &name, number).await?;
    Ok(Json(builds::view(&core, build).await?))
}

pub(super) async fn cancel(
    _: Authorized<access::Cancel>,
    State(core): State<Core>,
    Path(id): Path<String>,
) -> Result<Json<BuildSummary>> {
    Ok(Json(builds::cancel(&core, &id).await?))
}

pub(super) async fn retry(
    _: Authorized<access::Retry>,
    State(core): State<Core>,
    Path(id): Path<String>,
) -> Result<Json<BuildSummary>> {
    Ok(Json(builds::retry(&core, &id).await?))
}
