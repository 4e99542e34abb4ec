use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use ick_api::Scope;
use ick_api::http::join;
use ick_api::oauth::{DiscoveryDocument, JWKS_PATH, TOKEN_PATH};

use crate::AppState;

pub(super) async fn configuration(State(state): State<AppState>) -> Json<DiscoveryDocument> {
    let issuer = state.issuer.to_string();
    Json(DiscoveryDocument {
        token_endpoint: join(&issuer, TOKEN_PATH),
        jwks_uri: join(&issuer, JWKS_PATH),
        issuer,
        grant_types_supported: vec!["client_credentials".into()],
        token_endpoint_auth_methods_supported: vec![
            "client_secret_basic".into(),
            "client_secret_post".into(),
        ],
        scopes_supported: Scope::ALL.iter().map(|s| s.as_str().to_string()).collect(),
        token_endpoint_auth_signing_alg_values_supported: None,
    })
}

pub(super) async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(state.key_ring().jwks()),
    )
}
