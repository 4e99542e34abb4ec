//! The controller's HTTP routes. Each handler names the act it does
//! (`Authorized<access::…>`), and `crate::access` decides whether its
//! caller may; the web hooks prove their project's trigger secret instead.

mod builds;
mod definitions;
mod logs;
mod notifications;
mod pipelines;
mod projects;
mod trigger_secrets;
mod webhooks;
mod work;
mod workers;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use ick_api::auth::TokenVerifier;
use ick_api::server::FailureLimiter;

use crate::core::Core;

/// What every handler shares: the core, and what only HTTP needs. Cheap
/// to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub core: Core,
    pub verifier: TokenVerifier,
    /// Web hooks with a wrong signature, per peer address.
    pub hook_failures: Arc<FailureLimiter>,
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl FromRef<AppState> for Core {
    fn from_ref(state: &AppState) -> Self {
        state.core.clone()
    }
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/projects", get(projects::list))
        .route(
            "/projects/{name}",
            get(projects::show)
                .put(projects::apply)
                .delete(projects::delete),
        )
        .route("/projects/{name}/revisions", get(projects::revisions))
        .route(
            "/projects/{name}/trigger-secret",
            get(trigger_secrets::show),
        )
        .route(
            "/projects/{name}/trigger-secret/rotate",
            post(trigger_secrets::rotate),
        )
        .route("/projects/{name}/builds", post(builds::trigger))
        .route(
            "/projects/{name}/builds/{number}",
            get(builds::show_by_number),
        )
        .route("/definitions", post(definitions::apply))
        .route("/pipelines", get(pipelines::list))
        .route(
            "/pipelines/{name}",
            get(pipelines::show)
                .put(pipelines::apply)
                .delete(pipelines::delete),
        )
        .route("/pipelines/{name}/revisions", get(pipelines::revisions))
        .route("/builds", get(builds::list))
        .route("/builds/{id}", get(builds::show))
        .route("/builds/{id}/cancel", post(builds::cancel))
        .route("/builds/{id}/retry", post(builds::retry))
        .route("/builds/{id}/log", get(logs::read))
        .route("/builds/{id}/log/stream", get(logs::follow))
        .route("/workers", get(workers::list))
        .route("/notifications", get(notifications::list))
        .route("/webhooks/github", post(webhooks::github))
        .route("/webhooks/gitea", post(webhooks::gitea))
        .route("/webhooks/gitlab", post(webhooks::gitlab))
        .route("/webhooks/generic", post(webhooks::generic))
        .route("/work/claim", post(work::claim))
        .route("/work/presence", post(work::presence))
        .route("/work/leave", post(work::leave))
        .route("/work/{id}/heartbeat", post(work::heartbeat))
        .route("/work/{id}/output", post(work::output))
        .route("/work/{id}/done", post(work::done))
        .with_state(state)
}

/// Whether the client asked for `media` (e.g. `application/yaml`).
pub(crate) fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|m| m.trim().starts_with(media)))
}
