//! What the token and revocation endpoints share: RFC 6749 §5.2 errors,
//! the form, and client authentication (rate-limited).

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ick_api::oauth::OAuthErrorResponse;

use crate::AppState;
use crate::clients::{hash_secret, secret_matches};
use crate::error::IdpError;
use crate::guesses::Guesses;
use crate::store::ClientRecord;

/// An RFC 6749 §5.2 error answer.
pub(super) struct OAuthError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(code: &'static str, description: impl Into<String>) -> Self {
        let status = match code {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        OAuthError {
            status,
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    /// Our failure, told to the caller without its details.
    pub fn server_error() -> Self {
        OAuthError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "server_error",
            description: "the identity provider failed; see its log".into(),
            retry_after: None,
        }
    }
}

impl From<IdpError> for OAuthError {
    fn from(e: IdpError) -> Self {
        if e.is_unreachable() {
            tracing::warn!(error = %e, "the database is away");
            return OAuthError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "temporarily_unavailable",
                description: "the identity provider cannot reach its database; try again shortly"
                    .into(),
                retry_after: Some(crate::error::RETRY_AFTER_SECONDS),
            };
        }
        tracing::error!(error = %e, "token endpoint failed");
        OAuthError::server_error()
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = OAuthErrorResponse {
            error: self.code.to_string(),
            error_description: Some(self.description),
        };
        let mut response = (self.status, no_store(), Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ick\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub(super) fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

/// The form of an `application/x-www-form-urlencoded` body, refusing
/// repeated parameters (RFC 6749 §3.2).
pub(super) fn parse_form(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HashMap<String, String>, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(OAuthError::new(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut form = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(body) {
        if form.insert(key.to_string(), value.to_string()).is_some() {
            return Err(OAuthError::new(
                "invalid_request",
                format!("the parameter {key} is given more than once"),
            ));
        }
    }
    Ok(form)
}

/// How a client says who it is.
enum Presented {
    /// An id and a secret (HTTP Basic or the form).
    Secret(String, String),
    /// A public client: its id alone (RFC 6749 §2.3, `none`).
    Public(String),
}

/// Client id and secret from HTTP Basic (each form-urlencoded, RFC 6749
/// §2.3.1) or from the form; using both is an error. A `client_id` alone
/// in the form is a public client's.
fn presented(headers: &HeaderMap, form: &HashMap<String, String>) -> Result<Presented, OAuthError> {
    let from_form = form.get("client_secret").is_some();
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return match (form.get("client_id"), form.get("client_secret")) {
            (Some(id), Some(secret)) => Ok(Presented::Secret(id.clone(), secret.clone())),
            (Some(id), None) => Ok(Presented::Public(id.clone())),
            _ => Err(OAuthError::new(
                "invalid_client",
                "no client authentication: use HTTP Basic or client_id and client_secret",
            )),
        };
    };
    if from_form {
        return Err(OAuthError::new(
            "invalid_request",
            "use one client authentication method, not both Basic and form fields",
        ));
    }
    let malformed = || OAuthError::new("invalid_client", "malformed Basic authorization header");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    };
    let id = unescape(id);
    if form.get("client_id").is_some_and(|f| *f != id) {
        return Err(OAuthError::new(
            "invalid_request",
            "client_id in the form differs from the Basic credentials",
        ));
    }
    Ok(Presented::Secret(id, unescape(secret)))
}

/// Who the calling client is. Confidential clients prove it with their
/// secret; public ones (only where `public_allowed`: the grants people
/// use) name themselves, and PKCE or the refresh token does the proving.
/// Failures count per peer, per (client, peer), and, from addresses the
/// client never authenticated from, per client for all such strangers: a
/// stranger who knows a client's id cannot lock it out of the addresses it
/// used before.
pub(super) async fn authenticate(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    public_allowed: bool,
) -> Result<ClientRecord, OAuthError> {
    let presented = presented(headers, form)?;
    let client_id = match &presented {
        Presented::Secret(id, _) | Presented::Public(id) => id.clone(),
    };
    let guesses = Guesses::new(
        &state.failures,
        &state.counters,
        "client",
        &client_id,
        peer.ip(),
    );
    let blocked = guesses.blocked_for(&state.config.auth_failures);
    if let Some(wait) = blocked {
        let seconds = wait.as_secs().max(1);
        tracing::warn!(client_id = %client_id, peer = %peer.ip(), "token requests refused after failed authentications");
        return Err(OAuthError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "temporarily_unavailable",
            description: format!("too many failed client authentications; retry in {seconds} s"),
            retry_after: Some(seconds),
        });
    }

    let client = state.store.get(&client_id).await?;
    let authenticated = match (&presented, &client) {
        (Presented::Secret(_, secret), _) => {
            // Hash even for an unknown client, so timing does not tell
            // which exist.
            let stored = client
                .as_ref()
                .map(|c| c.secret_sha256.clone())
                .unwrap_or_else(|| hash_secret("no such client"));
            secret_matches(secret, &stored) && client.is_some()
        }
        (Presented::Public(_), Some(c)) => c.public && public_allowed,
        (Presented::Public(_), None) => false,
    };
    let client = match client {
        Some(client) if authenticated => client,
        _ => {
            guesses.failed();
            tracing::info!(client_id = %client_id, peer = %peer.ip(), "client authentication failed");
            return Err(OAuthError::new(
                "invalid_client",
                "client authentication failed",
            ));
        }
    };
    if !client.enabled {
        return Err(OAuthError::new("invalid_client", "the client is disabled"));
    }
    guesses.succeeded();
    Ok(client)
}
