//! Running one claimed action: its workspace, its kind's runner, its
//! heartbeats and output, and the report of how it ended.

mod archive;
pub mod env;
pub mod executor;
mod git;
mod gitdir;
pub mod owner;
mod plugin;
mod populate;
mod python;
mod shell;
mod untar;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ick_api::blobs::BlobClient;
use ick_api::work::{Done, Outcome, Stream, WorkAssignment};
use tokio::time::Instant;
use tracing::Instrument;

use crate::Shared;
use crate::error::{ActionError, CallError};
use crate::output::{Destination, Output, OutputWriter, backoff};
use crate::stop::{Stop, StopReason};
use crate::workspace::Dirs;
use executor::leftovers::{Guards, Since};
use executor::supervisor::Supervisor;
use executor::{Limits, ProcEnd};

pub use plugin::kinds as plugin_kinds;

/// How an action ended, as reported in `done`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub outputs: BTreeMap<String, String>,
}

impl Ending {
    /// It exited with `code`.
    pub fn exited(code: i32) -> Ending {
        Ending {
            outcome: Outcome::Exited,
            exit_code: Some(code),
            message: None,
            outputs: BTreeMap::new(),
        }
    }

    /// It could not run.
    pub fn error(message: String) -> Ending {
        Ending {
            outcome: Outcome::Error,
            exit_code: None,
            message: Some(message),
            outputs: BTreeMap::new(),
        }
    }

    fn interrupted(outcome: Outcome, message: String) -> Ending {
        Ending {
            outcome,
            exit_code: None,
            message: Some(message),
            outputs: BTreeMap::new(),
        }
    }

    /// Whether it counts as success.
    pub fn succeeded(&self) -> bool {
        self.outcome == Outcome::Exited && self.exit_code == Some(0)
    }
}

/// What a kind's runner gets.
pub struct RunCtx {
    pub a: WorkAssignment,
    pub dirs: Dirs,
    pub out: OutputWriter,
    pub stop: Stop,
    pub deadline: Option<Instant>,
    pub grace: Duration,
    pub marker: String,
    pub blobs: BlobClient,
    pub plugin_dir: Option<PathBuf>,
    /// Whom sandboxed processes run as (none: the worker's own user).
    pub sandbox_user: Option<owner::SandboxUser>,
    /// What starts the action's processes under supervision (none: this
    /// program cannot).
    pub supervisor: Option<Arc<Supervisor>>,
    /// The action's supervised processes, until its end.
    pub guards: Arc<Guards>,
}

impl RunCtx {
    /// What a process of this action is watched by.
    pub fn limits(&self) -> Limits<'_> {
        Limits {
            out: &self.out,
            stop: &self.stop,
            deadline: self.deadline,
            grace: self.grace,
            marker: &self.marker,
            supervisor: self.supervisor.as_deref(),
            guards: &self.guards,
        }
    }

    /// The environment of a process that runs on the host.
    pub async fn host_env(&self) -> Vec<(String, String)> {
        self.env_seen_at(&self.dirs.workspace.to_string_lossy())
            .await
    }

    /// The environment of a process that sees the workspace at `workspace`;
    /// parameters that cannot be variables are named in the log.
    pub async fn env_seen_at(&self, workspace: &str) -> Vec<(String, String)> {
        let (env, skipped) = env::environment(&self.a, workspace);
        for name in skipped {
            self.out
                .line(
                    Stream::Stderr,
                    &format!("ick: parameter {name:?} is not a valid variable name or is reserved; read it with `params` or ICK_PARAMS"),
                )
                .await;
        }
        env
    }

    /// How a process's end ends the action.
    pub fn ending(&self, end: ProcEnd) -> Ending {
        match end {
            ProcEnd::Exited { code, signal, .. } => Ending {
                message: signal,
                ..Ending::exited(code)
            },
            ProcEnd::TimedOut => self.timed_out(),
            ProcEnd::Stopped(reason) => stopped(reason),
        }
    }

    fn timed_out(&self) -> Ending {
        let after = self
            .a
            .action
            .timeout
            .map(|t| {
                format!(
                    " after {}",
                    humantime_serde::re::humantime::format_duration(t)
                )
            })
            .unwrap_or_default();
        Ending::interrupted(Outcome::TimedOut, format!("timed out{after}"))
    }

    /// Runs in-process work (archive, populate) until it ends, the
    /// deadline passes or the action must stop.
    pub async fn guard<T>(&self, work: impl Future<Output = T>) -> Result<T, Ending> {
        let deadline = async {
            match self.deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = work => Ok(done),
            _ = deadline => Err(self.timed_out()),
            _ = self.stop.stopped() => Err(stopped(self.stop.reason())),
        }
    }
}

