//! `GET /workers[?all=true]`.

use axum::Json;
use axum::extract::{Query, State};
use ick_api::auth::Authorized;
use ick_api::work::{WorkerInfo, WorkersQuery};

use crate::AppState;
use crate::access;
use crate::error::Result;
use crate::work;

pub(super) async fn list(
    _: Authorized<access::ListWorkers>,
    State(state): State<AppState>,
    Query(query): Query<WorkersQuery>,
) -> Result<Json<Vec<WorkerInfo>>> {
    Ok(Json(work::workers::workers(&state, &query).await?))
}
