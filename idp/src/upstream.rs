//! Logging in through an upstream OpenID provider (GitHub, GitLab, Gitea,
//! a company IDP, another Ick IDP), apart from HTTP: the providers as
//! configured, their discovery documents and JWKS (fetched when first
//! needed and kept a while), the authorization request we send, the code
//! exchange and ID-token checks (the `openidconnect` crate: signature by
//! the provider's JWKS, issuer, audience, expiry, our nonce), and which
//! Ick user the verified identity is.
//!
//! The trust boundary: an upstream account becomes an Ick user only by
//! its (upstream, `sub`) link. A name claim that equals a local user's
//! name does not log in as that user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ick_api::idp::is_valid_name;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse as _,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clients::hash_secret;
use crate::config::UpstreamConfig;
use crate::error::IdpError;

mod accounts;

pub use accounts::{Resolved, resolve_user};

/// How long a provider's discovery document and JWKS are trusted before
/// they are read again (keys rotate).
const METADATA_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How long one request to a provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// An upstream provider, checked.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// As configured: "Sign in with NAME".
    pub name: String,
    /// The lowercased name: the URL segment and the identities' key.
    pub slug: String,
    pub issuer: IssuerUrl,
    pub client_id: ClientId,
    /// `ClientSecret`'s `Debug` prints no secret.
    client_secret: ClientSecret,
    pub claim: String,
    pub scopes: Vec<String>,
}

impl Upstream {
    /// Checks one `upstream:` entry and reads its secret file, which must
    /// be open to no one but its owner.
    pub fn from_config(given: &UpstreamConfig) -> anyhow::Result<Upstream> {
        let slug = given.name.to_ascii_lowercase();
        if !given.name.is_ascii() || !is_valid_name(&slug) {
            anyhow::bail!(
                "upstream name {:?} must be 1-64 letters, digits, '.', '_' or '-', starting with \
                 a letter or digit (it is shown as \"Sign in with NAME\" and used in URLs)",
                given.name
            );
        }
        let at = |what: &str| format!("upstream {}: {what}", given.name);
        let url = url::Url::parse(&given.issuer)
            .map_err(|e| anyhow::anyhow!(at(&format!("issuer {:?}: {e}", given.issuer))))?;
        if !matches!(url.scheme(), "http" | "https")
            || url.query().is_some()
            || url.fragment().is_some()
        {
            anyhow::bail!(at(
                "issuer must be an http(s) URL without query or fragment"
            ));
        }
        let issuer = IssuerUrl::new(given.issuer.clone())
            .map_err(|e| anyhow::anyhow!(at(&format!("issuer: {e}"))))?;
        if given.client_id.trim().is_empty() {
            anyhow::bail!(at("client_id is empty"));
        }
        let file = &given.client_secret_file;
        if ick_api::secret::open_to_others(file) {
            anyhow::bail!(at(&format!(
                "client_secret_file {} may be read by others: chmod 600 it",
                file.display()
            )));
        }
        let secret = ick_api::secret::resolve("client_secret", None, Some(file), "")
            .map_err(|e| anyhow::anyhow!(at(&format!("{e:#}"))))?
            .ok_or_else(|| anyhow::anyhow!(at("client_secret_file is empty")))?;
        if given.claim.trim().is_empty() {
            anyhow::bail!(at("claim is empty"));
        }
        let scopes: Vec<String> = given.scopes.split_whitespace().map(String::from).collect();
        if !scopes.iter().any(|s| s == "openid") {
            anyhow::bail!(at("scopes must include openid"));
        }
        Ok(Upstream {
            name: given.name.clone(),
            slug,
            issuer,
            client_id: ClientId::new(given.client_id.clone()),
            client_secret: ClientSecret::new(secret.expose().to_string()),
            claim: given.claim.trim().to_string(),
            scopes,
        })
    }
}

/// Who the provider says logged in, from a verified ID token.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The provider's `sub`: what the link is keyed on.
    pub subject: String,
    /// The configured claim's value, as given.
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
}

/// An authorization request to send a browser to.
pub struct Outgoing {
    pub url: String,
    pub state_sha256: String,
    pub nonce_sha256: String,
}

/// Why a login through a provider went no further.
#[derive(Debug)]
pub enum Refusal {
    /// The provider could not be reached or answered nonsense: try later.
    Unreachable(String),
    /// The login itself is not good; the text is for the person.
    Refused(String),
}

