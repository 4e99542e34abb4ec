//! `/projects`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ick_api::auth::Authorized;
use ick_api::controller::{Applied, Change, DefinitionKind, ProjectSpec, Revision, StoredProject};

use crate::AppState;
use crate::access;
use crate::catalog;
use crate::error::Result;

const KIND: DefinitionKind = DefinitionKind::Project;

pub(super) async fn list(
    _: Authorized<access::ReadProjects>,
    State(state): State<AppState>,
) -> Result<Json<Vec<StoredProject>>> {
    let rows = catalog::list(&state, KIND).await?;
    Ok(Json(
        rows.into_iter()
            .map(catalog::stored)
            .collect::<Result<_>>()?,
    ))
}

pub(super) async fn show(
    _: Authorized<access::ReadProjects>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let row = catalog::get(&state, KIND, &name).await?;
    if super::accepts(&headers, "application/yaml") {
        return Ok(([(header::CONTENT_TYPE, "application/yaml")], row.text).into_response());
    }
    Ok(Json(catalog::stored::<ProjectSpec>(row)?).into_response())
}

pub(super) async fn apply(
    auth: Authorized<access::ChangeDefinitions>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: String,
) -> Result<(StatusCode, Json<Applied>)> {
    let applied = catalog::apply_project(&state, &name, &body, &auth.caller.subject).await?;
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
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    catalog::delete(&state, KIND, &name, &auth.caller.subject).await?;
    tracing::info!(project = %name, by = %auth.caller.subject, "project deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn revisions(
    _: Authorized<access::ReadProjects>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Revision>>> {
    Ok(Json(catalog::revisions(&state, KIND, &name).await?))
}
