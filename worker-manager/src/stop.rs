//! Why a running action must stop early, shared by whoever notices it
//! (the heartbeat, the drain timer, the output sender) and the code that
//! runs it.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Why an action was stopped before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The build was cancelled.
    Cancelled,
    /// The worker-manager is stopping and the drain timeout passed.
    Drained,
}

/// A one-way switch: once stopped, an action stays stopped. Cheap to clone.
#[derive(Clone, Default)]
pub struct Stop {
    action: CancellationToken,
    abandon: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl Stop {
    /// A switch that is not thrown.
    pub fn new() -> Self {
        Stop::default()
    }

    /// Stops the action for `reason` (the first reason given is kept).
    pub fn stop(&self, reason: StopReason) {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
        self.action.cancel();
    }

    /// Stops the action and everything about it: the attempt is no longer
    /// ours (the controller gave the node to another), so nothing more is
    /// reported.
    pub fn abandon(&self) {
        self.abandon.cancel();
        self.action.cancel();
    }

    /// Resolves once the action must stop.
    pub async fn stopped(&self) {
        self.action.cancelled().await
    }

    /// Resolves once the attempt was abandoned.
    pub async fn abandoned(&self) {
        self.abandon.cancelled().await
    }

    /// Whether the attempt was abandoned.
    pub fn is_abandoned(&self) -> bool {
        self.abandon.is_cancelled()
    }

    /// Why it was stopped, if it was (and not merely abandoned).
    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }
}
