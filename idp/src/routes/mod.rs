//! The IDP's HTTP routes.

mod audit;
mod authorize;
mod clients;
mod device;
mod discovery;
mod login_page;
mod oauth;
mod people;
mod token;
mod upstream;
mod userinfo;

use axum::Router;
use axum::routing::{get, post, put};
use ick_api::oauth::{
    AUTHORIZE_PATH, DEVICE_AUTHORIZATION_PATH, DEVICE_PATH, DISCOVERY_PATH, JWKS_PATH, REVOKE_PATH,
    TOKEN_PATH, USERINFO_PATH,
};

use crate::AppState;

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(token::token))
        .route(AUTHORIZE_PATH, get(authorize::show).post(authorize::submit))
        .route(
            USERINFO_PATH,
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route(REVOKE_PATH, post(userinfo::revoke))
        .route(DEVICE_AUTHORIZATION_PATH, post(device::authorize))
        .route(DEVICE_PATH, get(device::show).post(device::enter_code))
        .route("/device/login", post(device::log_in))
        .route("/device/decide", post(device::decide))
        .route(DISCOVERY_PATH, get(discovery::configuration))
        .route(JWKS_PATH, get(discovery::jwks))
        .route("/audit", get(audit::list))
        .route("/clients", get(clients::list).post(clients::create))
        .route(
            "/clients/{id}",
            get(clients::show)
                .patch(clients::update)
                .delete(clients::delete),
        )
        .route("/clients/{id}/rotate-secret", post(clients::rotate))
        .route("/users", get(people::list_users).post(people::create_user))
        .route(
            "/users/{name}",
            get(people::show_user)
                .patch(people::update_user)
                .delete(people::delete_user),
        )
        .route("/users/{name}/password", put(people::set_password))
        .route(
            "/groups",
            get(people::list_groups).post(people::create_group),
        )
        .route(
            "/groups/{name}",
            get(people::show_group).delete(people::delete_group),
        )
        .route(
            "/groups/{name}/members/{user}",
            put(people::add_member).delete(people::remove_member),
        )
        .route("/upstream/{name}/start", get(upstream::start))
        .route("/upstream/{name}/callback", get(upstream::callback))
        .with_state(state)
}
