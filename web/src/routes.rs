//! The dashboard's routes, and what turns a page that needs a login into a
//! redirect to it (coming back to that page after).

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::error::NeedsLogin;
use crate::{AppState, badge, login, overview, pages};

const STYLE: &str = include_str!("../static/ick.css");
const FOLLOW: &str = include_str!("../static/follow.js");

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::projects))
        .route("/projects/{name}", get(pages::project))
        .route("/projects/{name}/trigger", post(pages::trigger))
        .route("/builds/{id}", get(pages::build))
        .route("/builds/{id}/log.txt", get(pages::raw_log))
        .route("/builds/{id}/events", get(pages::events))
        .route("/builds/{id}/cancel", post(pages::cancel))
        .route("/builds/{id}/retry", post(pages::retry))
        .route("/workers", get(overview::workers))
        .route("/outbox", get(overview::outbox))
        .route("/audit", get(overview::audit))
        .route("/login", get(login::start))
        .route("/login/callback", get(login::callback))
        .route("/logout", post(login::logout))
        .route("/static/ick.css", get(style))
        .route("/static/follow.js", get(follow_script))
        .route("/badges/{file}", get(badge::badge))
        .layer(middleware::from_fn(login_first))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

async fn follow_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        FOLLOW,
    )
        .into_response()
}

/// A page that needs a login sends the person to it, to come back here.
async fn login_first(request: Request, next: Next) -> Response {
    let back = request
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let is_get = request.method() == axum::http::Method::GET;
    let response = next.run(request).await;
    if response.extensions().get::<NeedsLogin>().is_none() {
        return response;
    }
    // A form posted without a session goes back to where it came from.
    let back = if is_get { back } else { "/".to_string() };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("back", &back)
        .finish();
    let mut redirect = Redirect::to(&format!("/login?{query}")).into_response();
    // A session renewed (or ended) on the way keeps its cookie.
    for cookie in response.headers().get_all(header::SET_COOKIE) {
        redirect
            .headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    redirect
}

/// No page may be framed or load anything from elsewhere.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
