//! RFC 8628: `POST /device_authorization` hands a device (a command line)
//! a device code to poll with and a user code for its person; `/device`
//! is where that person, in any browser, types the code, logs in with
//! their password (as at `/authorize`, same CSRF, cookie and guess
//! limits) and approves or denies. The token endpoint does the rest.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ick_api::Secret;
use ick_api::http::join;
use ick_api::oauth::{DEVICE_PATH, DeviceAuthorizationResponse};

use super::authorize::{
    EXPIRED, browser_cookie, check_password, enabled_client, failed, pairs, password_refused,
    same_browser, set_browser_cookie,
};
use super::login_page::{
    Consent, LoginForm, consent_form, error_page, login_form, message_page, user_code_form,
};
use super::oauth::{OAuthError, authenticate, no_store, parse_form};
use crate::AppState;
use crate::clients::{hash_secret, new_secret};
use crate::guesses::Guesses;
use crate::login::GrantedScope;
use crate::store::DeviceCode;
use crate::store::now_ms;
use crate::user_code::{new_user_code, normalize_user_code};

const WRONG_CODE: &str = "That code is not right, or it has expired or been used.";

/// `POST /device_authorization` (RFC 8628 §3.1, §3.2).
pub(super) async fn authorize(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match start(&state, peer, &headers, &body).await {
        Ok(answer) => (StatusCode::OK, no_store(), Json(answer)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn start(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DeviceAuthorizationResponse, OAuthError> {
    let form = parse_form(headers, body)?;
    let client = authenticate(state, peer, headers, &form, true).await?;
    if !client.device {
        return Err(OAuthError::new(
            "unauthorized_client",
            "the client may not use the device grant",
        ));
    }
    let scope = GrantedScope::requested(form.get("scope").map(String::as_str), &client)
        .map_err(|e| OAuthError::new("invalid_scope", e))?;
    let device_code = new_secret()?;
    let user_code = new_user_code()?;
    let typed = normalize_user_code(&user_code).ok_or_else(OAuthError::server_error)?;
    let settings = &state.config.device;
    let now = now_ms();
    let record = DeviceCode {
        device_code_sha256: hash_secret(device_code.expose()),
        user_code_sha256: hash_secret(&typed),
        client_id: client.id.clone(),
        scope: scope.to_string(),
        interval_ms: settings.interval.as_millis() as i64,
        expires_at: now + settings.code_lifetime.as_millis() as i64,
        cookie_sha256: None,
        login_user_id: None,
    };
    state.store.insert_device_code(&record, now).await?;
    tracing::info!(client_id = %client.id, "device login started");
    let verification_uri = join(&state.issuer, DEVICE_PATH);
    let complete = format!("{verification_uri}?user_code={user_code}");
    Ok(DeviceAuthorizationResponse {
        device_code: device_code.expose().to_string(),
        user_code,
        verification_uri,
        verification_uri_complete: Some(complete),
        expires_in: settings.code_lifetime.as_secs(),
        interval: settings.interval.as_secs(),
    })
}

fn action(state: &AppState, step: &str) -> String {
    join(&state.issuer, &format!("{DEVICE_PATH}{step}"))
}

/// `GET /device`: the form for the user code (prefilled from `?user_code=`).
pub(super) async fn show(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let query = pairs(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let prefill = query.get("user_code").map(String::as_str).unwrap_or("");
    user_code_form(StatusCode::OK, &action(&state, ""), prefill, None)
}

/// `POST /device`: the person typed a user code; a right one leads to
/// the login form. Wrong ones count as guesses, per peer.
pub(super) async fn enter_code(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match pairs(&body) {
        Ok(f) => f,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let typed = form.get("user_code").map(String::as_str).unwrap_or("");
    let again = |status: StatusCode, error: &str| {
        user_code_form(status, &action(&state, ""), typed, Some(error))
    };
    let ip = peer.ip();
    let guesses = Guesses::new(
        &state.failures,
        &state.counters,
        "user_code",
        &ip.to_string(),
        ip,
    );
    if let Some(wait) = guesses.blocked_for(&state.config.auth_failures) {
        let seconds = wait.as_secs().max(1);
        tracing::warn!(peer = %ip, "user codes refused after wrong guesses");
        let mut response = again(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many wrong codes; try again in {seconds} s."),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    let now = now_ms();
    let found = match normalize_user_code(typed) {
        Some(code) => match state
            .store
            .device_by_user_code(&hash_secret(&code), now)
            .await
        {
            Ok(found) => found,
            Err(e) => return failed(e),
        },
        None => None,
    };
    let Some(device) = found else {
        guesses.failed();
        tracing::info!(peer = %ip, "a wrong user code");
        return again(StatusCode::BAD_REQUEST, WRONG_CODE);
    };
    guesses.succeeded();
    let client = match enabled_client(&state, &device.client_id).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let (csrf, browser) = match (new_secret(), browser_cookie(&headers)) {
        (Ok(csrf), Ok(browser)) => (csrf, browser),
        (Err(e), _) | (_, Err(e)) => return failed(e),
    };
    let started = state
        .store
        .start_device_login(
            &device.device_code_sha256,
            &hash_secret(csrf.expose()),
            &hash_secret(browser.expose()),
            now,
        )
        .await;
    match started {
        Ok(true) => {}
        Ok(false) => return again(StatusCode::BAD_REQUEST, WRONG_CODE),
        Err(e) => return failed(e),
    }
    let mut response = login_form(
        StatusCode::OK,
        &LoginForm {
            action: &action(&state, "/login"),
            client_name: &client.name,
            csrf: csrf.expose(),
            username: "",
            error: None,
            // Upstream logins continue a browser's authorize request, not a
            // device's: the device page offers the password alone.
            upstreams: &[],
        },
    );
    set_browser_cookie(&state, &mut response, &browser);
    response
}

/// A posted form, and the device login its CSRF token and the browser's
/// cookie are for (the token's hash, the login).
struct Posted {
    form: HashMap<String, String>,
    csrf_sha256: String,
    device: DeviceCode,
}

async fn of_form(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Posted, Response> {
    let form = pairs(body).map_err(|e| error_page(StatusCode::BAD_REQUEST, &e))?;
    let Some(csrf) = form.get("csrf").filter(|c| !c.is_empty()) else {
        return Err(error_page(StatusCode::BAD_REQUEST, EXPIRED));
    };
    let csrf_sha256 = hash_secret(csrf);
    let device = match state.store.device_by_csrf(&csrf_sha256, now_ms()).await {
        Ok(Some(d)) => d,
        Ok(None) => return Err(error_page(StatusCode::BAD_REQUEST, EXPIRED)),
        Err(e) => return Err(failed(e)),
    };
    let bound = device
        .cookie_sha256
        .as_deref()
        .is_some_and(|stored| same_browser(headers, stored));
    if !bound {
        tracing::info!("a device login form came back without its browser's cookie");
        return Err(error_page(StatusCode::BAD_REQUEST, EXPIRED));
    }
    Ok(Posted {
        form,
        csrf_sha256,
        device,
    })
}

/// `POST /device/login`: the person's username and password.
pub(super) async fn log_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Posted {
        form,
        csrf_sha256,
        device,
    } = match of_form(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(page) => return page,
    };
    if device.login_user_id.is_some() {
        return error_page(StatusCode::BAD_REQUEST, EXPIRED);
    }
    let client = match enabled_client(&state, &device.client_id).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let csrf = form.get("csrf").map(String::as_str).unwrap_or("");
    let username = form.get("username").map(|u| u.trim()).unwrap_or("");
    let password = Secret::new(form.get("password").cloned().unwrap_or_default());
    let login_action = action(&state, "/login");
    let again = |status: StatusCode, error: &str| {
        login_form(
            status,
            &LoginForm {
                action: &login_action,
                client_name: &client.name,
                csrf,
                username,
                error: Some(error),
                upstreams: &[],
            },
        )
    };
    let user = match check_password(&state, peer, username, password).await {
        Ok(user) => user,
        Err(refused) => return password_refused(refused, again),
    };
    let next = match new_secret() {
        Ok(n) => n,
        Err(e) => return failed(e),
    };
    let now = now_ms();
    let checked = state
        .store
        .device_password_checked(
            &csrf_sha256,
            &hash_secret(next.expose()),
            &user.id,
            now / 1000,
            now,
        )
        .await;
    match checked {
        Ok(true) => {}
        Ok(false) => return error_page(StatusCode::BAD_REQUEST, EXPIRED),
        Err(e) => return failed(e),
    }
    consent_form(&Consent {
        action: &action(&state, "/decide"),
        csrf: next.expose(),
        client_name: &client.name,
        username: &user.name,
        scope: &GrantedScope::parse_stored(&device.scope).to_string(),
    })
}

/// `POST /device/decide`: approve or deny, after the password.
pub(super) async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Posted {
        form,
        csrf_sha256,
        device,
    } = match of_form(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(page) => return page,
    };
    let approve = match form.get("decision").map(String::as_str) {
        Some("approve") => true,
        Some("deny") => false,
        _ => return error_page(StatusCode::BAD_REQUEST, "Approve or deny the login."),
    };
    if device.login_user_id.is_none() {
        return error_page(StatusCode::BAD_REQUEST, EXPIRED);
    }
    match state
        .store
        .decide_device(&csrf_sha256, approve, now_ms())
        .await
    {
        Ok(true) => {}
        Ok(false) => return error_page(StatusCode::BAD_REQUEST, EXPIRED),
        Err(e) => return failed(e),
    }
    tracing::info!(client_id = %device.client_id, approve, "device login decided");
    if approve {
        message_page(
            StatusCode::OK,
            "Device approved",
            "You are logged in on your device; you may close this page.",
        )
    } else {
        message_page(
            StatusCode::OK,
            "Device denied",
            "The device was not logged in; you may close this page.",
        )
    }
}
