//! `/projects`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ick_api::auth::Authorized;
use ick_api::controller::{Applied, Change, DefinitionKind, ProjectSpec, Revision, StoredProject};

use super::MaybeAuthorized;
use crate::access::{self, Actor};
use crate::catalog::{self, Author};
use crate::core::Core;
use crate::error::Result;

const KIND: DefinitionKind = DefinitionKind::Project;

pub(super) async fn list(
    auth: Authorized<access::ReadProjects>,
    State(core): State<Core>,
) -> Result<Json<Vec<StoredProject>>> {
    let rows = catalog::list(&core, KIND, &auth.caller).await?;
    Ok(Json(
        rows.into_iter()
            .map(catalog::stored)
            .collect::<Result<_>>()?,
    ))
}

/// Also without a token, for a public project.
pub(super) async fn show(
    auth: MaybeAuthorized<access::ReadProjects>,
    State(core): State<Core>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    access::check::<access::ReadProjects>(&core, auth.caller.as_ref(), &name).await?;
    let row = catalog::get(&core, KIND, &name).await?;
    if super::accepts(&headers, "application/yaml") {
        return Ok(([(header::CONTENT_TYPE, "application/yaml")], row.text).into_response());
    }
    Ok(Json(catalog::stored::<ProjectSpec>(row)?).into_response())
}

pub(super) async fn apply(
    auth: Authorized<access::ChangeDefinitions>,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    body: String,
) -> Result<(StatusCode, Json<Applied>)> {
    let actor = Actor::of(&auth.caller, peer.ip());
    let author = Author {
        caller: &auth.caller,
        actor: &actor,
    };
    let applied = catalog::apply_project(&core, &name, &body, author).await?;
    if applied.change != Change::Unchanged {
        tracing::info!(project = %name, revision = applied.revision, by = %actor.id(), "project applied");
    }
    let status = if applied.change == Change::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(applied)))
}

pub(super) async fn delete(
    auth: Authorized<access::DeleteProject>,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    let actor = Actor::of(&auth.caller, peer.ip());
    let author = Author {
        caller: &auth.caller,
        actor: &actor,
    };
    catalog::delete(&core, KIND, &name, author).await?;
    tracing::info!(project = %name, by = %actor.id(), "project deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn revisions(
    auth: Authorized<access::ReadProjects>,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Revision>>> {
    access::check::<access::ReadProjects>(&core, Some(&auth.caller), &name).await?;
    Ok(Json(catalog::revisions(&core, KIND, &name).await?))
}
