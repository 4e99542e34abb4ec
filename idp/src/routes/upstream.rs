//! `GET /upstream/{name}/start?csrf=…` sends a browser with a pending
//! login (the login form's CSRF token and cookie) to an upstream OpenID
//! provider; `GET /upstream/{name}/callback` takes it back, checks what
//! the provider says, and ends the original login as a password would.
//!
//! The request upstream has its own state, nonce and PKCE S256: stored
//! hashed (the verifier derived from the state and the browser's cookie,
//! never stored), bound to the cookie, single use, expiring with the form.

use std::collections::HashMap;

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::authorize::{
    EXPIRED, complete, enabled_client, failed, login_cookie, pairs, same_browser, see_other,
};
use super::login_page::error_page;
use crate::AppState;
use crate::clients::hash_secret;
use crate::store::UpstreamLogin;
use crate::store::now_ms;
use crate::upstream::{Refusal, Resolved, Upstream, resolve_user};

/// How long a person may take at the provider.
const UPSTREAM_LIFETIME_MS: i64 = 10 * 60 * 1000;

const GONE: &str = "This sign-in has expired, was used already, or was not started in this \
                    browser.";

fn not_configured() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "No such sign-in provider is configured here.",
    )
}

fn refused(upstream: &Upstream, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Unreachable(why) => {
            tracing::warn!(upstream = %upstream.slug, error = %why, "upstream provider unusable");
            error_page(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "{} cannot be reached or answered wrongly; try again shortly.",
                    upstream.name
                ),
            )
        }
        Refusal::Refused(why) => {
            tracing::info!(upstream = %upstream.slug, reason = %why, "upstream login refused");
            error_page(StatusCode::BAD_REQUEST, &why)
        }
    }
}

/// Where the provider sends the browser back.
fn callback_uri(state: &AppState, upstream: &Upstream) -> String {
    format!("{}/upstream/{}/callback", state.issuer, upstream.slug)
}

/// The provider `name` names (else 404) and the request's query.
fn upstream_and_query<'a>(
    state: &'a AppState,
    name: &str,
    query: Option<String>,
) -> Result<(&'a Upstream, HashMap<String, String>), Box<Response>> {
    let upstream = state
        .upstreams
        .get(name)
        .ok_or_else(|| Box::new(not_configured()))?;
    let query = pairs(query.unwrap_or_default().as_bytes())
        .map_err(|e| Box::new(error_page(StatusCode::BAD_REQUEST, &e)))?;
    Ok((upstream, query))
}

pub(super) async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (upstream, query) = match upstream_and_query(&state, &name, query) {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let Some(csrf) = query.get("csrf").filter(|c| !c.is_empty()) else {
        return error_page(StatusCode::BAD_REQUEST, EXPIRED);
    };
    let now = now_ms();
    let attempt = match state.store.login_attempt(&hash_secret(csrf), now).await {
        Ok(Some(a)) => a,
        Ok(None) => return error_page(StatusCode::BAD_REQUEST, EXPIRED),
        Err(e) => return failed(e),
    };
    let cookie = match login_cookie(&headers) {
        Some(c) if same_browser(&headers, &attempt.cookie_sha256) => c,
        _ => return error_page(StatusCode::BAD_REQUEST, EXPIRED),
    };
    let outgoing = match state
        .upstreams
        .start(upstream, &callback_uri(&state, upstream), cookie)
        .await
    {
        Ok(o) => o,
        Err(refusal) => return refused(upstream, refusal),
    };
    let login = UpstreamLogin {
        state_sha256: outgoing.state_sha256,
        upstream: upstream.slug.clone(),
        csrf_sha256: attempt.csrf_sha256,
        cookie_sha256: attempt.cookie_sha256,
        nonce_sha256: outgoing.nonce_sha256,
        expires_at: attempt.expires_at.min(now + UPSTREAM_LIFETIME_MS),
    };
    if let Err(e) = state.store.insert_upstream_login(&login, now).await {
        return failed(e);
    }
    see_other(&outgoing.url)
}

pub(super) async fn callback(
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (upstream, query) = match upstream_and_query(&state, &name, query) {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let Some(given_state) = query.get("state").filter(|s| !s.is_empty()) else {
        return error_page(StatusCode::BAD_REQUEST, GONE);
    };
    let now = now_ms();
    // Used up here, whatever follows: a callback works once.
    let login = match state
        .store
        .take_upstream_login(&hash_secret(given_state), now)
        .await
    {
        Ok(Some(l)) if l.upstream == upstream.slug => l,
        Ok(_) => return error_page(StatusCode::BAD_REQUEST, GONE),
        Err(e) => return failed(e),
    };
    let cookie = match login_cookie(&headers) {
        Some(c) if same_browser(&headers, &login.cookie_sha256) => c,
        _ => {
            tracing::info!(upstream = %upstream.slug, "an upstream callback came without its browser's cookie");
            return error_page(StatusCode::BAD_REQUEST, GONE);
        }
    };
    if let Some(error) = query.get("error") {
        let text = match query.get("error_description") {
            Some(d) => format!("{} did not log you in: {error} ({d}).", upstream.name),
            None => format!("{} did not log you in: {error}.", upstream.name),
        };
        return refused(upstream, Refusal::Refused(text));
    }
    let Some(code) = query.get("code").filter(|c| !c.is_empty()) else {
        return error_page(StatusCode::BAD_REQUEST, "The provider sent no code.");
    };
    let attempt = match state.store.login_attempt(&login.csrf_sha256, now).await {
        Ok(Some(a)) => a,
        Ok(None) => return error_page(StatusCode::BAD_REQUEST, EXPIRED),
        Err(e) => return failed(e),
    };
    let identity = match state
        .upstreams
        .finish(
            upstream,
            &callback_uri(&state, upstream),
            code,
            given_state,
            cookie,
            &login.nonce_sha256,
        )
        .await
    {
        Ok(i) => i,
        Err(refusal) => return refused(upstream, refusal),
    };
    let user = match resolve_user(&state.store, upstream, &identity, now, peer.ip()).await {
        Ok(Resolved::User(u)) => u,
        Ok(Resolved::Refused(why)) => {
            tracing::info!(upstream = %upstream.slug, subject = %identity.subject, reason = %why, "upstream login refused");
            return error_page(StatusCode::FORBIDDEN, &why);
        }
        Err(e) => return failed(e),
    };
    let client = match enabled_client(&state, &attempt.client_id).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    complete(&state, &attempt, &client, &user, now).await
}
