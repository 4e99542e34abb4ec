//! The work protocol between the controller and worker-managers (scope
//! `work:run`).
//!
//! 1. `POST /work/claim` with a [`ClaimRequest`]: long-polls up to `wait`
//!    seconds; answers 200 with a [`WorkAssignment`] the moment a node this
//!    worker may run is ready, or 204 when the wait ends.
//! 2. While it runs: `POST /work/{node_id}/heartbeat` ([`Heartbeat`] →
//!    [`HeartbeatReply`]) every third of the lease, and
//!    `POST /work/{node_id}/output` ([`OutputBatch`]) with numbered chunks.
//! 3. `POST /work/{node_id}/done` ([`Done`]) ends it.
//!
//! Beside this, a worker holds `POST /work/presence` ([`Presence`]) open:
//! the controller answers a stream of newlines (one a second) and ends it
//! after a few minutes, when the worker opens it again. A connection that
//! drops without the worker saying it leaves (`POST /work/leave`,
//! [`Leave`]) and is not opened again within `work.reconnect_grace` means
//! the worker died: its running actions start over elsewhere at once,
//! without waiting for their leases.
//!
//! Every call after the claim carries the `attempt` it was given: a call
//! from an attempt that is no longer current answers 409 and changes
//! nothing (the node was requeued elsewhere). Resent chunks (same `seq`)
//! and a second identical `done` are harmless.
//!
//! How the controller answers, in detail:
//! - `claim` with `free_slots: 0` registers the worker and answers 204 at
//!   once. A node whose pipeline already ran an action goes only to the
//!   worker that ran it (the workspace is there); such nodes come first.
//! - An unknown node id answers 404. A 409 carries a problem `type`:
//!   [`PROBLEM_STALE_ATTEMPT`] (give up on the node) or
//!   [`PROBLEM_MISSING_CHUNKS`] (resend, then `done` again).
//! - `output` and `done` answer 204. `heartbeat` and `output` both renew
//!   the lease. Output sent again after `done` was accepted answers 204 if
//!   the controller already holds it.
//! - When a lease expires, the node's whole pipeline goes back to its first
//!   action (on any worker), at most `work.max_attempts` times; then the
//!   node fails with the message "worker lost".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actions::Action;

/// The longest long-poll the controller honours, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 30;

/// The problem `type` of the 409 answered to a call from an attempt that is
/// no longer current (the node was requeued elsewhere, or the build moved
/// on): stop working on it and report nothing more.
///
/// (Added beside the original contract so that a worker can tell this 409
/// from [`PROBLEM_MISSING_CHUNKS`] without parsing prose.)
pub const PROBLEM_STALE_ATTEMPT: &str = "urn:ick:problem:stale-attempt";

/// The problem `type` of the 409 answered to `done` while the controller
/// holds fewer chunks than [`Done::chunks`]: resend the chunks it did not
/// acknowledge, then send `done` again. The problem's `held` member says how
/// many chunks of the attempt the controller holds.
pub const PROBLEM_MISSING_CHUNKS: &str = "urn:ick:problem:missing-chunks";

/// `POST /work/claim`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The worker's unique name.
    pub worker: String,
    /// Its labels, e.g. `trusted`, `arch=amd64`.
    #[serde(default)]
    pub labels: Vec<String>,
    /// How many actions it could start now.
    pub free_slots: u32,
    /// Its total number of slots.
    pub slots: u32,
    /// The action kinds it runs: the built-ins and its plugins.
    pub kinds: Vec<String>,
    /// Seconds to wait for work (at most [`MAX_WAIT_SECONDS`]).
    #[serde(default)]
    pub wait: u64,
}

/// Refuses a worker name or label that cannot be one (the IDP, the
/// controller and the worker-manager all check with this); the error says
/// why.
pub fn check_worker(name: &str, labels: &[String]) -> Result<(), String> {
    let name_ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !name_ok {
        return Err(format!(
            "worker name {name:?} is not valid: use letters, digits, '.', '_' and '-' (at most 100)"
        ));
    }
    if let Some(bad) = labels
        .iter()
        .find(|l| l.is_empty() || l.len() > 100 || l.chars().any(|c| c.is_whitespace() || c == ','))
    {
        return Err(format!(
            "label {bad:?} is empty, longer than 100 or has spaces or commas"
        ));
    }
    Ok(())
}

/// The build a node belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRef {
    /// The build's id.
    pub id: String,
    /// Its number within the project.
    pub number: i64,
    /// The project's name.
    pub project: String,
}

