//! The rules of a browser login, apart from HTTP: which scopes a person
//! gets, PKCE (RFC 7636, S256 only), and the authorization request's
//! parameters, parsed once.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ick_api::{Scope, ScopeSet};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::ClientRecord;

/// The `openid` scope: the client wants an ID token.
pub const OPENID: &str = "openid";

/// OpenID scopes a client may ask for that change nothing here: the ID
/// token always holds the profile, email and groups, and a person always
/// gets a refresh token.
const ACCEPTED_OIDC_SCOPES: [&str; 4] = ["profile", "email", "groups", "offline_access"];

/// What a person's tokens may do: Ick scopes, and whether `openid` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedScope {
    pub scopes: ScopeSet,
    pub openid: bool,
}

impl GrantedScope {
    /// The scopes asked for (`None`: all the client may have), intersected
    /// with what the client may ask for. Unknown names are refused. A
    /// person is never a worker: `work:run` is not granted to people, even
    /// through a client that has it.
    pub fn requested(asked: Option<&str>, client: &ClientRecord) -> Result<GrantedScope, String> {
        let Some(asked) = asked.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(GrantedScope {
                scopes: client
                    .scopes
                    .iter()
                    .filter(|s| *s != Scope::WorkRun)
                    .collect(),
                openid: false,
            });
        };
        let mut openid = false;
        let mut scopes = Vec::new();
        for name in asked.split(' ').filter(|n| !n.is_empty()) {
            if name == OPENID {
                openid = true;
            } else if ACCEPTED_OIDC_SCOPES.contains(&name) {
                continue;
            } else {
                let scope: Scope = name.parse().map_err(|e| format!("{e}"))?;
                if client.scopes.contains(scope) && scope != Scope::WorkRun {
                    scopes.push(scope);
                }
            }
        }
        Ok(GrantedScope {
            scopes: scopes.into_iter().collect(),
            openid,
        })
    }

    /// A granted scope as stored (written by `Display`); unknown names
    /// (a scope since removed) are dropped.
    pub fn parse_stored(text: &str) -> GrantedScope {
        GrantedScope {
            openid: text.split(' ').any(|n| n == OPENID),
            scopes: text.split(' ').filter_map(|n| n.parse().ok()).collect(),
        }
    }

    /// A refresh asking for less (RFC 6749 §6): `asked` must be within
    /// this grant.
    pub fn narrowed(&self, asked: &str) -> Result<GrantedScope, String> {
        let mut openid = false;
        let mut scopes = Vec::new();
        for name in asked.split(' ').filter(|n| !n.is_empty()) {
            if name == OPENID {
                openid = self.openid;
            } else if ACCEPTED_OIDC_SCOPES.contains(&name) {
                continue;
            } else {
                let scope: Scope = name.parse().map_err(|e| format!("{e}"))?;
                if !self.scopes.contains(scope) {
                    return Err(format!("{scope} was not granted at login"));
                }
                scopes.push(scope);
            }
        }
        Ok(GrantedScope {
            scopes: scopes.into_iter().collect(),
            openid,
        })
    }
}

impl fmt::Display for GrantedScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.openid, self.scopes.is_empty()) {
            (true, true) => f.write_str(OPENID),
            (true, false) => write!(f, "{OPENID} {}", self.scopes),
            (false, _) => write!(f, "{}", self.scopes),
        }
    }
}

/// RFC 7636 §4.1: 43-128 characters of `[A-Za-z0-9-._~]`.
pub fn check_verifier(verifier: &str) -> Result<(), String> {
    let ok = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err("code_verifier must be 43-128 characters of A-Z, a-z, 0-9, '-', '.', '_', '~'".into())
    }
}

/// Whether BASE64URL(SHA256(verifier)) is `challenge`, in constant time.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// An authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OpenID
/// Connect `nonce`), checked. Until the client and redirect URI are known
/// good, errors are shown to the person, never redirected.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: String,
    pub code_challenge: String,
    pub scope: GrantedScope,
    pub nonce: Option<String>,
}

/// Why an authorization request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Shown to the person: the client or redirect URI cannot be trusted
    /// with a redirect (RFC 6749 §4.1.2.1).
    Show(String),
    /// Sent back to the (good) redirect URI as `error`, `error_description`
    /// and `state` (if there was one).
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

/// The longest `state` or `nonce` kept.
const MAX_PARAM_LEN: usize = 512;

