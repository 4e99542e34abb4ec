//! `GET /audit`: the audit log, for admins and a project's owners.

use axum::Json;
use axum::extract::{Query, State};
use ick_api::auth::Authorized;
use ick_api::controller::{AuditList, AuditQuery};

use crate::access;
use crate::audit;
use crate::core::Core;
use crate::error::Result;

pub(super) async fn list(
    auth: Authorized<access::ReadAudit>,
    State(core): State<Core>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditList>> {
    Ok(Json(audit::list(&core, &auth.caller, &query).await?))
}
