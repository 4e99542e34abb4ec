//! `GET /workers[?all=true]`: scope `builds:read`.

use axum::Json;
use axum::extract::{Query, State};
use ick_api::auth::Authorized;
use ick_api::auth::scopes::BuildsRead;
use ick_api::work::{WorkerInfo, WorkersQuery};

use crate::AppState;
use crate::error::Result;
use crate::queue;

pub(super) async fn list(
    _: Authorized<BuildsRead>,
    State(state): State<AppState>,
    Query(query): Query<WorkersQuery>,
) -> Result<Json<Vec<WorkerInfo>>> {
    Ok(Json(queue::workers(&state, &query).await?))
}