impl AuthorizationRequest {
    /// Checks the query of `GET /authorize` against `client` (the client
    /// its `client_id` names, if any).
    pub fn parse(
        query: &HashMap<String, String>,
        client: Option<&ClientRecord>,
    ) -> Result<AuthorizationRequest, RequestError> {
        let show = |text: &str| RequestError::Show(text.to_string());
        let client_id = query
            .get("client_id")
            .ok_or_else(|| show("The request names no client (client_id)."))?;
        let client = client
            .filter(|c| c.id == *client_id && c.enabled)
            .ok_or_else(|| show("The application that sent you here is not known to this identity provider, or is disabled."))?;
        let redirect_uri = query
            .get("redirect_uri")
            .ok_or_else(|| show("The request names no redirect_uri."))?;
        // Exact string match: no prefix, no normalisation (RFC 9700 §4.1.3).
        if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(show(
                "The redirect_uri is not one registered for this application.",
            ));
        }
        let state = query.get("state").filter(|s| !s.is_empty()).cloned();
        let refuse = |error: &'static str, description: &str| RequestError::Redirect {
            redirect_uri: redirect_uri.clone(),
            error,
            description: description.to_string(),
            state: state.clone(),
        };
        match query.get("response_type").map(String::as_str) {
            Some("code") => {}
            Some(_) => {
                return Err(refuse(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                ));
            }
            None => return Err(refuse("invalid_request", "response_type is missing")),
        }
        let Some(state_value) = state.clone() else {
            return Err(refuse("invalid_request", "state is required"));
        };
        if state_value.len() > MAX_PARAM_LEN {
            return Err(refuse("invalid_request", "state is too long"));
        }
        match query.get("code_challenge_method").map(String::as_str) {
            Some("S256") => {}
            Some(_) => {
                return Err(refuse(
                    "invalid_request",
                    "code_challenge_method must be S256 (plain is refused)",
                ));
            }
            None => {
                return Err(refuse(
                    "invalid_request",
                    "PKCE is required: code_challenge_method=S256 is missing",
                ));
            }
        }
        let challenge = query.get("code_challenge").ok_or_else(|| {
            refuse(
                "invalid_request",
                "PKCE is required: code_challenge is missing",
            )
        })?;
        let well_formed = challenge.len() == 43
            && challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if !well_formed {
            return Err(refuse(
                "invalid_request",
                "code_challenge must be a base64url SHA-256 (43 characters)",
            ));
        }
        let scope = GrantedScope::requested(query.get("scope").map(String::as_str), client)
            .map_err(|e| refuse("invalid_scope", &e))?;
        let nonce = query.get("nonce").filter(|n| !n.is_empty()).cloned();
        if nonce.as_ref().is_some_and(|n| n.len() > MAX_PARAM_LEN) {
            return Err(refuse("invalid_request", "nonce is too long"));
        }
        Ok(AuthorizationRequest {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.clone(),
            state: state_value,
            code_challenge: challenge.clone(),
            scope,
            nonce,
        })
    }
}

/// `redirect_uri` with `params` added to its query.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (k, v) in params {
                    query.append_pair(k, v);
                }
            }
            url.to_string()
        }
        // Registered URIs are checked URLs; this cannot happen.
        Err(_) => redirect_uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientRecord {
        ClientRecord {
            id: "c1".into(),
            name: "web".into(),
            secret_sha256: String::new(),
            scopes: "projects:read builds:read".parse().expect("scopes"),
            audience: "ick".into(),
            enabled: true,
            created_at: 0,
            updated_at: 0,
            worker: None,
            redirect_uris: vec!["http://127.0.0.1:9/cb".into()],
            public: true,
            device: false,
        }
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("client_id", "c1"),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("response_type", "code"),
            ("state", "s"),
            ("code_challenge_method", "S256"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("scope", "openid projects:read idp:admin"),
        ]
    }

    #[test]
    fn the_rfc_7636_example_verifier_matches_its_challenge() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(check_verifier(verifier).is_ok());
        assert!(verifier_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!verifier_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(check_verifier("short").is_err());
        assert!(check_verifier(&"a".repeat(129)).is_err());
        assert!(check_verifier(&format!("{}!", "a".repeat(43))).is_err());
    }

    #[test]
    fn scopes_are_what_was_asked_within_what_the_client_may_have() {
        let request = AuthorizationRequest::parse(&query(&good()), Some(&client())).expect("good");
        assert!(request.scope.openid);
        assert_eq!(request.scope.to_string(), "openid projects:read");
        assert_eq!(
            GrantedScope::parse_stored("openid projects:read"),
            request.scope
        );
        let narrowed = request.scope.narrowed("projects:read").expect("within");
        assert_eq!(narrowed.to_string(), "projects:read");
        assert!(request.scope.narrowed("builds:read").is_err());
    }

    #[test]
    fn a_bad_client_or_redirect_uri_is_shown_not_redirected() {
        let mut q = query(&good());
        q.insert("redirect_uri".into(), "http://127.0.0.1:9/cb/".into());
        assert!(matches!(
            AuthorizationRequest::parse(&q, Some(&client())),
            Err(RequestError::Show(_))
        ));
        assert!(matches!(
            AuthorizationRequest::parse(&query(&good()), None),
            Err(RequestError::Show(_))
        ));
    }

    #[test]
    fn plain_pkce_missing_state_and_bad_scopes_are_redirected_as_errors() {
        for (key, value, error) in [
            ("code_challenge_method", "plain", "invalid_request"),
            ("state", "", "invalid_request"),
            ("response_type", "token", "unsupported_response_type"),
            ("scope", "root", "invalid_scope"),
            ("code_challenge", "short", "invalid_request"),
        ] {
            let mut q = query(&good());
            q.insert(key.into(), value.into());
            match AuthorizationRequest::parse(&q, Some(&client())) {
                Err(RequestError::Redirect { error: got, .. }) => {
                    assert_eq!(got, error, "{key}={value}")
                }
                other => panic!("{key}={value}: {other:?}"),
            }
        }
    }

    #[test]
    fn redirects_keep_the_registered_query() {
        assert_eq!(
            redirect_with(
                "https://a.example/cb?x=1",
                &[("code", "c d"), ("state", "s")]
            ),
            "https://a.example/cb?x=1&code=c+d&state=s"
        );
    }
}
