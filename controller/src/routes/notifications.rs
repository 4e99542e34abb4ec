//! `GET /notifications`: the mail outbox, scope `builds:read`.

use axum::Json;
use axum::extract::{Query, State};
use ick_api::auth::Authorized;
use ick_api::auth::scopes::BuildsRead;
use ick_api::controller::{NotificationList, NotificationQuery};

use crate::AppState;
use crate::error::Result;
use crate::notify;

pub(super) async fn list(
    _: Authorized<BuildsRead>,
    State(state): State<AppState>,
    Query(query): Query<NotificationQuery>,
) -> Result<Json<NotificationList>> {
    Ok(Json(notify::list(&state, &query).await?))
}
