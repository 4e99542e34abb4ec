//! The worker's presence: a connection to the controller held open for as
//! long as the process lives, so that its death (which closes it) is
//! noticed in seconds rather than when leases run out; and the word that
//! it is leaving when it stops.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ick_api::work::WorkerState;

use crate::Shared;

/// The wait before opening the connection again after it failed; doubles
/// to [`MAX_RETRY`]. Short: the controller counts the worker dead after
/// `work.reconnect_grace` (5 s by default).
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Holds the presence connection open, opening it again whenever it ends,
/// until the task is aborted.
pub(crate) async fn hold(shared: Arc<Shared>) {
    let name = shared.config.name.clone();
    let mut retry = FIRST_RETRY;
    loop {
        let draining = shared.shutdown.is_cancelled();
        match shared.controller.presence(&name, draining).await {
            Ok(response) => {
                retry = FIRST_RETRY;
                let mut body = response.bytes_stream();
                while let Some(chunk) = body.next().await {
                    if let Err(e) = chunk {
                        tracing::debug!(error = %e, "the presence connection broke");
                        break;
                    }
                }
                continue;
            }
            Err(e) => tracing::debug!(error = %e, "cannot open the presence connection"),
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// Tells the controller the worker is draining or gone; a controller that
/// does not answer finds out anyway.
pub(crate) async fn leave(shared: &Shared, state: WorkerState) {
    if let Err(e) = shared.controller.leave(&shared.config.name, state).await {
        tracing::warn!(error = %e, state = state.as_str(), "cannot tell the controller this worker is leaving");
    }
}