fn stopped(reason: Option<StopReason>) -> Ending {
    let message = match reason {
        Some(StopReason::Cancelled) => "cancelled: the build was cancelled",
        Some(StopReason::Drained) => {
            "cancelled: the worker-manager was stopped and its drain timeout passed"
        }
        None => "abandoned: the controller gave the action to another worker",
    };
    Ending::interrupted(Outcome::Cancelled, message.into())
}

async fn execute(rc: &RunCtx) -> Result<Ending, ActionError> {
    match rc.a.action.kind.as_str() {
        "shell" => shell::run(rc).await,
        "python" => python::run(rc).await,
        "git" => git::run(rc).await,
        "archive" => archive::run(rc).await,
        "populate" => populate::run(rc).await,
        _ => plugin::run(rc).await,
    }
}

/// Runs a claimed action to its end and reports it.
pub(crate) async fn run_assignment(shared: &Arc<Shared>, a: WorkAssignment) {
    let span = tracing::info_span!("action", build_id = %a.build.id, node = %a.node_id, attempt = a.attempt);
    attempt(shared, a).instrument(span).await
}

async fn attempt(shared: &Arc<Shared>, a: WorkAssignment) {
    tracing::info!(project = %a.build.project, pipeline = %a.pipeline, index = a.index, kind = %a.action.kind, "running {}", a.action.describe());
    let started = std::time::Instant::now();
    let stop = Stop::new();
    let heartbeat = tokio::spawn(
        heartbeats(
            shared.clone(),
            a.node_id.clone(),
            a.attempt,
            a.lease_seconds,
            stop.clone(),
        )
        .in_current_span(),
    );
    let drain = tokio::spawn({
        let (drained, stop) = (shared.drained.clone(), stop.clone());
        async move {
            drained.cancelled().await;
            stop.stop(StopReason::Drained);
        }
    });
    let (output, out) = Output::start(
        Destination {
            controller: shared.controller.clone(),
            node_id: a.node_id.clone(),
            attempt: a.attempt,
            config: shared.config.output.clone(),
            spill_dir: shared.workspaces.root().join(".spill"),
            buffered: shared.counters.buffered.clone(),
        },
        stop.clone(),
    );
    // Every process of the action carries this marker, and starts after
    // `since`.
    let marker = format!("{}/{}", shared.config.name, uuid::Uuid::new_v4());
    let since = Since::now();
    let guards = Arc::new(Guards::default());
    let (dirs, result) = match shared.workspaces.prepare(&a).await {
        Ok(dirs) => {
            let rc = RunCtx {
                deadline: a.action.timeout.map(|t| Instant::now() + t),
                a: a.clone(),
                dirs: dirs.clone(),
                out: out.clone(),
                stop: stop.clone(),
                grace: shared.config.kill_grace,
                marker: marker.clone(),
                blobs: shared.blobs.clone(),
                plugin_dir: shared.config.plugin_dir.clone(),
                sandbox_user: shared.sandbox_user,
                supervisor: shared.supervisor.clone(),
                guards: guards.clone(),
            };
            (Some(dirs), execute(&rc).await)
        }
        Err(e) => (None, Err(e)),
    };
    let ending = result.unwrap_or_else(|e| Ending::error(e.0));
    let ran = started.elapsed();
    shared
        .counters
        .ended(&a.action.kind, ending.outcome, ending.succeeded(), ran);
    if let Some(message) = &ending.message {
        out.line(Stream::Stderr, &format!("ick: {message}")).await;
    }
    drop(out);
    let chunks = if stop.is_abandoned() {
        output.abort();
        None
    } else {
        tokio::select! {
            finished = output.finish() => finished.ok(),
            _ = shared.hard_stop.cancelled() => None,
        }
    };
    let delivered = started.elapsed();
    // A process that left its group without holding the output pipes
    // (a daemon) is stopped while the end is reported.
    let reporting = async {
        match chunks {
            Some(chunks) => report(shared, &a, &ending, chunks, &stop).await,
            None => false,
        }
    };
    let sweep = executor::clean_up(since, marker, shared.config.kill_grace, &guards);
    let (reported, ()) = tokio::join!(reporting, sweep);
    let ended = started.elapsed();
    heartbeat.abort();
    drain.abort();
    if let Some(dirs) = dirs
        && (a.last_in_pipeline() || !ending.succeeded() || !reported)
    {
        shared.workspaces.remove(dirs).await;
    }
    tracing::info!(
        outcome = ?ending.outcome,
        exit_code = ?ending.exit_code,
        reported,
        run_ms = millis(ran),
        deliver_ms = millis(delivered - ran),
        report_ms = millis(ended - delivered),
        elapsed_ms = millis(started.elapsed()),
        "action ended"
    );
}

