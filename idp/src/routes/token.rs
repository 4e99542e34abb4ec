//! `POST /token`: the client-credentials grant (RFC 6749 §4.4) for
//! machines; the authorization-code grant with PKCE (§4.1, RFC 7636) and
//! the refresh-token grant (§6, rotating, RFC 9700 §4.14) and the device
//! grant (RFC 8628 §3.4) for people. Errors exactly as §5.2 (and RFC 8628
//! §3.5) say.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ick_api::ScopeSet;
use ick_api::oauth::{DEVICE_CODE_GRANT, TokenResponse};

use super::oauth::{OAuthError, authenticate, no_store, parse_form};
use crate::AppState;
use crate::clients::{hash_secret, new_secret};
use crate::login::{self, GrantedScope};
use crate::store::{ClientRecord, Polled, Redeemed, Refreshed, UserRecord, now_ms};
use crate::tokens::{self, IdTokenFor, Person};

pub(super) async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match grant(&state, peer, &headers, &body).await {
        Ok(response) => (StatusCode::OK, no_store(), Json(response)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn grant(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, OAuthError> {
    let form = parse_form(headers, body)?;
    let (grant, answer) = match form.get("grant_type").map(String::as_str) {
        None => Err(OAuthError::new("invalid_request", "grant_type is missing"))?,
        Some("client_credentials") => {
            let client = authenticate(state, peer, headers, &form, false).await?;
            (
                "client_credentials",
                client_credentials(state, &client, &form),
            )
        }
        Some("authorization_code") => {
            let client = authenticate(state, peer, headers, &form, true).await?;
            (
                "authorization_code",
                authorization_code(state, &client, &form).await,
            )
        }
        Some("refresh_token") => {
            let client = authenticate(state, peer, headers, &form, true).await?;
            ("refresh_token", refresh_token(state, &client, &form).await)
        }
        Some(DEVICE_CODE_GRANT) => {
            let client = authenticate(state, peer, headers, &form, true).await?;
            ("device_code", device_code(state, &client, &form).await)
        }
        Some(other) => Err(OAuthError::new(
            "unsupported_grant_type",
            format!(
                "grant type {other:?} is not supported; use client_credentials, \
                 authorization_code, refresh_token or {DEVICE_CODE_GRANT}"
            ),
        ))?,
    };
    if answer.is_ok() {
        state.counters.issued(grant);
    }
    answer
}

fn signing_failed(e: String) -> OAuthError {
    tracing::error!(error = %e, "cannot issue a token");
    OAuthError::server_error()
}

fn client_credentials(
    state: &AppState,
    client: &ClientRecord,
    form: &HashMap<String, String>,
) -> Result<TokenResponse, OAuthError> {
    let scopes = match form
        .get("scope")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => client.scopes.clone(),
        Some(asked) => {
            let asked: ScopeSet = asked
                .parse()
                .map_err(|e| OAuthError::new("invalid_scope", format!("{e}")))?;
            let excess = asked.difference(&client.scopes);
            if !excess.is_empty() {
                return Err(OAuthError::new(
                    "invalid_scope",
                    format!("the client may not have: {excess}"),
                ));
            }
            asked
        }
    };
    let ring = state.key_ring();
    tokens::issue(
        &ring,
        &state.issuer,
        state.config.token_lifetime,
        client,
        &scopes,
    )
    .map_err(signing_failed)
}

fn required<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OAuthError> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::new("invalid_request", format!("{name} is missing")))
}

/// The user a grant is for, with their groups, if they may still have
/// tokens; otherwise the family is revoked and the grant refused.
async fn live_user(
    state: &AppState,
    user_id: &str,
    family_id: &str,
) -> Result<(UserRecord, Vec<String>), OAuthError> {
    match state.store.user_with_groups(user_id).await? {
        Some((user, groups)) if user.enabled => Ok((user, groups)),
        _ => {
            state.store.revoke_family(family_id, now_ms()).await?;
            Err(OAuthError::new(
                "invalid_grant",
                "the user is disabled or gone",
            ))
        }
    }
}

