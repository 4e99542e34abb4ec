//! Minting access tokens (RFC 9068 profile) and ID tokens (OpenID Connect).

use ick_api::ScopeSet;
use ick_api::oauth::{
    ACCESS_TOKEN_TYPE, AccessClaims, ID_TOKEN_TYPE, IdTokenClaims, TokenResponse, UserClaims,
    UserIdentity,
};
use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;

use crate::keys::KeyRing;
use crate::store::{ClientRecord, UserRecord};

fn sign(ring: &KeyRing, typ: &str, claims: &impl Serialize) -> Result<String, String> {
    let key = ring.signing().ok_or("no signing key")?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(typ.to_string());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, key.encoding_key())
        .map_err(|e| format!("cannot sign: {e}"))
}

/// Signs a token for `client` with `scopes` using the ring's newest key.
pub fn issue(
    ring: &KeyRing,
    issuer: &str,
    lifetime: std::time::Duration,
    client: &ClientRecord,
    scopes: &ScopeSet,
) -> Result<TokenResponse, String> {
    let now = chrono::Utc::now().timestamp();
    let lifetime = lifetime.as_secs();
    let claims = AccessClaims {
        iss: issuer.to_string(),
        sub: client.id.clone(),
        aud: client.audience.clone(),
        exp: now + lifetime as i64,
        iat: now,
        nbf: Some(now),
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: client.id.clone(),
        client_name: Some(client.name.clone()),
        scope: scopes.to_string(),
        // Only tokens that may run work name the worker.
        ick_worker: scopes
            .contains(ick_api::Scope::WorkRun)
            .then(|| client.worker_identity())
            .flatten(),
        ick_user: None,
    };
    bearer(ring, claims)
}

/// The token response for signed `claims` (no refresh or ID token yet).
fn bearer(ring: &KeyRing, claims: AccessClaims) -> Result<TokenResponse, String> {
    Ok(TokenResponse {
        access_token: sign(ring, ACCESS_TOKEN_TYPE, &claims)?,
        token_type: "Bearer".to_string(),
        expires_in: (claims.exp - claims.iat).max(0) as u64,
        scope: claims.scope,
        refresh_token: None,
        id_token: None,
    })
}

/// Who a token is for when a person logged in.
pub struct Person<'a> {
    pub user: &'a UserRecord,
    pub groups: Vec<String>,
}

impl Person<'_> {
    fn claims(&self) -> UserClaims {
        UserClaims {
            preferred_username: self.user.name.clone(),
            name: self.user.display_name.clone(),
            email: self.user.email.clone(),
            groups: self.groups.clone(),
        }
    }
}

/// Signs an access token for `person` using `client`, with `scope` (the
/// granted scope string, which may hold `openid`).
pub fn issue_for_person(
    ring: &KeyRing,
    issuer: &str,
    lifetime: std::time::Duration,
    client: &ClientRecord,
    person: &Person<'_>,
    scope: &str,
) -> Result<TokenResponse, String> {
    let now = chrono::Utc::now().timestamp();
    let lifetime = lifetime.as_secs();
    let claims = AccessClaims {
        iss: issuer.to_string(),
        sub: person.user.id.clone(),
        aud: client.audience.clone(),
        exp: now + lifetime as i64,
        iat: now,
        nbf: Some(now),
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: client.id.clone(),
        client_name: Some(client.name.clone()),
        scope: scope.to_string(),
        ick_worker: None,
        ick_user: Some(UserIdentity {
            name: person.user.name.clone(),
            groups: person.groups.clone(),
        }),
    };
    bearer(ring, claims)
}

/// What an ID token says beyond who: for whom, and the login it records.
pub struct IdTokenFor<'a> {
    pub client: &'a ClientRecord,
    pub nonce: Option<String>,
    /// Seconds since the epoch.
    pub auth_time: i64,
}

/// Signs an OpenID Connect ID token for `person`.
pub fn id_token(
    ring: &KeyRing,
    issuer: &str,
    lifetime: std::time::Duration,
    person: &Person<'_>,
    login: IdTokenFor<'_>,
) -> Result<String, String> {
    let now = chrono::Utc::now().timestamp();
    let claims = IdTokenClaims {
        iss: issuer.to_string(),
        sub: person.user.id.clone(),
        aud: login.client.id.clone(),
        exp: now + lifetime.as_secs() as i64,
        iat: now,
        auth_time: login.auth_time,
        nonce: login.nonce,
        azp: login.client.id.clone(),
        person: person.claims(),
    };
    sign(ring, ID_TOKEN_TYPE, &claims)
}

/// What `/userinfo` says of `person`.
pub fn user_claims(person: &Person<'_>) -> UserClaims {
    person.claims()
}
