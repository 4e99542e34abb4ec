use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, RwLock};

use crate::oauth::{ACCESS_TOKEN_TYPE, AccessClaims, DISCOVERY_PATH, DiscoveryDocument, JwkSet};
use crate::scope::ScopeSet;

use super::extract::Caller;

/// How a service checks tokens: the `auth:` section of every service's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The IDP's issuer URL; its discovery document names the JWKS.
    pub issuer: String,
    /// The audience this service accepts (default `ick`).
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf` (default 30 s).
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// The JWKS is fetched again when older than this (default 5 min), so a
    /// removed key stops being trusted.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub jwks_max_age: Duration,
    /// At most one fetch in this interval, whatever tokens arrive (default 10 s).
    #[serde(default = "default_min_refresh", with = "humantime_serde")]
    pub jwks_min_refresh_interval: Duration,
}

fn default_audience() -> String {
    "ick".to_string()
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_max_age() -> Duration {
    Duration::from_secs(300)
}
fn default_min_refresh() -> Duration {
    Duration::from_secs(10)
}

impl AuthConfig {
    /// The defaults for an issuer.
    pub fn new(issuer: impl Into<String>) -> Self {
        AuthConfig {
            issuer: issuer.into(),
            audience: default_audience(),
            leeway: default_leeway(),
            jwks_max_age: default_max_age(),
            jwks_min_refresh_interval: default_min_refresh(),
        }
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token is not acceptable; the text says why (for the caller).
    #[error("{0}")]
    Invalid(String),
    /// The signing keys could not be fetched, so nothing can be checked.
    #[error("cannot fetch the identity provider's keys: {0}")]
    KeysUnavailable(String),
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_unknown_kid: Option<Instant>,
    last_error: Option<String>,
    jwks_uri: Option<String>,
}

/// Where the keys come from: the IDP's JWKS over HTTP, or (in the IDP
/// itself) its own key ring.
pub type LocalKeys = Arc<dyn Fn() -> JwkSet + Send + Sync>;

#[derive(Clone, Copy)]
enum Refresh {
    /// No keys yet, or the set is older than `jwks_max_age`.
    Load,
    /// A token named a key we do not have; asked at this instant.
    UnknownKid(Instant),
}

struct Inner {
    config: AuthConfig,
    local: Option<LocalKeys>,
    http: reqwest::Client,
    validation: Validation,
    keys: RwLock<KeySet>,
    refresh: Mutex<RefreshState>,
    fetches: AtomicU64,
    verified: std::sync::Mutex<HashMap<[u8; 32], Caller>>,
}

/// Verified tokens kept; tokens are reused for minutes by each client.
const VERIFIED_CACHE_SIZE: usize = 4096;

/// Checks access tokens against the IDP's published keys. Cheap to clone.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<Inner>,
}

impl TokenVerifier {
    /// A verifier for `config`; keys are fetched on first use.
    pub fn new(config: AuthConfig, http: reqwest::Client) -> Self {
        Self::build(config, http, None)
    }

    /// A verifier that reads keys from `keys` instead of fetching them: the
    /// IDP checks its own admin tokens this way.
    pub fn local(config: AuthConfig, keys: LocalKeys) -> Self {
        Self::build(config, crate::http::client(), Some(keys))
    }

    fn build(config: AuthConfig, http: reqwest::Client, local: Option<LocalKeys>) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[config.issuer.trim_end_matches('/')]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        TokenVerifier {
            inner: Arc::new(Inner {
                config,
                local,
                http,
                validation,
                keys: RwLock::new(KeySet::default()),
                refresh: Mutex::new(RefreshState::default()),
                fetches: AtomicU64::new(0),
                verified: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// How many times the JWKS has been fetched (for tests and metrics).
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Whether keys are loaded, fetching them if not: a service's readiness.
    pub async fn ready(&self) -> Result<(), VerifyError> {
        if self.inner.keys.read().await.fetched_at.is_some() {
            return Ok(());
        }
        self.refresh(Refresh::Load).await
    }

    /// Checks a bearer token: header, signature, `iss`, `aud`, `exp`, `nbf`.
    /// Scopes are the caller's to check.
    pub async fn verify(&self, token: &str) -> Result<Caller, VerifyError> {
        let invalid = |why: &str| VerifyError::Invalid(why.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed token"))?;
        // Only EdDSA: refuses `none`, and HS256 keyed with our public key.
        if header.alg != Algorithm::EdDSA {
            return Err(invalid("token algorithm is not EdDSA"));
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(invalid("token is not an access token (typ must be at+jwt)"));
        }
        let kid = header.kid.ok_or_else(|| invalid("token has no key id"))?;
        // Looking the key up first keeps a cached token subject to key
        // removal: a token whose key left the JWKS fails here.
        let key = self.key(&kid).await?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(caller) = self.cached(&digest) {
            return Ok(caller);
        }
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &self.inner.validation)
            .map_err(|e| {
                VerifyError::Invalid(
                    match e.kind() {
                        ErrorKind::ExpiredSignature => "token has expired",
                        ErrorKind::ImmatureSignature => "token is not valid yet",
                        ErrorKind::InvalidAudience => "token is for another audience",
                        ErrorKind::InvalidIssuer => "token is from another issuer",
                        ErrorKind::InvalidSignature => "token signature is invalid",
                        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
                        _ => "token is invalid",
                    }
                    .to_string(),
                )
            })?;
        let claims = data.claims;
        let scopes: ScopeSet = claims
            .scope
            .split(' ')
            .filter_map(|s| s.parse().ok())
            .collect();
        let caller = Caller {
            subject: claims.sub,
            client_id: claims.client_id,
            client_name: claims.client_name,
            scopes,
            expires_at: claims.exp,
            worker: claims.ick_worker,
            user: claims.ick_user,
        };
        self.remember(digest, &caller);
        Ok(caller)
    }

    /// A token verified before and not expired since (with the leeway).
    fn cached(&self, digest: &[u8; 32]) -> Option<Caller> {
        let cache = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let caller = cache.get(digest)?;
        let now = chrono::Utc::now().timestamp();
        (now <= caller.expires_at + self.inner.config.leeway.as_secs() as i64)
            .then(|| caller.clone())
    }

    /// Keeps a verified token so that its next use skips the signature
    /// check, the bulk of a check's cost. Bounded: expired entries go
    /// first, and a full cache starts over.
    fn remember(&self, digest: [u8; 32], caller: &Caller) {
        let mut cache = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CACHE_SIZE {
            let now = chrono::Utc::now().timestamp();
            cache.retain(|_, c| c.expires_at >= now);
            if cache.len() >= VERIFIED_CACHE_SIZE {
                cache.clear();
            }
        }
        cache.insert(digest, caller.clone());
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, VerifyError> {
        let asked = Instant::now();
        let reason = {
            let keys = self.inner.keys.read().await;
            let fresh = keys
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.inner.config.jwks_max_age);
            match keys.keys.get(kid) {
                Some(key) if fresh => return Ok(key.clone()),
                Some(_) => Refresh::Load,
                None if keys.fetched_at.is_none() => Refresh::Load,
                None => Refresh::UnknownKid(asked),
            }
        };
        let refreshed = self.refresh(reason).await;
        let keys = self.inner.keys.read().await;
        match keys.keys.get(kid) {
            // A stale set still serves while the IDP is unreachable.
            Some(key) => Ok(key.clone()),
            None => match refreshed {
                Err(e) if keys.fetched_at.is_none() => Err(e),
                _ => Err(VerifyError::Invalid(
                    "token is signed by an unknown key".to_string(),
                )),
            },
        }
    }

    /// Fetches the JWKS, within limits: at most one fetch per minimum
    /// interval for loads (first use, a stale set), and separately at most
    /// one per interval for unknown key ids, so a flood of forged tokens
    /// cannot make us hammer the IDP, yet a new key is learnt at once.
    async fn refresh(&self, reason: Refresh) -> Result<(), VerifyError> {
        let mut state = self.inner.refresh.lock().await;
        let interval = self.inner.config.jwks_min_refresh_interval;
        let within = |at: Option<Instant>| at.is_some_and(|at| at.elapsed() < interval);
        let skip = self.inner.local.is_none()
            && match reason {
                Refresh::Load => within(state.last_attempt),
                Refresh::UnknownKid(asked) => {
                    within(state.last_unknown_kid)
                        || state.last_attempt.is_some_and(|at| at >= asked)
                }
            };
        if skip {
            return match &state.last_error {
                Some(e) => Err(VerifyError::KeysUnavailable(e.clone())),
                None => Ok(()),
            };
        }
        if let Refresh::UnknownKid(_) = reason {
            state.last_unknown_kid = Some(Instant::now());
        }
        state.last_attempt = Some(Instant::now());
        self.inner.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch(&mut state).await {
            Ok(keys) => {
                state.last_error = None;
                let mut set = self.inner.keys.write().await;
                set.keys = keys;
                set.fetched_at = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch the JWKS");
                state.last_error = Some(e.clone());
                Err(VerifyError::KeysUnavailable(e))
            }
        }
    }

    async fn fetch(
        &self,
        state: &mut RefreshState,
    ) -> Result<HashMap<String, DecodingKey>, String> {
        let set = match &self.inner.local {
            Some(local) => local(),
            None => self.fetch_remote(state).await?,
        };
        let mut keys = HashMap::new();
        for jwk in set.keys {
            let usable = jwk.kty == "OKP"
                && jwk.crv.as_deref() == Some("Ed25519")
                && jwk.use_.as_deref().is_none_or(|u| u == "sig")
                && jwk.alg.as_deref().is_none_or(|a| a == "EdDSA");
            if let (true, Some(kid), Some(x)) = (usable, jwk.kid, jwk.x)
                && let Ok(key) = DecodingKey::from_ed_components(&x)
            {
                keys.insert(kid, key);
            }
        }
        Ok(keys)
    }

    async fn fetch_remote(&self, state: &mut RefreshState) -> Result<JwkSet, String> {
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let url = crate::http::join(&self.inner.config.issuer, DISCOVERY_PATH);
                let doc: DiscoveryDocument = self.get_json(&url).await?;
                state.jwks_uri = Some(doc.jwks_uri.clone());
                doc.jwks_uri
            }
        };
        self.get_json(&jwks_uri).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self
            .inner
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        response.json().await.map_err(|e| format!("GET {url}: {e}"))
    }
}
