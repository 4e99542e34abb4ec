//! `ick-idp`: Ick's bundled OAuth2 and OpenID Connect server. Machines
//! (clients) get short-lived Ed25519 JWTs by the client-credentials grant;
//! people log in through the browser (the authorization-code grant with
//! PKCE) and get the same tokens, naming them, plus an ID token and a
//! rotating refresh token. Every Ick service checks the tokens against the
//! JWKS published here.

mod audit;
pub mod bootstrap;
pub mod clients;
pub mod config;
pub mod error;
mod guesses;
pub mod keys;
mod login;
mod metrics;
pub mod people;
mod routes;
pub mod store;
mod tokens;
pub mod upstream;
mod user_code;

use std::sync::{Arc, RwLock};

use axum::extract::FromRef;
use futures::FutureExt;
use ick_api::auth::{AuthConfig, TokenVerifier};
use ick_api::server::{Running, finish_router, health_routes, serve};
use tokio_util::sync::CancellationToken;

pub use config::Config;

use ick_api::server::FailureLimiter;
use keys::KeyRing;
use store::Store;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    store: Store,
    keys: Arc<RwLock<Arc<KeyRing>>>,
    issuer: Arc<str>,
    config: Arc<Config>,
    verifier: TokenVerifier,
    failures: Arc<FailureLimiter>,
    /// A hash of no one's password, checked for unknown users so that a
    /// login takes as long whether or not the user exists.
    dummy_hash: Arc<str>,
    /// Providers people may log in through instead.
    upstreams: Arc<upstream::Upstreams>,
    /// What `/metrics` counts as it happens.
    counters: metrics::Counters,
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl AppState {
    fn key_ring(&self) -> Arc<KeyRing> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The issuer URL: configured, or derived from where the server listens.
fn issuer(config: &Config, addr: std::net::SocketAddr) -> String {
    match &config.issuer {
        Some(issuer) => issuer.trim_end_matches('/').to_string(),
        None => {
            let scheme = if config.http.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{addr}")
        }
    }
}

/// Starts the IDP on `listener`: opens the database, loads (or creates) the
/// signing keys, and serves until stopped. SIGHUP reloads the keys.
pub async fn start(config: Config, listener: std::net::TcpListener) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let store = config.open_store().await?;
    let ring = KeyRing::load_or_create(&config.keys_dir())?;
    let keys = Arc::new(RwLock::new(Arc::new(ring)));
    let issuer: Arc<str> = issuer(&config, addr).into();

    let local_keys = keys.clone();
    let mut auth = AuthConfig::new(issuer.to_string());
    auth.audience = config.default_audience.clone();
    let verifier = TokenVerifier::local(
        auth,
        Arc::new(move || local_keys.read().unwrap_or_else(|e| e.into_inner()).jwks()),
    );
    let dummy_password = clients::new_secret()?;
    let dummy_hash: Arc<str> = people::hash_password(dummy_password).await?.into();
    let upstreams = Arc::new(upstream::Upstreams::new(config.upstreams()?)?);
    let state = AppState {
        dummy_hash,
        upstreams,
        store: store.clone(),
        keys: keys.clone(),
        issuer,
        failures: Arc::new(FailureLimiter::new(config.auth_failures.window)),
        config: Arc::new(config.clone()),
        verifier: verifier.clone(),
        counters: metrics::Counters::default(),
    };
    let metrics = state.counters.metrics();

    let ready_store = store.clone();
    let router = routes::router(state).merge(health_routes(
        "ick-idp",
        Arc::new(move || {
            let store = ready_store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }.boxed()
        }),
    ));
    let router = finish_router(router, config.http.body_limit);
    let router = metrics.around(router, verifier);
    let cancel = CancellationToken::new();
    let mut running = serve(listener, router, config.http.tls.as_ref(), cancel.clone()).await?;
    running.own(tokio::spawn(reload_keys_on_hangup(
        config.keys_dir(),
        keys,
        cancel,
    )));
    Ok(running)
}

async fn reload_keys_on_hangup(
    dir: std::path::PathBuf,
    keys: Arc<RwLock<Arc<KeyRing>>>,
    cancel: CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = hangup.recv() => {}
        }
        match KeyRing::load(&dir) {
            Ok(ring) if ring.signing().is_some() => {
                tracing::info!(keys = ring.keys().len(), "signing keys reloaded");
                *keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
            }
            Ok(_) => tracing::error!("no signing key left; keeping the old ones"),
            Err(e) => {
                tracing::error!(error = %e, "cannot reload signing keys; keeping the old ones")
            }
        }
    }
}