/// The configured providers, and what was read from them.
pub struct Upstreams {
    list: Vec<Upstream>,
    http: Http,
    metadata: Mutex<HashMap<String, (Instant, Arc<CoreProviderMetadata>)>>,
}

/// The client's PKCE verifier, derived from the request's `state` and the
/// browser's cookie rather than stored: 43 characters of base64url.
fn pkce_verifier(state: &str, cookie: &str) -> PkceCodeVerifier {
    let mut hash = Sha256::new();
    hash.update(b"ick upstream pkce\0");
    hash.update(state.as_bytes());
    hash.update(b"\0");
    hash.update(cookie.as_bytes());
    PkceCodeVerifier::new(URL_SAFE_NO_PAD.encode(hash.finalize()))
}

/// Our HTTP client as openidconnect's (a named type: a closure's future
/// would not be `Send` for every lifetime, which axum needs).
struct Http(reqwest::Client);

type Sending<'c> = std::pin::Pin<
    Box<dyn Future<Output = Result<openidconnect::HttpResponse, reqwest::Error>> + Send + 'c>,
>;

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = reqwest::Error;
    type Future = Sending<'c>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

/// Sends one of openidconnect's requests with our client (which follows
/// no redirect, as the crate asks, against SSRF through a provider).
async fn send(
    http: &reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut answer = openidconnect::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    let body = response.bytes().await?;
    // Status and headers came from a valid response, so this cannot fail;
    // an empty 502 stands in if it ever did.
    Ok(answer.body(body.to_vec()).unwrap_or_else(|_| {
        let mut empty = openidconnect::HttpResponse::new(Vec::new());
        *empty.status_mut() = openidconnect::http::StatusCode::BAD_GATEWAY;
        empty
    }))
}

impl Upstreams {
    pub fn new(list: Vec<Upstream>) -> Result<Upstreams, IdpError> {
        let http = ick_api::http::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|e| IdpError::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Upstreams {
            list,
            http: Http(http),
            metadata: Mutex::new(HashMap::new()),
        })
    }

    pub fn list(&self) -> &[Upstream] {
        &self.list
    }

    /// The provider whose slug is `slug`.
    pub fn get(&self, slug: &str) -> Option<&Upstream> {
        self.list.iter().find(|u| u.slug == slug)
    }

    /// The provider's discovery document and JWKS: read now if not read
    /// within [`METADATA_LIFETIME`].
    async fn metadata(&self, upstream: &Upstream) -> Result<Arc<CoreProviderMetadata>, Refusal> {
        let cached = self
            .metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&upstream.slug)
            .filter(|(at, _)| at.elapsed() < METADATA_LIFETIME)
            .map(|(_, m)| m.clone());
        if let Some(metadata) = cached {
            return Ok(metadata);
        }
        let metadata = CoreProviderMetadata::discover_async(upstream.issuer.clone(), &self.http)
            .await
            .map_err(|e| Refusal::Unreachable(format!("discovery: {e}")))?;
        let metadata = Arc::new(metadata);
        self.metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(upstream.slug.clone(), (Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    fn client(
        upstream: &Upstream,
        metadata: &CoreProviderMetadata,
        redirect_uri: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        Refusal,
    > {
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| Refusal::Unreachable(format!("our redirect URI: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            metadata.clone(),
            upstream.client_id.clone(),
            Some(upstream.client_secret.clone()),
        )
        .set_redirect_uri(redirect))
    }

    /// The authorization request for `upstream`: a fresh state and nonce
    /// (answered hashed, to be stored), PKCE S256 bound to `cookie`.
    pub async fn start(
        &self,
        upstream: &Upstream,
        redirect_uri: &str,
        cookie: &str,
    ) -> Result<Outgoing, Refusal> {
        let metadata = self.metadata(upstream).await?;
        let client = Self::client(upstream, &metadata, redirect_uri)?;
        let state = CsrfToken::new_random();
        let nonce = Nonce::new_random();
        let challenge =
            PkceCodeChallenge::from_code_verifier_sha256(&pkce_verifier(state.secret(), cookie));
        let (sent_state, sent_nonce) = (state.clone(), nonce.clone());
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || sent_state,
            move || sent_nonce,
        );
        for scope in upstream.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, _) = request.set_pkce_challenge(challenge).url();
        Ok(Outgoing {
            url: url.to_string(),
            state_sha256: hash_secret(state.secret()),
            nonce_sha256: hash_secret(nonce.secret()),
        })
    }

    /// Exchanges `code` and checks the ID token it brings: signed by a
    /// key of the provider's JWKS, from its issuer, for our client, not
    /// expired, with the nonce whose hash is `nonce_sha256`.
    pub async fn finish(
        &self,
        upstream: &Upstream,
        redirect_uri: &str,
        code: &str,
        state: &str,
        cookie: &str,
        nonce_sha256: &str,
    ) -> Result<Identity, Refusal> {
        let metadata = self.metadata(upstream).await?;
        let client = Self::client(upstream, &metadata, redirect_uri)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| Refusal::Unreachable(format!("no token endpoint: {e}")))?
            .set_pkce_verifier(pkce_verifier(state, cookie))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(answer) => Refusal::Refused(format!(
                    "{} did not accept the login ({}).",
                    upstream.name,
                    answer.error()
                )),
                other => Refusal::Unreachable(format!("token endpoint: {other}")),
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| Refusal::Refused(format!("{} sent no ID token.", upstream.name)))?;
        let verifier = client.id_token_verifier();
        let nonce_matches = |nonce: Option<&Nonce>| match nonce {
            Some(n)
                if bool::from(
                    hash_secret(n.secret())
                        .as_bytes()
                        .ct_eq(nonce_sha256.as_bytes()),
                ) =>
            {
                Ok(())
            }
            Some(_) => Err("the nonce is not the one sent".to_string()),
            None => Err("the nonce is missing".to_string()),
        };
        let claims = id_token.claims(&verifier, nonce_matches).map_err(|e| {
            Refusal::Refused(format!(
                "The ID token from {} is not valid: {e}.",
                upstream.name
            ))
        })?;
        let username = match upstream.claim.as_str() {
            "sub" => Some(claims.subject().to_string()),
            "preferred_username" => claims.preferred_username().map(|u| u.to_string()),
            "email" => claims.email().map(|e| e.to_string()),
            "nickname" => claims
                .nickname()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            "name" => claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            // Other claims (e.g. GitLab's `nickname`-like extras) are not
            // in openidconnect's standard set: read them from the payload
            // that was just verified.
            other => extra_claim(&id_token.to_string(), other),
        };
        let username = username.filter(|u| !u.is_empty()).ok_or_else(|| {
            Refusal::Refused(format!(
                "{} did not say who you are (no {} claim).",
                upstream.name, upstream.claim
            ))
        })?;
        Ok(Identity {
            subject: claims.subject().to_string(),
            username,
            display_name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            email: claims.email().map(|e| e.to_string()),
        })
    }
}

