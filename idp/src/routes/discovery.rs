use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use ick_api::Scope;
use ick_api::http::join;
use ick_api::oauth::{
    AUTHORIZE_PATH, DEVICE_AUTHORIZATION_PATH, DEVICE_CODE_GRANT, DiscoveryDocument, JWKS_PATH,
    REVOKE_PATH, TOKEN_PATH, USERINFO_PATH,
};

use crate::AppState;

pub(super) async fn configuration(State(state): State<AppState>) -> Json<DiscoveryDocument> {
    let issuer = state.issuer.to_string();
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut scopes = vec![crate::login::OPENID.to_string()];
    scopes.extend(Scope::ALL.iter().map(|s| s.as_str().to_string()));
    Json(DiscoveryDocument {
        token_endpoint: join(&issuer, TOKEN_PATH),
        jwks_uri: join(&issuer, JWKS_PATH),
        authorization_endpoint: Some(join(&issuer, AUTHORIZE_PATH)),
        userinfo_endpoint: Some(join(&issuer, USERINFO_PATH)),
        revocation_endpoint: Some(join(&issuer, REVOKE_PATH)),
        device_authorization_endpoint: Some(join(&issuer, DEVICE_AUTHORIZATION_PATH)),
        issuer,
        grant_types_supported: strings(&[
            "authorization_code",
            "refresh_token",
            "client_credentials",
            DEVICE_CODE_GRANT,
        ]),
        response_types_supported: strings(&["code"]),
        code_challenge_methods_supported: strings(&["S256"]),
        subject_types_supported: strings(&["public"]),
        id_token_signing_alg_values_supported: strings(&["EdDSA"]),
        token_endpoint_auth_methods_supported: strings(&[
            "client_secret_basic",
            "client_secret_post",
            "none",
        ]),
        scopes_supported: scopes,
        claims_supported: strings(&[
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "azp",
            "preferred_username",
            "name",
            "email",
            "groups",
        ]),
        token_endpoint_auth_signing_alg_values_supported: None,
    })
}

pub(super) async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(state.key_ring().jwks()),
    )
}
