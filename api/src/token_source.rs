//! The client side of OAuth2: tokens, cached and renewed, for a machine
//! (the client-credentials grant) or for a person who logged in (their
//! refresh token, rotated at each renewal and kept by the caller).

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::oauth::{OAuthErrorResponse, TokenResponse};
use crate::secret::Secret;

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The IDP could not be reached or answered garbage.
    #[error("cannot reach the identity provider at {url}: {source}")]
    Unreachable {
        /// The token endpoint.
        url: String,
        /// What went wrong.
        source: reqwest::Error,
    },
    /// The IDP refused (RFC 6749 §5.2).
    #[error("the identity provider refused: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// HTTP status.
        status: u16,
        /// The OAuth2 error code, e.g. `invalid_client`.
        error: String,
        /// The IDP's explanation.
        description: Option<String>,
    },
    /// A person's rotated tokens could not be kept (the next run would
    /// present a used refresh token).
    #[error("cannot keep the renewed login: {0}")]
    Keep(String),
}

/// A person's tokens, as kept between runs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonTokens {
    /// The current access token.
    pub access_token: Secret,
    /// The refresh token that gets the next one (good once).
    pub refresh_token: Secret,
    /// When the access token expires, seconds since the epoch.
    pub expires_at: i64,
}

impl std::fmt::Debug for PersonTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonTokens")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl PersonTokens {
    /// The tokens of a token response that has a refresh token.
    pub fn from_response(response: &TokenResponse) -> Option<PersonTokens> {
        Some(PersonTokens {
            access_token: Secret::new(response.access_token.clone()),
            refresh_token: Secret::new(response.refresh_token.clone()?),
            expires_at: chrono::Utc::now().timestamp() + response.expires_in as i64,
        })
    }
}

/// Keeps a person's renewed tokens (e.g. writes them to a file, 0600),
/// before they are used.
pub type KeepTokens = Box<dyn Fn(&PersonTokens) -> Result<(), String> + Send + Sync>;

/// How a source gets its tokens.
enum Grant {
    /// A machine: its secret, and the scopes it asks for.
    ClientCredentials {
        client_secret: Secret,
        scope: Option<String>,
    },
    /// A person: the refresh token of their login (a public client's).
    Refresh {
        current: Mutex<PersonTokens>,
        keep: KeepTokens,
    },
}

/// A person's access token is renewed when it is this close to expiry.
pub const PERSON_RENEW_BEFORE: Duration = Duration::from_secs(30);

struct Cached {
    token: String,
    renew_at: Instant,
}

/// Gets access tokens, keeps the current one and fetches a new one in
/// time: a machine's once three quarters of its lifetime have passed, a
/// person's [`PERSON_RENEW_BEFORE`] its expiry.
pub struct TokenSource {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    grant: Grant,
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for `client_id` at `token_url` (e.g. `https://idp/token`).
    /// `scope` narrows what is asked for; `None` asks for all the client may have.
    pub fn new(
        http: reqwest::Client,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
        scope: Option<String>,
    ) -> Self {
        TokenSource {
            http,
            token_url: token_url.into(),
            client_id: client_id.into(),
            grant: Grant::ClientCredentials {
                client_secret,
                scope,
            },
            cached: Mutex::new(None),
        }
    }

    /// A source for a person logged in through public client `client_id`:
    /// `tokens` until the access token is near expiry (or refused), then
    /// the refresh grant; every renewal is handed to `keep` first.
    pub fn person(
        http: reqwest::Client,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        tokens: PersonTokens,
        keep: KeepTokens,
    ) -> Self {
        let cached = person_cache(&tokens);
        TokenSource {
            http,
            token_url: token_url.into(),
            client_id: client_id.into(),
            grant: Grant::Refresh {
                current: Mutex::new(tokens),
                keep,
            },
            cached: Mutex::new(cached),
        }
    }

    /// Whether this source speaks for a person.
    pub fn is_person(&self) -> bool {
        matches!(self.grant, Grant::Refresh { .. })
    }