/// Access token (and, for `openid`, an ID token) for `user` through
/// `client`, with `refresh` as the refresh token.
async fn person_tokens(
    state: &AppState,
    client: &ClientRecord,
    person: &Person<'_>,
    granted: &GrantedScope,
    refresh: String,
    id_token: Option<IdTokenFor<'_>>,
) -> Result<TokenResponse, OAuthError> {
    let ring = state.key_ring();
    let lifetime = state.config.token_lifetime;
    let mut response = tokens::issue_for_person(
        &ring,
        &state.issuer,
        lifetime,
        client,
        person,
        &granted.to_string(),
    )
    .map_err(signing_failed)?;
    response.refresh_token = Some(refresh);
    if let Some(login) = id_token.filter(|_| granted.openid) {
        response.id_token = Some(
            tokens::id_token(&ring, &state.issuer, lifetime, person, login)
                .map_err(signing_failed)?,
        );
    }
    Ok(response)
}

async fn authorization_code(
    state: &AppState,
    client: &ClientRecord,
    form: &HashMap<String, String>,
) -> Result<TokenResponse, OAuthError> {
    let code = required(form, "code")?;
    let redirect_uri = required(form, "redirect_uri")?;
    let verifier = form.get("code_verifier").ok_or_else(|| {
        OAuthError::new(
            "invalid_request",
            "code_verifier is missing: this IDP requires PKCE (S256)",
        )
    })?;
    login::check_verifier(verifier).map_err(|e| OAuthError::new("invalid_request", e))?;
    let family_id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    let redeemed = state
        .store
        .redeem_code(&hash_secret(code), &family_id, now, |stored| {
            if stored.client_id != client.id {
                return Err("the code was issued to another client".into());
            }
            if stored.expires_at < now {
                return Err("the code has expired".into());
            }
            if stored.redirect_uri != redirect_uri {
                return Err("redirect_uri differs from the authorization request's".into());
            }
            if !login::verifier_matches(verifier, &stored.code_challenge) {
                return Err("code_verifier does not match the code_challenge".into());
            }
            Ok(())
        })
        .await?;
    let code = match redeemed {
        Redeemed::Issued(code) => code,
        Redeemed::Unknown => {
            return Err(OAuthError::new("invalid_grant", "the code is unknown"));
        }
        Redeemed::Reused => {
            tracing::warn!(client_id = %client.id, "an authorization code was used twice; its tokens are revoked");
            return Err(OAuthError::new(
                "invalid_grant",
                "the code was used before; the tokens issued for it are revoked",
            ));
        }
        Redeemed::Refused(why) => return Err(OAuthError::new("invalid_grant", why)),
    };
    let login = IdTokenFor {
        client,
        nonce: code.nonce.clone(),
        auth_time: code.auth_time,
    };
    first_tokens(state, &family_id, &code.user_id, &code.scope, login, now).await
}

/// The tokens of a login just redeemed (a code, a device code) whose
/// family `family_id` was started: its first refresh token, an access
/// token and (for `openid`) an ID token.
async fn first_tokens(
    state: &AppState,
    family_id: &str,
    user_id: &str,
    scope: &str,
    login: IdTokenFor<'_>,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let client = login.client;
    let (user, groups) = live_user(state, user_id, family_id).await?;
    let refresh = new_secret()?;
    state
        .store
        .insert_refresh_token(
            family_id,
            &hash_secret(refresh.expose()),
            now,
            now + state.config.refresh_token_lifetime.as_millis() as i64,
        )
        .await?;
    let granted = GrantedScope::parse_stored(scope);
    tracing::info!(client_id = %client.id, user = %user.name, "tokens issued for a login");
    let person = Person {
        user: &user,
        groups,
    };
    person_tokens(
        state,
        client,
        &person,
        &granted,
        refresh.expose().to_string(),
        Some(login),
    )
    .await
}

