//! `/pipelines`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ick_api::auth::Authorized;
use ick_api::controller::{
    Applied, Change, DefinitionKind, PipelineSpec, Revision, StoredPipeline,
};

use crate::access::{self, Actor};
use crate::catalog::{self, Author};
use crate::core::Core;
use crate::error::Result;

const KIND: DefinitionKind = DefinitionKind::Pipeline;

pub(super) async fn list(
    auth: Authorized<access::ReadProjects>,
    State(core): State<Core>,
) -> Result<Json<Vec<StoredPipeline>>> {
    let rows = catalog::list(&core, KIND, &auth.caller).await?;
    Ok(Json(
        rows.into_iter()
            .map(catalog::stored)
            .collect::<Result<_>>()?,
    ))
}

pub(super) async fn show(
    auth: Authorized<access::ReadProjects>,
    State(core): State<Core>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    catalog::check_read_pipeline(&core, &auth.caller, &name).await?;
    let row = catalog::get(&core, KIND, &name).await?;
    if super::accepts(&headers, "application/yaml") {
        return Ok(([(header::CONTENT_TYPE, "application/yaml")], row.text).into_response());
    }
    Ok(Json(catalog::stored::<PipelineSpec>(row)?).into_response())
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
    let applied = catalog::apply_pipeline(&core, &name, &body, author).await?;
    if applied.change != Change::Unchanged {
        tracing::info!(pipeline = %name, revision = applied.revision, by = %actor.id(), "pipeline applied");
    }
    let status = if applied.change == Change::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(applied)))
}

pub(super) async fn delete(
    auth: Authorized<access::ChangeDefinitions>,
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
    tracing::info!(pipeline = %name, by = %actor.id(), "pipeline deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn revisions(
    auth: Authorized<access::ReadProjects>,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Revision>>> {
    catalog::check_read_pipeline(&core, &auth.caller, &name).await?;
    Ok(Json(catalog::revisions(&core, KIND, &name).await?))
}
