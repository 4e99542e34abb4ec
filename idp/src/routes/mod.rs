//! The IDP's HTTP routes.

mod clients;
mod discovery;
mod token;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route(ick_api::oauth::TOKEN_PATH, post(token::token))
        .route(
            ick_api::oauth::DISCOVERY_PATH,
            get(discovery::configuration),
        )
        .route(ick_api::oauth::JWKS_PATH, get(discovery::jwks))
        .route("/clients", get(clients::list).post(clients::create))
        .route(
            "/clients/{id}",
            get(clients::show)
                .patch(clients::update)
                .delete(clients::delete),
        )
        .route("/clients/{id}/rotate-secret", post(clients::rotate))
        .with_state(state)
}
