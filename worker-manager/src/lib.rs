//! `ick-worker-manager`: represents one build host. It gets tokens from the
//! IDP, long-polls the controller for actions (one claim loop per slot),
//! runs them in per-pipeline workspaces, streams their output while they
//! run, heartbeats, stops them on cancel or timeout, and reports how they
//! ended.
//!
//! [`start`] runs one in the current process (the binary, and `icktool up`,
//! which runs several side by side); [`WorkerManager::stop`] drains it.

pub mod config;
mod controller;
pub mod error;
mod metrics;
mod output;
mod poll;
mod presence;
mod run;
mod stop;
mod workspace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use futures::FutureExt;
use ick_api::TokenSource;
use ick_api::blobs::{BlobClient, RetryPolicy};
use ick_api::server::{Running, finish_router, health_routes, serve};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use controller::ControllerClient;
use workspace::Workspaces;

/// Runs this process as an action's supervisor if it was started as one
/// (see `run/executor/supervisor/`), and then says how it exits. A
/// program that runs a worker-manager calls this first thing in `main`, so
/// that a worker-manager killed with `kill -9` leaves none of its actions
/// running; without it, they are stopped when the worker starts again.
pub fn supervise_if_asked() -> Option<std::process::ExitCode> {
    run::executor::supervisor::run_if_asked()
}

/// The scopes a worker-manager asks for.
pub const SCOPES: &str = "work:run blobs:read blobs:write";

/// Waits between tries while the artifact store is away: 0.2 s doubling
/// to 5 s, so a store back after a restart is found within seconds; how
/// long to go on is `artifact_store_outage`.
const STORE_BACKOFF: RetryPolicy = RetryPolicy {
    attempts: u32::MAX,
    first_delay: std::time::Duration::from_millis(200),
    max_delay: std::time::Duration::from_secs(5),
};

/// What the slots share.
pub(crate) struct Shared {
    pub config: Config,
    pub controller: ControllerClient,
    pub blobs: BlobClient,
    pub workspaces: Workspaces,
    /// Whom sandboxed actions run as (none: the worker's own user).
    pub sandbox_user: Option<run::owner::SandboxUser>,
    /// What supervises each action's processes, if this program can.
    pub supervisor: Option<Arc<run::executor::supervisor::Supervisor>>,
    /// Slots running an action.
    pub busy: AtomicU32,
    /// The last claim was answered.
    pub ready: AtomicBool,
    /// Stop claiming: the drain has begun.
    pub shutdown: CancellationToken,
    /// The drain timeout passed: stop the running actions.
    pub drained: CancellationToken,
    /// Give up reporting: the process is going away.
    pub hard_stop: CancellationToken,
    /// What `/metrics` counts.
    pub counters: metrics::Counters,
}

/// A running worker-manager.
pub struct WorkerManager {
    shared: Arc<Shared>,
    /// Held while it runs: see [`claim_name`].
    _name: std::os::unix::net::UnixListener,
    http: Option<Running>,
    /// Serves `/metrics`, if configured.
    metrics: Option<Running>,
    slots: Vec<JoinHandle<()>>,
    timer: JoinHandle<()>,
    /// Holds the presence connection.
    presence: JoinHandle<()>,
    /// Says "draining" once the drain begins.
    draining: JoinHandle<()>,
}

impl WorkerManager {
    /// The address of its health endpoints, if it serves them.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(Running::local_addr)
    }

    /// The address of its metrics, if it serves them.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(Running::local_addr)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// Cancelling this token starts the drain, as [`WorkerManager::stop`] does.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Drains and stops: no more claims; running actions may finish for up
    /// to `drain_timeout`, then they are cancelled, and their ends reported.
    pub async fn stop(self) {
        self.shared.shutdown.cancel();
        self.wait().await
    }

    /// Waits until it has stopped (after [`WorkerManager::stop`] or once
    /// the shutdown token is cancelled).
    pub async fn wait(self) {
        for slot in self.slots {
            let _ = slot.await;
        }
        self.timer.abort();
        // "draining" is said before "gone", and the presence connection
        // closed first, so that nothing says "online" after.
        let _ = self.draining.await;
        self.presence.abort();
        let _ = self.presence.await;
        presence::leave(&self.shared, ick_api::work::WorkerState::Gone).await;
        for server in [self.http, self.metrics].into_iter().flatten() {
            server.stop().await;
        }
        tracing::info!(worker = %self.shared.config.name, "worker-manager stopped");
    }
}

