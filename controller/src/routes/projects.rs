//! `/projects`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ick_api::auth::Authorized;
use ick_api::controller::{Applied, Change, DefinitionKind, ProjectSpec, Revision, StoredProject};

use crate::access;
use crate::catalog;
use crate::core::Core;
use crate::error::Result;

const KIND: DefinitionKind = DefinitionKind::Project;

pub(super) async fn list(
    _: Authorized<access::ReadProjects>,
    State(core): State<Core>,
) -> Result<Json<Vec<StoredProject>>> {
    let rows = catalog::list(&core, KIND).await?;
    Ok(Json(
        rows.into_iter()
            .map(catalog::stored)
            .collect::<Result<_>>()?,
    ))
}

pub(super) async fn show(
    _: Authorized<access::ReadProjects>,
    State(core): State<Core>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let row = catalog::get(&core, KIND, &name).await?;
    if super::accepts(&headers, "application/yaml") {
        return Ok(([(header::CONTENT_TYPE, "application/yaml")], row.text).into_response());
    }
    Ok(Json(catalog::stored::<ProjectSpec>(row)?).into_response())
}

pub(super) async fn apply(
    auth: Authorized<access::ChangeDefinitions>,
    State(core): State<Core>,
    Path(name): Path<String>,
    body: String,
) -> Result<(StatusCode, Json<Applied>)> {
    let applied = catalog::apply_project(&core, &name, &body, &auth.caller.subject).await?;
    if applied.change != Change::Unchanged {
        tracing::info!(project = %name, revision = applied.revision, by = %auth.caller.subject, "project applied");
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
    Path(name): Path<String>,
) -> Result<StatusCode> {
    catalog::delete(&core, KIND, &name, &auth.caller.subject).await?;
    tracing::info!(project = %name, by = %auth.caller.subject, "project deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn revisions(
    _: Authorized<access::ReadProjects>,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Revision>>> {
    Ok(Json(catalog::revisions(&core, KIND, &name).await?))
}
