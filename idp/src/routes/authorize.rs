//! `GET /authorize` shows the login form for an authorization request;
//! `POST /authorize` checks the person's password and sends them back to
//! the client with a code (RFC 6749 §4.1, PKCE S256, RFC 9207 `iss`).
//!
//! Login CSRF: the form carries a random token, stored hashed with the
//! request it is for; the browser carries a random cookie, whose hash the
//! attempt also holds. A POST needs both, so a page elsewhere cannot log a
//! victim in as the attacker, nor replay someone else's form.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ick_api::Secret;
use subtle::ConstantTimeEq;

use super::login_page::{LoginForm, error_page, login_form};
use crate::AppState;
use crate::clients::{hash_secret, new_secret};
use crate::error::IdpError;
use crate::guesses::Guesses;
use crate::login::{AuthorizationRequest, RequestError, redirect_with};
use crate::people::{Name, password_matches};
use crate::store::{ClientRecord, CodeRecord, LoginAttempt, UserRecord, now_ms};

/// The browser's login cookie.
pub(super) const COOKIE: &str = "ick_login";
/// How long a login form may be filled in.
const FORM_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// How long a code lives (it is for the client to exchange at once).
const CODE_LIFETIME_MS: i64 = 60 * 1000;

pub(super) const EXPIRED: &str = "This login form has expired or was not issued to this browser.";
const WRONG: &str = "The username or password is not right, or the account cannot log in.";

pub(super) fn failed(e: IdpError) -> Response {
    if e.is_unreachable() {
        tracing::warn!(error = %e, "the database is away");
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The identity provider cannot reach its database; try again shortly.",
        );
    }
    tracing::error!(error = %e, "login failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The identity provider failed; its log says why.",
    )
}

pub(super) fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(header::LOCATION, value);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => error_page(StatusCode::BAD_REQUEST, "The redirect URI is not usable."),
    }
}

/// The pairs of a query or form, refusing repeated names (RFC 6749 §3.1).
pub(super) fn pairs(text: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(text) {
        if map.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("The parameter {k} is given more than once."));
        }
    }
    Ok(map)
}

/// The value of cookie `name` in the request, if any.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request carries the login cookie whose hash is `sha256`.
pub(super) fn same_browser(headers: &HeaderMap, sha256: &str) -> bool {
    login_cookie(headers).is_some_and(|c| hash_secret(c).as_bytes().ct_eq(sha256.as_bytes()).into())
}

/// The browser's login cookie, if it has one.
pub(super) fn login_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, COOKIE)
}

/// The enabled client `id` a login is for (a browser's or a device's), or
/// the page saying it is not.
pub(super) async fn enabled_client(state: &AppState, id: &str) -> Result<ClientRecord, Response> {
    match state.store.get(id).await {
        Ok(Some(c)) if c.enabled => Ok(c),
        Ok(_) => Err(error_page(
            StatusCode::BAD_REQUEST,
            "The application is gone or disabled.",
        )),
        Err(e) => Err(failed(e)),
    }
}

pub(super) async fn show(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = match pairs(query.unwrap_or_default().as_bytes()) {
        Ok(q) => q,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let client = match query.get("client_id") {
        Some(id) => match state.store.get(id).await {
            Ok(c) => c,
            Err(e) => return failed(e),
        },
        None => None,
    };
    let request = match AuthorizationRequest::parse(&query, client.as_ref()) {
        Ok(r) => r,
        Err(RequestError::Show(text)) => return error_page(StatusCode::BAD_REQUEST, &text),
        Err(RequestError::Redirect {
            redirect_uri,
            error,
            description,
            state: given_state,
        }) => {
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &given_state {
                params.push(("state", s.as_str()));
            }
            params.push(("iss", &state.issuer));
            return see_other(&redirect_with(&redirect_uri, &params));
        }
    };
    let Some(client) = client else {
        return error_page(StatusCode::BAD_REQUEST, "Unknown application.");
    };
    let (csrf, browser) = match (new_secret(), browser_cookie(&headers)) {
        (Ok(csrf), Ok(browser)) => (csrf, browser),
        (Err(e), _) | (_, Err(e)) => return failed(e),
    };
    let now = now_ms();
    let attempt = LoginAttempt {
        csrf_sha256: hash_secret(csrf.expose()),
        cookie_sha256: hash_secret(browser.expose()),
        client_id: request.client_id,
        redirect_uri: request.redirect_uri,
        scope: request.scope.to_string(),
        state: request.state,
        code_challenge: request.code_challenge,
        nonce: request.nonce,
        expires_at: now + FORM_LIFETIME_MS,
    };
    if let Err(e) = state.store.insert_login_attempt(&attempt, now).await {
        return failed(e);
    }
    let mut response = login_form(
        StatusCode::OK,
        &LoginForm {
            action: "authorize",
            client_name: &client.name,
            csrf: csrf.expose(),
            username: "",
            error: None,
            upstreams: state.upstreams.list(),
        },
    );
    set_browser_cookie(&state, &mut response, &browser);
    response
}

/// The browser's login cookie: the one it has, or a new one. One per
/// browser, shared by its tabs: a second login form must not break the first.
pub(super) fn browser_cookie(headers: &HeaderMap) -> Result<Secret, IdpError> {
    match cookie(headers, COOKIE).filter(|v| v.len() == 43) {
        Some(existing) => Ok(Secret::new(existing)),
        None => new_secret(),
    }
}

/// Sends the browser its login cookie.
pub(super) fn set_browser_cookie(state: &AppState, response: &mut Response, browser: &Secret) {
    let secure = if state.issuer.starts_with("https:") {
        "; Secure"
    } else {
        ""
    };
    let set = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age=86400{secure}",
        browser.expose()
    );
    if let Ok(value) = HeaderValue::from_str(&set) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}

