//! `GET /notifications`: the mail outbox.

use axum::Json;
use axum::extract::{Query, State};
use ick_api::auth::Authorized;
use ick_api::controller::{NotificationList, NotificationQuery};

use crate::access;
use crate::core::Core;
use crate::error::Result;
use crate::notify;

/// Mail about builds of the projects the caller may read.
pub(super) async fn list(
    auth: Authorized<access::ReadBuilds>,
    State(core): State<Core>,
    Query(query): Query<NotificationQuery>,
) -> Result<Json<NotificationList>> {
    let readable = match &query.project {
        Some(project) => {
            access::check::<access::ReadBuilds>(&core, Some(&auth.caller), project).await?;
            access::Readable::All
        }
        None => access::readable(&core, Some(&auth.caller)).await?,
    };
    Ok(Json(notify::list(&core, &query, &readable).await?))
}