/// A duration in milliseconds, to a tenth, for logs.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// Renews the lease until aborted; stops the action when the build is
/// cancelled, abandons it when the attempt is no longer current.
async fn heartbeats(shared: Arc<Shared>, node: String, attempt: i64, lease: u64, stop: Stop) {
    let every = |lease: u64| {
        (Duration::from_secs(lease.max(1)) / 3)
            .min(shared.config.heartbeat_interval)
            .max(Duration::from_millis(100))
    };
    let mut interval = every(lease);
    loop {
        tokio::time::sleep(interval).await;
        match shared.controller.heartbeat(&node, attempt).await {
            Ok(reply) => {
                if reply.cancel && stop.reason().is_none() {
                    tracing::info!("the build was cancelled; stopping the action");
                    stop.stop(StopReason::Cancelled);
                }
                interval = every(reply.lease_seconds);
            }
            Err(CallError::Stale(why)) => {
                tracing::warn!(%why, "the attempt is no longer ours; abandoning it");
                stop.abandon();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed; trying again");
                interval = every(lease).min(Duration::from_secs(1));
            }
        }
    }
}

/// Sends `done` until the controller takes it; `false` if it never will.
async fn report(
    shared: &Shared,
    a: &WorkAssignment,
    ending: &Ending,
    chunks: i64,
    stop: &Stop,
) -> bool {
    let mut done = Done {
        attempt: a.attempt,
        outcome: ending.outcome,
        exit_code: ending.exit_code,
        message: ending.message.clone(),
        outputs: ending.outputs.clone(),
        chunks,
    };
    let retry = backoff();
    let mut failures = 0;
    loop {
        let sent = tokio::select! {
            sent = shared.controller.done(&a.node_id, &done) => sent,
            _ = shared.hard_stop.cancelled() => {
                tracing::error!("stopping before the controller took the end of the action");
                return false;
            }
            _ = stop.abandoned() => return false,
        };
        match sent {
            Ok(()) => return true,
            Err(CallError::Stale(why)) => {
                tracing::warn!(%why, "the controller no longer takes this attempt's end");
                return false;
            }
            Err(CallError::MissingChunks { held }) if held < done.chunks => {
                // Every chunk was acknowledged before done, so the
                // controller lost some: say so rather than never end.
                tracing::error!(
                    held,
                    sent = done.chunks,
                    "the controller lost output it had acknowledged"
                );
                let lost = format!(
                    "the controller lost output: it holds {held} of {} chunks",
                    done.chunks
                );
                done.message = Some(match done.message.take() {
                    Some(m) => format!("{m}; {lost}"),
                    None => lost,
                });
                done.chunks = held;
            }
            Err(e) if e.is_transient() || matches!(e, CallError::MissingChunks { .. }) => {
                failures += 1;
                let delay = retry.delay(failures);
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %e, failures, ?delay, "reporting the end failed; trying again");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shared.hard_stop.cancelled() => return false,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the controller refused the end of the action");
                return false;
            }
        }
    }
}
