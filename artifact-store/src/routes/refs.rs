//! `/refs`: mutable names for blobs.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ick_api::auth::Authorized;
use ick_api::auth::scopes::{BlobsDelete, BlobsRead, BlobsWrite};
use ick_api::blobs::{RefInfo, RefList, RefName, RefPrefix, SetRef};
use ick_api::server::JsonBody;
use serde::Deserialize;

use crate::AppState;
use crate::backend::Backend;
use crate::error::StoreError;

/// `GET /refs/{name}`.
pub(super) async fn get<B: Backend>(
    State(state): State<AppState<B>>,
    _: Authorized<BlobsRead>,
    Path(name): Path<String>,
) -> Result<Json<RefInfo>, StoreError> {
    let name: RefName = name.parse()?;
    match state.backend.get_ref(&name).await? {
        Some(digest) => Ok(Json(RefInfo { name, digest })),
        None => Err(StoreError::RefNotFound(name.to_string())),
    }
}

/// `PUT /refs/{name}` `{digest}`: points the ref at an existing blob.
pub(super) async fn set<B: Backend>(
    State(state): State<AppState<B>>,
    _: Authorized<BlobsWrite>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<SetRef>,
) -> Result<Response, StoreError> {
    let name: RefName = name.parse()?;
    if state.backend.size(&body.digest).await?.is_none() {
        return Err(StoreError::RefTargetMissing(body.digest));
    }
    let created = state.backend.set_ref(&name, &body.digest).await?;
    tracing::info!(name = %name, digest = %body.digest, "ref set");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(RefInfo {
            name,
            digest: body.digest,
        }),
    )
        .into_response())
}

/// `DELETE /refs/{name}`.
pub(super) async fn delete<B: Backend>(
    State(state): State<AppState<B>>,
    _: Authorized<BlobsDelete>,
    Path(name): Path<String>,
) -> Result<StatusCode, StoreError> {
    let name: RefName = name.parse()?;
    if state.backend.delete_ref(&name).await? {
        tracing::info!(name = %name, "ref deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(StoreError::RefNotFound(name.to_string()))
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    prefix: String,
}

/// `GET /refs?prefix=`.
pub(super) async fn list<B: Backend>(
    State(state): State<AppState<B>>,
    _: Authorized<BlobsRead>,
    Query(query): Query<ListQuery>,
) -> Result<Json<RefList>, StoreError> {
    let prefix: RefPrefix = query.prefix.parse()?;
    let refs = state.backend.list_refs(&prefix).await?;
    Ok(Json(RefList { refs }))
}
