//! `/projects/{name}/trigger-secret`: a project's web hook secret, to see
//! and to rotate.

use axum::Json;
use axum::extract::{Path, State};
use ick_api::auth::Authorized;
use ick_api::controller::TriggerSecret;

use crate::access;
use crate::core::Core;
use crate::error::Result;
use crate::webhooks;

pub(super) async fn show(
    _: Authorized<access::ManageTriggerSecret>,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<TriggerSecret>> {
    Ok(Json(webhooks::trigger_secret(&core, &name, false).await?))
}

pub(super) async fn rotate(
    auth: Authorized<access::ManageTriggerSecret>,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<TriggerSecret>> {
    let secret = webhooks::trigger_secret(&core, &name, true).await?;
    tracing::info!(project = %name, by = %auth.caller.subject, "trigger secret rotated");
    Ok(Json(secret))
}