/// Why a username and password did not log in.
pub(super) enum PasswordRefused {
    /// Too many failures: try again in this many seconds.
    TooMany(u64),
    /// Wrong, unknown, without a password, or disabled: not told apart.
    Wrong,
    Failed(IdpError),
}

/// Checks `username`'s `password`, rate-limited per user and peer.
pub(super) async fn check_password(
    state: &AppState,
    peer: SocketAddr,
    username: &str,
    password: Secret,
) -> Result<UserRecord, PasswordRefused> {
    let guesses = Guesses::new(
        &state.failures,
        &state.counters,
        "login",
        username,
        peer.ip(),
    );
    let blocked = guesses.blocked_for(&state.config.auth_failures);
    if let Some(wait) = blocked {
        tracing::warn!(user = %username, peer = %peer.ip(), "logins refused after failed attempts");
        return Err(PasswordRefused::TooMany(wait.as_secs().max(1)));
    }
    let user = match Name::parse("user", username) {
        Ok(name) => state
            .store
            .user_by_name(name.as_str())
            .await
            .map_err(PasswordRefused::Failed)?,
        Err(_) => None,
    };
    // The same work for an unknown user, a user without a password, and a
    // wrong password, so that neither answers nor timing tell them apart.
    let hash = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_hash.to_string());
    let matches = password_matches(password, hash).await;
    match user {
        Some(user) if matches && user.password_hash.is_some() && user.enabled => {
            guesses.succeeded();
            Ok(user)
        }
        _ => {
            guesses.failed();
            tracing::info!(user = %username, peer = %peer.ip(), "login failed");
            Err(PasswordRefused::Wrong)
        }
    }
}

/// The page for a refused login: the form again (`again`) with why.
pub(super) fn password_refused(
    refused: PasswordRefused,
    again: impl Fn(StatusCode, &str) -> Response,
) -> Response {
    match refused {
        PasswordRefused::TooMany(seconds) => {
            let mut response = again(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many failed logins; try again in {seconds} s."),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
        PasswordRefused::Wrong => again(StatusCode::UNAUTHORIZED, WRONG),
        PasswordRefused::Failed(e) => failed(e),
    }
}

pub(super) async fn submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match pairs(&body) {
        Ok(f) => f,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let Some(csrf) = form.get("csrf").filter(|c| !c.is_empty()) else {
        return error_page(StatusCode::BAD_REQUEST, EXPIRED);
    };
    let csrf_sha256 = hash_secret(csrf);
    let now = now_ms();
    let attempt = match state.store.login_attempt(&csrf_sha256, now).await {
        Ok(Some(a)) => a,
        Ok(None) => return error_page(StatusCode::BAD_REQUEST, EXPIRED),
        Err(e) => return failed(e),
    };
    if !same_browser(&headers, &attempt.cookie_sha256) {
        tracing::info!(peer = %peer.ip(), "a login form came back without its browser's cookie");
        return error_page(StatusCode::BAD_REQUEST, EXPIRED);
    }
    let client = match enabled_client(&state, &attempt.client_id).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let username = form.get("username").map(|u| u.trim()).unwrap_or("");
    let password = Secret::new(form.get("password").cloned().unwrap_or_default());
    let again = |status: StatusCode, error: &str| {
        login_form(
            status,
            &LoginForm {
                action: "authorize",
                client_name: &client.name,
                csrf,
                username,
                error: Some(error),
                upstreams: state.upstreams.list(),
            },
        )
    };

    let user = match check_password(&state, peer, username, password).await {
        Ok(user) => user,
        Err(refused) => return password_refused(refused, again),
    };
    complete(&state, &attempt, &client, &user, now).await
}

/// Ends login `attempt` for `user`, who proved who they are (a password
/// here, an upstream provider elsewhere): uses the attempt up, stores a
/// code for it, and sends the browser back to the client with the code
/// and the client's own state. Every login ends here.
pub(super) async fn complete(
    state: &AppState,
    attempt: &LoginAttempt,
    client: &ClientRecord,
    user: &UserRecord,
    now: i64,
) -> Response {
    let code = match new_secret() {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let record = CodeRecord {
        code_sha256: hash_secret(code.expose()),
        client_id: client.id.clone(),
        user_id: user.id.clone(),
        redirect_uri: attempt.redirect_uri.clone(),
        code_challenge: attempt.code_challenge.clone(),
        scope: attempt.scope.clone(),
        nonce: attempt.nonce.clone(),
        auth_time: now / 1000,
        expires_at: now + CODE_LIFETIME_MS,
    };
    match state
        .store
        .finish_login(&attempt.csrf_sha256, &record)
        .await
    {
        Ok(true) => {}
        Ok(false) => return error_page(StatusCode::BAD_REQUEST, EXPIRED),
        Err(e) => return failed(e),
    }
    tracing::info!(user = %user.name, client_id = %client.id, "logged in");
    see_other(&redirect_with(
        &attempt.redirect_uri,
        &[
            ("code", code.expose()),
            ("state", &attempt.state),
            ("iss", &state.issuer),
        ],
    ))
}
