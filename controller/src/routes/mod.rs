//! The controller's HTTP routes. Each handler names the act it does
//! (`Authorized<access::…>`, which checks the token's scope), and asks
//! `crate::access` whether its caller may do it to the project (its
//! roles); the web hooks prove their project's trigger secret instead.
//! Handlers of changes take the caller's address for the audit log.

mod analytics;
mod audit;
mod builds;
mod definitions;
mod logs;
mod members;
mod notifications;
mod pipelines;
mod projects;
mod roles;
mod trigger_secrets;
mod webhooks;
mod work;
mod workers;

use std::marker::PhantomData;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::routing::{delete, get, post};
use ick_api::auth::{AuthRejection, Authorized, Caller, RequiredScope, TokenVerifier};
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

/// Like `Authorized<A>`, for reads that a public project allows without a
/// token: a request without an `Authorization` header passes with no
/// caller (what it may read is `crate::access`'s to say); one with a
/// token must have a valid one with the scope, as everywhere.
pub(crate) struct MaybeAuthorized<A> {
    pub caller: Option<Caller>,
    _act: PhantomData<A>,
}

impl<A: RequiredScope> FromRequestParts<AppState> for MaybeAuthorized<A> {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = if parts.headers.contains_key(header::AUTHORIZATION) {
            Some(
                Authorized::<A>::from_request_parts(parts, state)
                    .await?
                    .caller,
            )
        } else {
            None
        };
        Ok(MaybeAuthorized {
            caller,
            _act: PhantomData,
        })
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
        .route(
            "/projects/{name}/members",
            get(members::list).put(members::set),
        )
        .route("/projects/{name}/members/{member}", delete(members::remove))
        .route("/projects/{name}/access", get(members::access))
        .route("/roles", get(roles::list).put(roles::grant))
        .route("/roles/{member}/{role}", delete(roles::revoke))
        .route("/audit", get(audit::list))
        .route("/analytics", get(analytics::show))
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
