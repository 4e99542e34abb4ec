//! `/work`: the work protocol (`ick_api::work`), for workers.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ick_api::auth::Authorized;
use ick_api::server::JsonBody;
use ick_api::work::{ClaimRequest, Done, Heartbeat, HeartbeatReply, Leave, OutputBatch, Presence};

use crate::access;
use crate::core::Core;
use crate::error::Result;
use crate::work;

pub(super) async fn claim(
    auth: Authorized<access::RunWork>,
    State(core): State<Core>,
    JsonBody(request): JsonBody<ClaimRequest>,
) -> Result<Response> {
    let worker = access::Worker::of(&auth.caller)?;
    Ok(match work::claims::claim(&core, &worker, request).await? {
        Some(assignment) => Json(assignment).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

pub(super) async fn heartbeat(
    auth: Authorized<access::RunWork>,
    State(core): State<Core>,
    Path(id): Path<String>,
    JsonBody(heartbeat): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatReply>> {
    let worker = access::Worker::of(&auth.caller)?;
    Ok(Json(
        work::reports::heartbeat(&core, &worker, &id, heartbeat).await?,
    ))
}

pub(super) async fn output(
    auth: Authorized<access::RunWork>,
    State(core): State<Core>,
    Path(id): Path<String>,
    JsonBody(batch): JsonBody<OutputBatch>,
) -> Result<StatusCode> {
    let worker = access::Worker::of(&auth.caller)?;
    work::reports::output(&core, &worker, &id, batch).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn done(
    auth: Authorized<access::RunWork>,
    State(core): State<Core>,
    Path(id): Path<String>,
    JsonBody(done): JsonBody<Done>,
) -> Result<StatusCode> {
    let worker = access::Worker::of(&auth.caller)?;
    work::reports::done(&core, &worker, &id, done).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn presence(
    auth: Authorized<access::RunWork>,
    State(core): State<Core>,
    JsonBody(presence): JsonBody<Presence>,
) -> Result<Response> {
    let worker = access::Worker::of(&auth.caller)?;
    let stream = work::workers::presence(&core, &worker, presence).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/plain")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

pub(super) async fn leave(
    auth: Authorized<access::RunWork>,
    State(core): State<Core>,
    JsonBody(leave): JsonBody<Leave>,
) -> Result<StatusCode> {
    let worker = access::Worker::of(&auth.caller)?;
    work::workers::leave(&core, &worker, leave).await?;
    Ok(StatusCode::NO_CONTENT)
}
