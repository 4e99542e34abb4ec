//! Builds and their nodes, as `GET /builds` and `GET /builds/{id}` show them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actions::Action;
use crate::work::Outcome;

/// `POST /projects/{name}/builds`: an empty body, or parameter overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// Values that replace or add to the project's parameters, e.g.
    /// `git_ref` or `git_commit`.
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
}

/// Where a build is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildStatus {
    /// Waiting: for the project's concurrency limit, or for a worker.
    Queued,
    /// At least one action has been handed to a worker.
    Running,
    /// Every action succeeded.
    Succeeded,
    /// An action failed (its dependents were skipped).
    Failed,
    /// Cancelled by someone.
    Cancelled,
}

impl BuildStatus {
    /// Every status, in order.
    pub const ALL: [BuildStatus; 5] = [
        BuildStatus::Queued,
        BuildStatus::Running,
        BuildStatus::Succeeded,
        BuildStatus::Failed,
        BuildStatus::Cancelled,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Queued => "queued",
            BuildStatus::Running => "running",
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
            BuildStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the build has ended.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            BuildStatus::Succeeded | BuildStatus::Failed | BuildStatus::Cancelled
        )
    }
}

impl fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BuildStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BuildStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown build status {s:?}: use queued, running, succeeded, failed or cancelled")
            })
    }
}

/// Where one node (one action of a build) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Not started; `waiting_for` says why.
    Queued,
    /// Handed to a worker.
    Running,
    /// It exited 0.
    Succeeded,
    /// It exited non-zero, timed out, could not run, or its worker was lost.
    Failed,
    /// Something it depends on failed.
    Skipped,
    /// The build was cancelled.
    Cancelled,
}

impl NodeStatus {
    /// Every status, in order.
    pub const ALL: [NodeStatus; 6] = [
        NodeStatus::Queued,
        NodeStatus::Running,
        NodeStatus::Succeeded,
        NodeStatus::Failed,
        NodeStatus::Skipped,
        NodeStatus::Cancelled,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Queued => "queued",
            NodeStatus::Running => "running",
            NodeStatus::Succeeded => "succeeded",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the node has ended.
    pub fn is_finished(self) -> bool {
        !matches!(self, NodeStatus::Queued | NodeStatus::Running)
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown node status {s:?}"))
    }
}

/// A build without its nodes: the entries of `GET /builds`, and the answer
/// to trigger (201), cancel and retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildSummary {
    /// Its id (the path of `/builds/{id}`).
    pub id: String,
    /// The project.
    pub project: String,
    /// Its number within the project, from 1.
    pub number: i64,
    /// Where it is.
    pub status: BuildStatus,
    /// 1 for the first run; each retry adds one.
    pub run: i64,
    /// Whether someone asked to cancel it.
    pub cancel_requested: bool,
    /// The parameters its actions get: the project's defaults and the
    /// trigger's overrides.
    pub parameters: BTreeMap<String, Value>,
    /// Who triggered it, as recorded then: the person's user name (the
    /// token's `ick_user`), else the client's name (its `client_name`,
    /// else its `sub`), or `webhook:FORGE`.
    pub triggered_by: String,
    /// When it was triggered.
    pub created_at: DateTime<Utc>,
    /// When its first action was handed to a worker.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
}

/// `GET /builds/{id}`: the build and its whole graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildView {
    /// The build.
    #[serde(flatten)]
    pub build: BuildSummary,
    /// For a build that has not ended and runs nothing: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// One node per action, in graph order (pipelines before those that
    /// need them, actions in pipeline order).
    pub nodes: Vec<NodeView>,
    /// Whether the controller sends mail (its `mail:` is configured);
    /// without it, the notifications of a project's `notify:` wait in the
    /// outbox. Absent from older controllers: taken as true.
    #[serde(default = "mail_configured_default")]
    pub mail_configured: bool,
}

fn mail_configured_default() -> bool {
    true
}

impl BuildView {
    /// The nodes of one pipeline, in order.
    pub fn pipeline(&self, name: &str) -> Vec<&NodeView> {
        self.nodes.iter().filter(|n| n.pipeline == name).collect()
    }
}

/// One action of a build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Its id (the path of `/work/{id}/...`, and `?node=` of the log).
    pub id: String,
    /// Its pipeline.
    pub pipeline: String,
    /// Its position in the pipeline, from 0.
    pub index: u32,
    /// How many actions the pipeline has.
    pub pipeline_len: u32,
    /// What it runs.
    pub action: Action,
    /// A one-line description of the action.
    pub description: String,
    /// The nodes that must succeed before it starts (the graph's edges).
    pub needs: Vec<String>,
    /// Where it is.
    pub status: NodeStatus,
    /// The current attempt (0: never handed out); every hand-out adds one.
    pub attempt: i64,
    /// The worker running it or that ran it.
    pub worker: Option<String>,
    /// How the worker said it ended.
    pub outcome: Option<Outcome>,
    /// Its exit code.
    pub exit_code: Option<i32>,
    /// Why it ended so, when there is more to say (e.g. "worker lost").
    pub message: Option<String>,
    /// What it produced: `commit` for git, `digest` for archive, ...
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// When it became ready to run.
    pub ready_at: Option<DateTime<Utc>>,
    /// When a worker got it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Its attempts whose worker was lost, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost_attempts: Vec<LostAttempt>,
    /// For a queued node: why it waits (its dependencies, the project's
    /// concurrency limit, no connected worker with the labels or kind it
    /// needs, or every such worker busy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// An attempt of a node whose worker was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostAttempt {
    /// The attempt.
    pub attempt: i64,
    /// The worker that was running it (or held its pipeline's workspace).
    pub worker: String,
    /// When the worker was last heard from.
    pub at: DateTime<Utc>,
    /// What happened, e.g. "worker w1 stopped answering at 12:03:04 UTC".
    pub reason: String,
    /// The worker its pipeline started again on, once one took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub again_on: Option<String>,
}

impl LostAttempt {
    /// One line for people: `attempt 1 lost: worker w1 stopped answering
    /// at 12:03:04 UTC; started again on w2`.
    pub fn describe(&self) -> String {
        let then = match &self.again_on {
            Some(w) => format!("started again on {w}"),
            None => "not started again yet".to_string(),
        };
        format!("attempt {} lost: {}; {then}", self.attempt, self.reason)
    }
}

/// `GET /builds` query: `?project=&status=&limit=&before=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildQuery {
    /// Only this project's builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Only builds in these states, comma-separated (e.g. `queued,running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// At most this many (default 50, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// A page of builds, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildList {
    /// The builds.
    pub builds: Vec<BuildSummary>,
    /// Pass as `before` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