/// Claim `name` of a JWT's payload, if it is a string.
fn extra_claim(jwt: &str, name: &str) -> Option<String> {
    let payload = URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1)?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    claims.get(name)?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, file: &std::path::Path) -> UpstreamConfig {
        UpstreamConfig {
            name: name.into(),
            issuer: "https://gitlab.example.org".into(),
            client_id: "ick".into(),
            client_secret_file: file.to_path_buf(),
            claim: "preferred_username".into(),
            scopes: "openid profile email".into(),
        }
    }

    #[test]
    fn an_upstream_is_checked_and_its_secret_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let ok = Upstream::from_config(&config("GitLab", &file)).expect("good");
        assert_eq!(ok.slug, "gitlab");
        assert!(!format!("{ok:?}").contains("s3cret"));
        for bad in ["", "Git Lab", "-gitlab", "gitläb"] {
            let e = Upstream::from_config(&config(bad, &file)).expect_err(bad);
            assert!(e.to_string().contains("upstream name"), "{e}");
        }
        let mut no_openid = config("GitLab", &file);
        no_openid.scopes = "profile".into();
        let e = Upstream::from_config(&no_openid).expect_err("no openid");
        assert!(e.to_string().contains("openid"), "{e}");
        let mut bad_issuer = config("GitLab", &file);
        bad_issuer.issuer = "ftp://x".into();
        assert!(Upstream::from_config(&bad_issuer).is_err());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = Upstream::from_config(&config("GitLab", &file)).expect_err("0640");
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn the_pkce_verifier_is_bound_to_state_and_cookie() {
        let v = pkce_verifier("state", "cookie");
        assert!(crate::login::check_verifier(v.secret()).is_ok());
        assert_ne!(v.secret(), pkce_verifier("state", "other").secret());
        assert_ne!(v.secret(), pkce_verifier("other", "cookie").secret());
    }
}
