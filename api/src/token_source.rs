//! The client side of OAuth2: client-credentials tokens, cached and renewed.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

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
}

struct Cached {
    token: String,
    renew_at: Instant,
}

/// Gets access tokens by the client-credentials grant, keeps the current one
/// and fetches a new one once three quarters of its lifetime have passed.
pub struct TokenSource {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
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
            client_secret,
            scope,
            cached: Mutex::new(None),
        }
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
        *cached = Some(Cached {
            token: response.access_token.clone(),
            renew_at: Instant::now() + lifetime * 3 / 4,
        });
        Ok(response.access_token)
    }

    /// Forgets the cached token, e.g. after a service answered 401.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// Asks the IDP for a new token, bypassing the cache.
    pub async fn fetch(&self) -> Result<TokenResponse, TokenError> {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let unreachable = |source| TokenError::Unreachable {
            url: self.token_url.clone(),
            source,
        };
        let response = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose()))
            .form(&form)
            .send()
            .await
            .map_err(unreachable)?;
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
}
