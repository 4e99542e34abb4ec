//! `GET /workers[?all=true]`.

use axum::Json;
use axum::extract::{Query, State};
use ick_api::auth::Authorized;
use ick_api::work::{WorkerInfo, WorkersQuery};

use crate::access;
use crate::core::Core;
use crate::error::Result;
use crate::work;

pub(super) async fn list(
    _: Authorized<access::ListWorkers>,
    State(core): State<Core>,
    Query(query): Query<WorkersQuery>,
) -> Result<Json<Vec<WorkerInfo>>> {
    Ok(Json(work::workers::workers(&core, &query).await?))
}
