//! `/projects/{name}/trigger-secret`: a project's web hook secret, to see
//! and to rotate (its `maintainer`s).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use ick_api::auth::Authorized;
use ick_api::controller::TriggerSecret;

use crate::access::{self, Actor};
use crate::core::Core;
use crate::error::Result;
use crate::webhooks;

pub(super) async fn show(
    auth: Authorized<access::ManageTriggerSecret>,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<Json<TriggerSecret>> {
    access::check::<access::ManageTriggerSecret>(&core, Some(&auth.caller), &name).await?;
    let actor = Actor::of(&auth.caller, peer.ip());
    Ok(Json(
        webhooks::trigger_secret(&core, &name, false, &actor).await?,
    ))
}

pub(super) async fn rotate(
    auth: Authorized<access::ManageTriggerSecret>,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<Json<TriggerSecret>> {
    access::check::<access::ManageTriggerSecret>(&core, Some(&auth.caller), &name).await?;
    let actor = Actor::of(&auth.caller, peer.ip());
    let secret = webhooks::trigger_secret(&core, &name, true, &actor).await?;
    tracing::info!(project = %name, by = %actor.id(), "trigger secret rotated");
    Ok(Json(secret))
}
