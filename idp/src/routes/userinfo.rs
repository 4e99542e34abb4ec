//! `GET /userinfo` (OpenID Connect Core §5.3) and `POST /revoke` (RFC
//! 7009, logout).

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ick_api::auth::{AuthRejection, VerifyError};
use ick_api::oauth::UserInfoResponse;

use super::oauth::{OAuthError, authenticate, no_store, parse_form};
use crate::AppState;
use crate::clients::hash_secret;
use crate::error::IdpError;
use crate::tokens::{Person, user_claims};

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Who the bearer of a person's access token is, as the IDP knows them now.
pub(super) async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let unauthenticated =
        |why: &str| AuthRejection::Unauthenticated(why.to_string()).into_response();
    let Some(token) = bearer(&headers) else {
        return unauthenticated("the request has no bearer token");
    };
    let caller = match state.verifier.verify(token).await {
        Ok(caller) => caller,
        Err(VerifyError::Invalid(why)) => return unauthenticated(&why),
        Err(VerifyError::KeysUnavailable(why)) => {
            return AuthRejection::Unavailable(why).into_response();
        }
    };
    if caller.user.is_none() {
        return unauthenticated("the token is a client's, not a person's");
    }
    let (user, groups) = match state.store.user_with_groups(&caller.subject).await {
        Ok(Some((user, groups))) if user.enabled => (user, groups),
        Ok(_) => return unauthenticated("the user is disabled or gone"),
        Err(e) => return e.into_response(),
    };
    let person = Person {
        user: &user,
        groups,
    };
    let answer = UserInfoResponse {
        sub: user.id.clone(),
        person: user_claims(&person),
    };
    (StatusCode::OK, no_store(), Json(answer)).into_response()
}

/// RFC 7009: a client revokes one of its refresh tokens, and with it the
/// whole login (its family). Answers 200 for a token it does not know or
/// that is not the client's (§2.2); an access token lives out its short
/// life.
pub(super) async fn revoke(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result: Result<(), OAuthError> = async {
        let form = parse_form(&headers, &body)?;
        let client = authenticate(&state, peer, &headers, &form, true).await?;
        let token = form
            .get("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::new("invalid_request", "token is missing"))?;
        let now = chrono::Utc::now().timestamp_millis();
        let revoked = state
            .store
            .revoke_refresh_token(&hash_secret(token), &client.id, now)
            .await
            .map_err(|e: IdpError| OAuthError::from(e))?;
        if revoked {
            tracing::info!(client_id = %client.id, "refresh token revoked (logout)");
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => (StatusCode::OK, no_store()).into_response(),
        Err(e) => e.into_response(),
    }
}