/// RFC 8628 §3.4/3.5: a device polls with its device code.
async fn device_code(
    state: &AppState,
    client: &ClientRecord,
    form: &HashMap<String, String>,
) -> Result<TokenResponse, OAuthError> {
    let code = required(form, "device_code")?;
    if !client.device {
        return Err(OAuthError::new(
            "unauthorized_client",
            "the client may not use the device grant",
        ));
    }
    let family_id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    let polled = state
        .store
        .poll_device_code(&hash_secret(code), &client.id, &family_id, now)
        .await?;
    let login = match polled {
        Polled::Approved(login) => login,
        Polled::Pending => {
            return Err(OAuthError::new(
                "authorization_pending",
                "the person has not yet entered the code and approved",
            ));
        }
        Polled::SlowDown => {
            return Err(OAuthError::new(
                "slow_down",
                "polled sooner than the interval; wait 5 s longer from now on",
            ));
        }
        Polled::Denied => {
            return Err(OAuthError::new(
                "access_denied",
                "the person denied the login",
            ));
        }
        Polled::Expired => {
            return Err(OAuthError::new(
                "expired_token",
                "the device code has expired; start again",
            ));
        }
        Polled::Unknown | Polled::OtherClient => {
            return Err(OAuthError::new(
                "invalid_grant",
                "the device code is unknown",
            ));
        }
        Polled::Reused => {
            tracing::warn!(client_id = %client.id, "a device code was used twice; its tokens are revoked");
            return Err(OAuthError::new(
                "invalid_grant",
                "the device code was used before; the tokens issued for it are revoked",
            ));
        }
    };
    let id_token = IdTokenFor {
        client,
        nonce: None,
        auth_time: login.auth_time,
    };
    first_tokens(
        state,
        &family_id,
        &login.user_id,
        &login.scope,
        id_token,
        now,
    )
    .await
}

async fn refresh_token(
    state: &AppState,
    client: &ClientRecord,
    form: &HashMap<String, String>,
) -> Result<TokenResponse, OAuthError> {
    let presented = required(form, "refresh_token")?;
    let next = new_secret()?;
    let now = now_ms();
    let rotated = state
        .store
        .rotate_refresh_token(
            &hash_secret(presented),
            &hash_secret(next.expose()),
            &client.id,
            now,
            now + state.config.refresh_token_lifetime.as_millis() as i64,
        )
        .await?;
    let family = match rotated {
        Refreshed::Rotated(family) => family,
        Refreshed::Unknown => {
            return Err(OAuthError::new(
                "invalid_grant",
                "the refresh token is unknown",
            ));
        }
        Refreshed::Revoked => {
            return Err(OAuthError::new(
                "invalid_grant",
                "the refresh token was revoked; log in again",
            ));
        }
        Refreshed::Reused => {
            tracing::warn!(client_id = %client.id, "a rotated refresh token was used again; its family is revoked");
            return Err(OAuthError::new(
                "invalid_grant",
                "the refresh token was used before; every token of its login is revoked",
            ));
        }
        Refreshed::Expired => {
            return Err(OAuthError::new(
                "invalid_grant",
                "the refresh token has expired",
            ));
        }
        Refreshed::Refused(why) => return Err(OAuthError::new("invalid_grant", why)),
    };
    let (user, groups) = live_user(state, &family.user_id, &family.id).await?;
    let mut granted = GrantedScope::parse_stored(&family.scope);
    if let Some(asked) = form
        .get("scope")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        granted = granted
            .narrowed(asked)
            .map_err(|e| OAuthError::new("invalid_scope", e))?;
    }
    let person = Person {
        user: &user,
        groups,
    };
    person_tokens(
        state,
        client,
        &person,
        &granted,
        next.expose().to_string(),
        None,
    )
    .await
}
