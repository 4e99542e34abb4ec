//! `POST /definitions`: files of projects and pipelines, applied all or
//! nothing.

use axum::Json;
use axum::extract::State;
use ick_api::auth::Authorized;
use ick_api::controller::{ApplyAnswer, ApplyRequest, Change};
use ick_api::server::JsonBody;

use crate::access;
use crate::catalog;
use crate::core::Core;
use crate::error::Result;

pub(super) async fn apply(
    auth: Authorized<access::ChangeDefinitions>,
    State(core): State<Core>,
    JsonBody(request): JsonBody<ApplyRequest>,
) -> Result<Json<ApplyAnswer>> {
    let answer = catalog::apply_files(&core, request, &auth.caller.subject).await?;
    if !answer.dry_run {
        for a in answer
            .applied
            .iter()
            .filter(|a| a.change != Change::Unchanged)
        {
            tracing::info!(kind = ?a.kind, name = %a.name, revision = a.revision, by = %auth.caller.subject, "definition applied");
        }
    }
    Ok(Json(answer))
}
