//! `/builds/{id}/log` and its stream: scope `builds:read`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use ick_api::auth::Authorized;
use ick_api::auth::scopes::BuildsRead;
use serde::Deserialize;

use crate::AppState;
use crate::error::{ControllerError, Result};
use crate::{builds, logs};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogQuery {
    /// Only this node's output.
    node: Option<String>,
}

async fn check_node(state: &AppState, build_id: &str, node: Option<&str>) -> Result<()> {
    if let Some(node) = node {
        let mut conn = state.store.conn().await?;
        let found = crate::store::builds::node_build(&mut conn, node).await?;
        if found.as_deref() != Some(build_id) {
            return Err(ControllerError::NotFound(format!(
                "build {build_id} has no node {node:?}"
            )));
        }
    }
    Ok(())
}

pub(super) async fn read(
    _: Authorized<BuildsRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let build = builds::get(&state, &id).await?;
    check_node(&state, &build.id, query.node.as_deref()).await?;
    let chunks = logs::read(&state, &build.id, query.node.as_deref()).await?;
    if super::accepts(&headers, "text/plain") {
        return Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            logs::as_text(&chunks),
        )
            .into_response());
    }
    Ok(Json(chunks).into_response())
}

pub(super) async fn follow(
    _: Authorized<BuildsRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response> {
    let build = builds::get(&state, &id).await?;
    check_node(&state, &build.id, query.node.as_deref()).await?;
    let stream = logs::follow(state, build.id, query.node);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