/// A node handed to a worker: answer 200 of `POST /work/claim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkAssignment {
    /// The node's id; the path of every later call.
    pub node_id: String,
    /// The fencing token to send with every later call.
    pub attempt: i64,
    /// The lease; renew it within this many seconds.
    pub lease_seconds: u64,
    /// The build.
    pub build: BuildRef,
    /// The pipeline the action belongs to.
    pub pipeline: String,
    /// The action's position in its pipeline, from 0.
    pub index: u32,
    /// How many actions the pipeline has.
    pub pipeline_len: u32,
    /// What to run.
    pub action: Action,
    /// The build's parameters.
    pub parameters: BTreeMap<String, Value>,
}

impl WorkAssignment {
    /// The first action of a pipeline starts with a fresh workspace.
    pub fn first_in_pipeline(&self) -> bool {
        self.index == 0
    }

    /// After the last action the workspace can go.
    pub fn last_in_pipeline(&self) -> bool {
        self.index + 1 >= self.pipeline_len
    }
}

/// `POST /work/{node_id}/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The attempt being renewed.
    pub attempt: i64,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Stop the action: the build was cancelled.
    pub cancel: bool,
    /// The renewed lease, in seconds.
    pub lease_seconds: u64,
}

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of an action's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    /// Numbered from 0 per attempt across both streams, so order is kept.
    pub seq: i64,
    /// Its stream.
    pub stream: Stream,
    /// The text. Workers split output only at UTF-8 character boundaries.
    pub data: String,
}

/// `POST /work/{node_id}/output`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputBatch {
    /// The attempt the chunks belong to.
    pub attempt: i64,
    /// Chunks in order.
    pub chunks: Vec<OutputChunk>,
}

/// How an action ended, as the worker saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It ran to its end; `exit_code` says how.
    Exited,
    /// Its `timeout:` was reached and it was stopped.
    TimedOut,
    /// It was stopped because the build was cancelled (or the worker drained).
    Cancelled,
    /// It could not run at all (bad spec, missing blob, no plugin...).
    Error,
}

/// `POST /work/{node_id}/done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Done {
    /// The attempt that ended.
    pub attempt: i64,
    /// How it ended.
    pub outcome: Outcome,
    /// The exit code, when it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why, for outcomes other than `exited`.
    #[serde(default)]
    pub message: Option<String>,
    /// What it produced: `commit` for git, `digest` for archive, ...
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// How many chunks were sent; the controller refuses `done` (409) while
    /// it holds fewer, so the worker resends.
    pub chunks: i64,
}

impl Done {
    /// Whether this ending counts as success.
    pub fn succeeded(&self) -> bool {
        self.outcome == Outcome::Exited && self.exit_code == Some(0)
    }
}

/// `POST /work/presence`: the worker holding the connection open.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presence {
    /// The worker's name (its token's, unless an admin's).
    pub worker: String,
    /// Whether it is draining (it opens the connection again while it
    /// drains, e.g. after the controller restarted).
    #[serde(default)]
    pub draining: bool,
}

/// `POST /work/leave`: the worker is stopping.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leave {
    /// The worker's name (its token's, unless an admin's).
    pub worker: String,
    /// `draining` (it runs no more claims; its running actions go on
    /// until they end or its drain timeout passes) or `gone` (it has
    /// stopped: the pipelines waiting for it may start elsewhere unless it
    /// is back within `work.reconnect_grace`).
    pub state: WorkerState,
}

/// What a worker is doing, as `GET /workers` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Connected and taking work.
    Online,
    /// Stopping: it takes no more work and runs what it has to its end.
    Draining,
    /// Stopped, dead, or not heard from for `work.worker_timeout`.
    Gone,
}

impl WorkerState {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Online => "online",
            WorkerState::Draining => "draining",
            WorkerState::Gone => "gone",
        }
    }
}

/// `GET /workers` query: `?all=true` lists workers gone long ago too.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersQuery {
    /// Also the workers gone for more than an hour.
    #[serde(default)]
    pub all: bool,
}

/// A worker as `GET /workers` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its slots.
    pub slots: u32,
    /// The kinds it runs.
    pub kinds: Vec<String>,
    /// When it last claimed or heartbeat (RFC 3339).
    pub last_seen: String,
    /// Nodes it is running now.
    pub running: Vec<String>,
    /// Online, draining or gone.
    pub state: WorkerState,
}