/// Starts a worker-manager: serves `/healthz` and `/readyz` on `listener`
/// if one is given, and claims work with `config.slots` loops.
pub async fn start(
    config: Config,
    listener: Option<std::net::TcpListener>,
) -> anyhow::Result<WorkerManager> {
    config.check()?;
    let secret = config.client_secret()?;
    let http = ick_api::http::client();
    let tokens = Arc::new(TokenSource::new(
        http.clone(),
        config.idp.token_url.clone(),
        config.idp.client_id.clone(),
        secret,
        Some(SCOPES.to_string()),
    ));
    let controller = ControllerClient::new(http.clone(), &config.controller, tokens.clone());
    let blobs = BlobClient::new(http, &config.artifact_store, tokens)
        .retry_policy(STORE_BACKOFF)
        .outage_timeout(config.artifact_store_outage);
    let name = claim_name(&config.name)?;
    let workspaces = Workspaces::open(config.workspace_root.clone(), config.systree_root()).await?;
    let sandbox_user = sandbox_user(&config).await?;
    // Processes of actions that a killed predecessor of this worker left.
    let orphans =
        run::executor::leftovers::end_orphans(format!("{}/", config.name), config.kill_grace).await;
    if orphans > 0 {
        tracing::warn!(
            orphans,
            "stopped processes left by an earlier run of this worker"
        );
    }
    let supervisor = run::executor::supervisor::Supervisor::start().await;
    if supervisor.is_none() {
        tracing::warn!(
            "this program cannot supervise actions (it does not call \
             ick_worker_manager::supervise_if_asked): if it is killed, what its actions \
             left running is stopped only when a worker of this name starts again"
        );
    }
    let shared = Arc::new(Shared {
        controller,
        supervisor,
        blobs,
        workspaces,
        sandbox_user,
        busy: AtomicU32::new(0),
        ready: AtomicBool::new(false),
        shutdown: CancellationToken::new(),
        drained: CancellationToken::new(),
        hard_stop: CancellationToken::new(),
        counters: metrics::Counters::default(),
        config,
    });
    let http = match listener {
        Some(listener) => Some(serve_health(&shared, listener).await?),
        None => None,
    };
    let metrics = match &shared.config.metrics {
        Some(m) => Some(serve_metrics(&shared, m.listen).await?),
        None => None,
    };
    let slots = (0..shared.config.slots)
        .map(|i| tokio::spawn(poll::slot(shared.clone(), i)))
        .collect();
    let timer = tokio::spawn(drain_timer(shared.clone()));
    let presence = tokio::spawn(presence::hold(shared.clone()));
    let draining = tokio::spawn({
        let shared = shared.clone();
        async move {
            shared.shutdown.cancelled().await;
            presence::leave(&shared, ick_api::work::WorkerState::Draining).await;
        }
    });
    tracing::info!(
        worker = %shared.config.name,
        slots = shared.config.slots,
        controller = %shared.config.controller,
        "worker-manager started"
    );
    Ok(WorkerManager {
        shared,
        _name: name,
        http,
        metrics,
        slots,
        timer,
        presence,
        draining,
    })
}

/// Whom sandboxed actions run as: the configured user when the worker runs
/// as root. It must reach the workspaces and system trees; if it cannot,
/// the worker still runs host actions, and says why sandboxed ones fail.
async fn sandbox_user(config: &Config) -> anyhow::Result<Option<run::owner::SandboxUser>> {
    let user =
        run::owner::SandboxUser::for_this_process(&config.sandbox_user, &config.sandbox_group)?;
    let Some(user) = user else {
        return Ok(None);
    };
    let dirs = [
        (config.workspace_root.clone(), "workspace_root"),
        (config.systree_root(), "systree_root"),
    ];
    let reached = tokio::task::spawn_blocking(move || {
        dirs.iter()
            .try_for_each(|(dir, setting)| user.check_reaches(dir, setting))
    })
    .await?;
    if let Err(e) = reached {
        tracing::warn!(error = %e, "chroot and container actions will fail");
    }
    tracing::info!(
        uid = user.uid,
        gid = user.gid,
        "chroot and container actions run as the sandbox user"
    );
    Ok(Some(user))
}

/// Makes `name` this process's on this host: at its start a worker-manager
/// stops the processes a killed predecessor of the same name left, so a
/// second one of that name would kill the first one's running actions.
/// An abstract Unix socket is the lock: the kernel frees it when the
/// process dies, however it dies, and it leaves no file behind.
fn claim_name(name: &str) -> anyhow::Result<std::os::unix::net::UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(
        format!("ick-worker-manager/{name}").as_bytes(),
    )?;
    match std::os::unix::net::UnixListener::bind_addr(&addr) {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "a worker-manager named {name:?} already runs on this host: \
             stop it, or give this one another name"
        ),
        Err(e) => anyhow::bail!("cannot claim the worker name {name:?} on this host: {e}"),
    }
}

/// Once the drain begins: after `drain_timeout` running actions are
/// stopped; some time later, reporting is given up.
async fn drain_timer(shared: Arc<Shared>) {
    shared.shutdown.cancelled().await;
    let busy = shared.busy.load(Ordering::SeqCst);
    if busy > 0 {
        tracing::info!(running = busy, timeout = ?shared.config.drain_timeout, "draining: no more claims; waiting for running actions");
    }
    tokio::time::sleep(shared.config.drain_timeout).await;
    tracing::warn!("drain timeout reached; cancelling running actions");
    shared.drained.cancel();
    tokio::time::sleep(shared.config.kill_grace * 2 + std::time::Duration::from_secs(30)).await;
    shared.hard_stop.cancel();
}

async fn serve_metrics(shared: &Arc<Shared>, listen: SocketAddr) -> anyhow::Result<Running> {
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (metrics.listen): {e}"))?;
    let (metrics, refresh) = metrics::metrics(shared);
    let router = finish_router(metrics.open_router(refresh), 64 * 1024);
    serve(listener, router, None, CancellationToken::new()).await
}

async fn serve_health(
    shared: &Arc<Shared>,
    listener: std::net::TcpListener,
) -> anyhow::Result<Running> {
    let body_limit = shared
        .config
        .http
        .as_ref()
        .map(|h| h.body_limit)
        .unwrap_or(64 * 1024);
    let tls = shared.config.http.as_ref().and_then(|h| h.tls.clone());
    let ready = shared.clone();
    let router = health_routes(
        "ick-worker-manager",
        Arc::new(move || {
            let shared = ready.clone();
            async move {
                if shared.shutdown.is_cancelled() {
                    Err("draining".to_string())
                } else if shared.ready.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("not connected to the controller yet".to_string())
                }
            }
            .boxed()
        }),
    );
    let router = finish_router(router, body_limit);
    serve(listener, router, tls.as_ref(), CancellationToken::new()).await
}
