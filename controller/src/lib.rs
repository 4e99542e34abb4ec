//! `ick-controller`: Ick's brain. It holds the definitions (projects and
//! pipelines, with every revision), turns a trigger into a build graph,
//! hands actions to worker-managers the moment they are ready (the work
//! protocol of `ick_api::work`), collects their output, and knows at every
//! instant what every build is doing; it starts builds on web hooks from
//! git servers and mails people how builds ended. Postgres in production
//! (several controllers may share it), SQLite on one host.

pub mod access;
mod analytics;
mod audit;
mod builds;
mod catalog;
pub mod config;
mod core;
pub mod definitions;
pub mod error;
pub mod graph;
mod hub;
mod logs;
mod members;
mod metrics;
mod notify;
mod paging;
mod routes;
pub mod store;
mod webhooks;
mod work;

use std::sync::Arc;

use futures::FutureExt;
use ick_api::auth::TokenVerifier;
use ick_api::server::{FailureLimiter, Running, finish_router, health_routes, serve};
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::core::Core;
use crate::routes::AppState;
use crate::store::{Dialect, Store};

/// Starts the controller on `listener`: opens (and migrates) the database,
/// and serves until stopped, with the tasks that find lost workers, send
/// mail (when `mail` is configured) and (on Postgres) hear other
/// controllers.
pub async fn start(config: Config, listener: std::net::TcpListener) -> anyhow::Result<Running> {
    config.check()?;
    let mailer = match &config.mail {
        Some(mail) => Some(notify::sender::Mailer::new(
            mail,
            config.public_url.as_deref().unwrap_or_default(),
        )?),
        None => None,
    };
    let store = Store::connect(
        config.database_url()?.expose(),
        config.max_connections,
        config.database_acquire_timeout,
    )
    .await?;
    let verifier = TokenVerifier::new(config.auth.clone(), ick_api::http::client());
    let cancel = CancellationToken::new();
    let postgres = (store.dialect() == Dialect::Postgres).then(|| store.url().to_string());
    let (hub, hub_tasks) = hub::start(postgres.as_deref(), &cancel).await;
    let core = Core::new(store.clone(), config.clone(), hub, cancel.clone());
    let state = AppState {
        core: core.clone(),
        verifier: verifier.clone(),
        hook_failures: Arc::new(FailureLimiter::new(config.webhooks.failure_window)),
    };
    let ready = Arc::new(move || {
        let store = store.clone();
        let verifier = verifier.clone();
        async move {
            store
                .ping()
                .await
                .map_err(|e| format!("the database does not answer: {e}"))?;
            verifier.ready().await.map_err(|e| e.to_string())
        }
        .boxed()
    });
    let (metrics, refresh) = metrics::controller_metrics(&core);
    let router = routes::router(state.clone()).merge(health_routes("ick-controller", ready));
    let router = finish_router(router, config.http.body_limit);
    let router = metrics.around_refreshing(router, state.verifier, refresh);
    let mut running = serve(listener, router, config.http.tls.as_ref(), cancel).await?;
    for task in hub_tasks {
        running.own(task);
    }
    match mailer {
        Some(mailer) => running.own(tokio::spawn(notify::sender::run(core.clone(), mailer))),
        None => {
            let mut conn = core.store.conn().await?;
            if store::notifications::any_pending(&mut conn).await? {
                tracing::warn!(
                    "notifications wait in the outbox, but the config has no mail section to send them with"
                );
            }
        }
    }
    if core.config.admins.is_empty() {
        let mut conn = core.store.conn().await?;
        let admins = store::roles::global_roles(&mut conn)
            .await?
            .into_iter()
            .filter(|r| r.role == ick_api::controller::GlobalRole::Admin)
            .count();
        if admins == 0 {
            tracing::warn!(
                "no admin: the config's `admins:` is empty and none was granted, so nobody can \
                 create projects or grant roles (add e.g. `admins: [client:NAME]`)"
            );
        }
    }
    running.own(tokio::spawn(work::reaper::reaper(core)));
    Ok(running)
}
