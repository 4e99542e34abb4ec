//! `POST /definitions`: files of projects and pipelines, applied all or
//! nothing.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use ick_api::auth::Authorized;
use ick_api::controller::{ApplyAnswer, ApplyRequest, Change};
use ick_api::server::JsonBody;

use crate::access::{self, Actor};
use crate::catalog::{self, Author};
use crate::core::Core;
use crate::error::Result;

pub(super) async fn apply(
    auth: Authorized<access::ChangeDefinitions>,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(request): JsonBody<ApplyRequest>,
) -> Result<Json<ApplyAnswer>> {
    let actor = Actor::of(&auth.caller, peer.ip());
    let author = Author {
        caller: &auth.caller,
        actor: &actor,
    };
    let answer = catalog::apply_files(&core, request, author).await?;
    if !answer.dry_run {
        for a in answer
            .applied
            .iter()
            .filter(|a| a.change != Change::Unchanged)
        {
            tracing::info!(kind = ?a.kind, name = %a.name, revision = a.revision, by = %actor.id(), "definition applied");
        }
    }
    Ok(Json(answer))
}
