//! `ick-artifact-store`: Ick's content-addressed blob store. Blobs of any
//! size stream in and out, hashed on the way in and made visible whole or
//! not at all; refs are mutable names for them. Storage is a local
//! directory or an S3-compatible bucket.

pub mod backend;
pub mod config;
pub mod error;
mod metrics;
mod routes;
pub mod staging;
pub mod uploads;

use std::sync::Arc;

use axum::extract::FromRef;
use futures::FutureExt;
use ick_api::auth::TokenVerifier;
use ick_api::server::{Running, finish_router, health_routes, serve};
use tokio_util::sync::CancellationToken;

pub use config::Config;

use backend::{Backend, FsBackend, S3Backend};
use config::Storage;
use uploads::Uploads;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState<B> {
    backend: B,
    uploads: Arc<Uploads>,
    verifier: TokenVerifier,
    max_blob_size: u64,
    counters: metrics::Counters,
}

impl<B> FromRef<AppState<B>> for TokenVerifier {
    fn from_ref(state: &AppState<B>) -> Self {
        state.verifier.clone()
    }
}

/// Starts the store on `listener`: opens the storage (removing what a
/// killed process left half written), and serves until stopped.
pub async fn start(config: Config, listener: std::net::TcpListener) -> anyhow::Result<Running> {
    match config.storage.chosen()? {
        Storage::Local(local) => {
            let backend = FsBackend::open(&local.path)?;
            tracing::info!(path = %local.path.display(), "local storage");
            launch(config, backend, listener).await
        }
        Storage::S3(s3) => {
            let backend = S3Backend::open(s3)?;
            tracing::info!(bucket = %s3.bucket, endpoint = ?s3.endpoint, "S3 storage");
            launch(config, backend, listener).await
        }
    }
}

async fn launch<B: Backend>(
    config: Config,
    backend: B,
    listener: std::net::TcpListener,
) -> anyhow::Result<Running> {
    let verifier = TokenVerifier::new(config.auth.clone(), ick_api::http::client());
    let uploads = Arc::new(Uploads::open(
        backend.staging().uploads_dir(),
        config.uploads.expire_after,
    )?);
    let state = AppState {
        backend: backend.clone(),
        uploads: uploads.clone(),
        verifier: verifier.clone(),
        max_blob_size: config.max_blob_size.0,
        counters: metrics::Counters::default(),
    };
    let (metrics, refresh) = state.counters.metrics(backend.clone(), uploads.clone());
    let metrics_verifier = verifier.clone();
    let router = routes::router(state).merge(health_routes(
        "ick-artifact-store",
        Arc::new(move || {
            let (backend, verifier) = (backend.clone(), verifier.clone());
            async move {
                backend.ready().await?;
                verifier.ready().await.map_err(|e| e.to_string())
            }
            .boxed()
        }),
    ));
    let router = finish_router(router, config.http.body_limit);
    let router = metrics.around_refreshing(router, metrics_verifier, refresh);
    let cancel = CancellationToken::new();
    let mut running = serve(listener, router, config.http.tls.as_ref(), cancel.clone()).await?;
    running.own(tokio::spawn(uploads.sweep_until(cancel)));
    Ok(running)
}
