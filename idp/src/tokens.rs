//! Minting access tokens (RFC 9068 profile).

use ick_api::ScopeSet;
use ick_api::oauth::{ACCESS_TOKEN_TYPE, AccessClaims, TokenResponse};
use jsonwebtoken::{Algorithm, Header};

use crate::keys::KeyRing;
use crate::store::ClientRecord;

/// Signs a token for `client` with `scopes` using the ring's newest key.
pub fn issue(
    ring: &KeyRing,
    issuer: &str,
    lifetime: std::time::Duration,
    client: &ClientRecord,
    scopes: &ScopeSet,
) -> Result<TokenResponse, String> {
    let key = ring.signing().ok_or("no signing key")?;
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
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(ACCESS_TOKEN_TYPE.to_string());
    header.kid = Some(key.kid.clone());
    let token = jsonwebtoken::encode(&header, &claims, key.encoding_key())
        .map_err(|e| format!("cannot sign: {e}"))?;
    Ok(TokenResponse {
        access_token: token,
        token_type: "Bearer".to_string(),
        expires_in: lifetime,
        scope: claims.scope,
    })
}
