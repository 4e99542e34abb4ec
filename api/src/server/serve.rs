use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::TlsFiles;

/// Time given to open requests (long polls, log streams) when stopping.
const GRACE: Duration = Duration::from_secs(5);

/// A started service: its address, and the means to stop it and its tasks.
pub struct Running {
    addr: SocketAddr,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The address the service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cancelled when the service stops; background tasks watch it.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Adds a task that is awaited when the service stops. The task must end
    /// once the cancel token is cancelled.
    pub fn own(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Stops the server gracefully and waits for it and its tasks to end.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.wait().await;
    }

    /// Waits until the service has stopped (after `stop` or a fatal error).
    pub async fn wait(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Serves `router` on an already-bound listener (so tests can bind port 0),
/// over TLS when `tls` is given, until `cancel` is cancelled. Peer addresses
/// are available to handlers as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<&TlsFiles>,
    cancel: CancellationToken,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr().context("listener has no address")?;
    let handle: Handle<SocketAddr> = Handle::new();
    let make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let server = match tls {
        Some(files) => {
            // Both rustls providers may be compiled in; pick one explicitly.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let config = RustlsConfig::from_pem_file(&files.cert, &files.key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load TLS certificate {} and key {}",
                        files.cert.display(),
                        files.key.display()
                    )
                })?;
            let server = axum_server::from_tcp_rustls(listener, config)?.handle(handle.clone());
            tokio::spawn(async move { server.serve(make_service).await })
        }
        None => {
            let server = axum_server::from_tcp(listener)?.handle(handle.clone());
            tokio::spawn(async move { server.serve(make_service).await })
        }
    };
    let stopper = cancel.clone();
    let task = tokio::spawn(async move {
        let mut server = server;
        let ended = tokio::select! {
            ended = &mut server => Some(ended),
            _ = stopper.cancelled() => None,
        };
        let ended = match ended {
            Some(ended) => ended,
            None => {
                handle.graceful_shutdown(Some(GRACE));
                server.await
            }
        };
        match ended {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "server failed"),
            Err(e) => tracing::error!(error = %e, "server task failed"),
        }
    });
    Ok(Running {
        addr,
        cancel,
        tasks: vec![task],
    })
}

/// With this environment variable set to `1`, [`shutdown_signal`] also
/// resolves when stdin ends. A parent that holds the only writer of that
/// pipe (`icktool up`) so stops its children whenever it ends, even by
/// SIGKILL: the kernel closes the pipe, and no signal needs the parent.
pub const STOP_WITH_STDIN_ENV: &str = "ICK_STOP_WITH_STDIN";

/// Resolves on SIGTERM or SIGINT (Ctrl-C), or, with
/// [`STOP_WITH_STDIN_ENV`] set, at the end of stdin. The handlers are
/// installed when this is *called*, not when the future is first polled:
/// call it before announcing that the service is up, so that a signal sent
/// right after the announcement stops the service gracefully instead of
/// killing it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    let interrupt = signal(SignalKind::interrupt()).ok();
    let stdin_ended = (std::env::var_os(STOP_WITH_STDIN_ENV).as_deref()
        == Some(std::ffi::OsStr::new("1")))
    .then(stdin_end);
    async move {
        let signals = signals(term, interrupt);
        match stdin_ended {
            Some(ended) => tokio::select! {
                _ = ended => {}
                _ = signals => {}
            },
            None => signals.await,
        }
    }
}

/// Resolves when stdin reaches its end (or cannot be read). A plain
/// thread, not `spawn_blocking`: a read that never ends must not hold up
/// the runtime's shutdown.
fn stdin_end() -> tokio::sync::oneshot::Receiver<()> {
    use std::io::Read;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    rx
}

async fn signals(
    term: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
) {
    match (term, interrupt) {
        (Some(mut term), Some(mut interrupt)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        (Some(mut only), None) | (None, Some(mut only)) => {
            only.recv().await;
        }
        (None, None) => std::future::pending().await,
    }
}
