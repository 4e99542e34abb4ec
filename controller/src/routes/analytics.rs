//! `GET /analytics`.

use axum::Json;
use axum::extract::{Query, State};
use ick_api::controller::{Analytics, AnalyticsQuery, DefinitionKind};

use super::MaybeAuthorized;
use crate::access;
use crate::analytics;
use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::store::analytics::Projects;

/// Read as the project's builds are: with `project=`, by whoever may read
/// its builds (without a token: a public one; a private one it may not
/// read is none, 404); without, over every project the caller may read.
pub(super) async fn show(
    auth: MaybeAuthorized<access::ReadBuilds>,
    State(core): State<Core>,
    Query(query): Query<AnalyticsQuery>,
) -> Result<Json<Analytics>> {
    let caller = auth.caller.as_ref();
    let projects = match query.project.as_deref().filter(|p| !p.is_empty()) {
        Some(project) => {
            access::check::<access::ReadBuilds>(&core, caller, project).await?;
            // An admin may read any name: one that never was is still none.
            let mut conn = core.store.conn().await?;
            if crate::store::definitions::get(&mut conn, DefinitionKind::Project, project)
                .await?
                .is_none()
                && !crate::store::analytics::has_builds(&mut conn, project).await?
            {
                return Err(ControllerError::NotFound(format!("no project {project:?}")));
            }
            Projects::One(project.to_string())
        }
        None if caller.is_none() => return Err(ControllerError::NoToken),
        None => Projects::Readable(access::readable(&core, caller).await?),
    };
    Ok(Json(analytics::analytics(&core, &query, projects).await?))
}
