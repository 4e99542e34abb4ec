//! `GET /notifications`: the mail outbox.

use axum::Json;
use axum::extract::{Query, State};
use ick_api::auth::Authorized;
use ick_api::controller::{NotificationList, NotificationQuery};

use crate::access;
use crate::core::Core;
use crate::error::Result;
use crate::notify;

pub(super) async fn list(
    _: Authorized<access::ReadBuilds>,
    State(core): State<Core>,
    Query(query): Query<NotificationQuery>,
) -> Result<Json<NotificationList>> {
    Ok(Json(notify::list(&core, &query).await?))
}
