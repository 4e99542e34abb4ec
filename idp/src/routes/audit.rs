//! `GET /audit`: the IDP's audit log, scope `idp:admin`.

use axum::Json;
use axum::extract::{Query, State};
use ick_api::audit::{AuditList, AuditQuery};
use ick_api::auth::{Authorized, scopes::IdpAdmin};

use crate::AppState;
use crate::audit;
use crate::error::IdpError;

pub(super) async fn list(
    _: Authorized<IdpAdmin>,
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditList>, IdpError> {
    Ok(Json(audit::list(&state.store, &query).await?))
}
