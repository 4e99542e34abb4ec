//! `/work`: the work protocol (`ick_api::work`), scope `work:run`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ick_api::auth::Authorized;
use ick_api::auth::scopes::WorkRun;
use ick_api::server::JsonBody;
use ick_api::work::{ClaimRequest, Done, Heartbeat, HeartbeatReply, OutputBatch};

use crate::AppState;
use crate::error::Result;
use crate::queue;

pub(super) async fn claim(
    _: Authorized<WorkRun>,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ClaimRequest>,
) -> Result<Response> {
    Ok(match queue::claim(&state, request).await? {
        Some(assignment) => Json(assignment).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

pub(super) async fn heartbeat(
    _: Authorized<WorkRun>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(heartbeat): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatReply>> {
    Ok(Json(queue::heartbeat(&state, &id, heartbeat).await?))
}

pub(super) async fn output(
    _: Authorized<WorkRun>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(batch): JsonBody<OutputBatch>,
) -> Result<StatusCode> {
    queue::output(&state, &id, batch).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn done(
    _: Authorized<WorkRun>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(done): JsonBody<Done>,
) -> Result<StatusCode> {
    queue::done(&state, &id, done).await?;
    Ok(StatusCode::NO_CONTENT)
}