    /// The client id this source speaks for.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// A valid access token, from the cache when it is fresh enough.
    pub async fn token(&self) -> Result<String, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let response = self.fetch().await?;
        let lifetime = Duration::from_secs(response.expires_in);
        let renew_at = match self.grant {
            Grant::ClientCredentials { .. } => Instant::now() + lifetime * 3 / 4,
            Grant::Refresh { .. } => Instant::now() + lifetime.saturating_sub(PERSON_RENEW_BEFORE),
        };
        *cached = Some(Cached {
            token: response.access_token.clone(),
            renew_at,
        });
        Ok(response.access_token)
    }

    /// Forgets the cached token, e.g. after a service answered 401.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// Asks the IDP for a new token, bypassing the cache. For a person,
    /// this uses up the refresh token and keeps its successor.
    pub async fn fetch(&self) -> Result<TokenResponse, TokenError> {
        match &self.grant {
            Grant::ClientCredentials {
                client_secret,
                scope,
            } => {
                let mut form = vec![("grant_type", "client_credentials")];
                if let Some(scope) = scope {
                    form.push(("scope", scope));
                }
                let request = self
                    .http
                    .post(&self.token_url)
                    .basic_auth(&self.client_id, Some(client_secret.expose()))
                    .form(&form);
                self.post(request).await
            }
            Grant::Refresh { current, keep } => {
                // Held across the request: two refreshes with one token
                // would revoke the whole login.
                let mut current = current.lock().await;
                let form = [
                    ("grant_type", "refresh_token"),
                    ("client_id", self.client_id.as_str()),
                    ("refresh_token", current.refresh_token.expose()),
                ];
                let request = self.http.post(&self.token_url).form(&form);
                let response = self.post(request).await?;
                let mut next = PersonTokens::from_response(&response).unwrap_or(PersonTokens {
                    access_token: Secret::new(response.access_token.clone()),
                    refresh_token: current.refresh_token.clone(),
                    expires_at: 0,
                });
                next.expires_at = chrono::Utc::now().timestamp() + response.expires_in as i64;
                keep(&next).map_err(TokenError::Keep)?;
                *current = next;
                Ok(response)
            }
        }
    }

    async fn post(&self, request: reqwest::RequestBuilder) -> Result<TokenResponse, TokenError> {
        post_token_request(&self.token_url, request).await
    }
}

/// Posts `form` to the token endpoint `token_url` (a public client's
/// request: the form names its `client_id`); the answer, or the IDP's
/// refusal with its RFC 6749 §5.2 error code (e.g. RFC 8628's
/// `authorization_pending`).
pub async fn post_token_form(
    http: &reqwest::Client,
    token_url: &str,
    form: &[(&str, &str)],
) -> Result<TokenResponse, TokenError> {
    post_token_request(token_url, http.post(token_url).form(form)).await
}

async fn post_token_request(
    token_url: &str,
    request: reqwest::RequestBuilder,
) -> Result<TokenResponse, TokenError> {
    let unreachable = |source| TokenError::Unreachable {
        url: token_url.to_string(),
        source,
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    if status.is_success() {
        return response.json().await.map_err(unreachable);
    }
    let body: Option<OAuthErrorResponse> = response.json().await.ok();
    Err(TokenError::Refused {
        status: status.as_u16(),
        error: body
            .as_ref()
            .map(|b| b.error.clone())
            .unwrap_or_else(|| format!("HTTP {status}")),
        description: body.and_then(|b| b.error_description),
    })
}

/// The cache a person's kept tokens start with: their access token, if
/// it is not yet near expiry.
fn person_cache(tokens: &PersonTokens) -> Option<Cached> {
    let left = tokens.expires_at - chrono::Utc::now().timestamp();
    let left = Duration::from_secs(u64::try_from(left).ok()?);
    let fresh = left.checked_sub(PERSON_RENEW_BEFORE)?;
    Some(Cached {
        token: tokens.access_token.expose().to_string(),
        renew_at: Instant::now() + fresh,
    })
}
