//! A person's session: a cookie sealed with the dashboard's key (AEAD, by
//! `cookie`'s private jar), `HttpOnly`, `SameSite=Lax`, `Secure` under
//! TLS, holding their tokens where no script can read them, and the CSRF
//! token every form of theirs carries. Nothing is kept on the server, so a
//! restart keeps everyone logged in and several dashboards can share a key.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ick_api::oauth::TokenResponse;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// The session cookie. (Cookies go by host, not port: the names are the
/// dashboard's own, apart from the IDP's on the same host.)
pub const SESSION: &str = "ick_web_session";
/// A login under way: its state, PKCE verifier and where to go back.
pub const LOGIN: &str = "ick_web_login";

/// Renewed this close to its access token's expiry.
const RENEW_BEFORE: i64 = 30;

/// What the session cookie holds.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// The person's user name.
    pub user: String,
    pub access_token: String,
    pub refresh_token: String,
    /// When the access token expires, seconds since the epoch.
    pub expires_at: i64,
    /// Every form of this session carries it.
    pub csrf: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What the login cookie holds while the person is at the IDP.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub verifier: String,
    /// The dashboard path to return to.
    pub back: String,
    /// When it began, seconds since the epoch.
    pub started_at: i64,
}

/// A login not back from the IDP this soon is refused.
const LOGIN_TAKES_AT_MOST: i64 = 600;

impl PendingLogin {
    pub fn new(back: String) -> PendingLogin {
        PendingLogin {
            state: random(),
            verifier: random(),
            back,
            started_at: now(),
        }
    }

    pub fn expired(&self) -> bool {
        now() - self.started_at > LOGIN_TAKES_AT_MOST
    }
}

/// A random URL-safe string of 32 bytes.
pub fn random() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7636 S256: the challenge of `verifier`.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Session {
    /// A session from the token response of a login (or a refresh).
    pub fn from_tokens(user: String, tokens: &TokenResponse, csrf: String) -> Option<Session> {
        Some(Session {
            user,
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone()?,
            expires_at: now() + tokens.expires_in as i64,
            csrf,
        })
    }

    pub fn needs_renewal(&self) -> bool {
        self.expires_at - RENEW_BEFORE <= now()
    }

    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// The cookie settings every cookie of the dashboard has.
fn cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .build()
}

/// Reads and writes the cookies.
#[derive(Clone)]
pub struct Cookies {
    pub secure: bool,
}

impl Cookies {
    pub fn session(&self, jar: &PrivateCookieJar) -> Option<Session> {
        let c = jar.get(SESSION)?;
        serde_json::from_str(c.value()).ok()
    }

    pub fn set_session(&self, jar: PrivateCookieJar, session: &Session) -> PrivateCookieJar {
        let value = serde_json::to_string(session).unwrap_or_default();
        jar.add(cookie(SESSION, value, self.secure))
    }

    pub fn end_session(&self, jar: PrivateCookieJar) -> PrivateCookieJar {
        jar.remove(Cookie::build(SESSION).path("/"))
    }

    pub fn pending(&self, jar: &PrivateCookieJar) -> Option<PendingLogin> {
        let c = jar.get(LOGIN)?;
        serde_json::from_str(c.value()).ok()
    }

    pub fn set_pending(&self, jar: PrivateCookieJar, login: &PendingLogin) -> PrivateCookieJar {
        let value = serde_json::to_string(login).unwrap_or_default();
        jar.add(cookie(LOGIN, value, self.secure))
    }

    pub fn end_pending(&self, jar: PrivateCookieJar) -> PrivateCookieJar {
        jar.remove(Cookie::build(LOGIN).path("/"))
    }
}

/// The key in `path`, made (64 random bytes, mode 0600) if there is none.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<Key> {
    match std::fs::read(path) {
        Ok(bytes) => Key::try_from(bytes.as_slice()).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a session key ({e}); remove it to make a new one",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Key::generate();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            ick_api::secret::write_private(path, key.master())?;
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Refreshes with one refresh token happen once: tokens rotate, and a
/// token used twice revokes the whole login, so two pages asked at once
/// with one old cookie share the first one's answer.
#[derive(Default)]
pub struct Renewals {
    recent: Mutex<HashMap<String, (Instant, TokenResponse)>>,
}

/// How long a renewal's answer is kept for the requests that raced it.
const SHARED_FOR: Duration = Duration::from_secs(60);

impl Renewals {
    /// The answer to refreshing with `refresh_token`: `fetch`'s, or the
    /// one another request just got.
    pub async fn renew<F, Fut, E>(&self, refresh_token: &str, fetch: F) -> Result<TokenResponse, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<TokenResponse, E>>,
    {
        let key = URL_SAFE_NO_PAD.encode(Sha256::digest(refresh_token.as_bytes()));
        // Held across the request: the next one with this token waits.
        let mut recent = self.recent.lock().await;
        recent.retain(|_, (at, _)| at.elapsed() < SHARED_FOR);
        if let Some((_, answer)) = recent.get(&key) {
            return Ok(answer.clone());
        }
        let answer = fetch().await?;
        recent.insert(key, (Instant::now(), answer.clone()));
        Ok(answer)
    }
}
