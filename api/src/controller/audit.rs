//! The audit log: every change, who made it, when and from where.
//! Append-only: there is no API that changes or removes an entry.
//!
//! `GET /audit?project=&actor=&since=&before=&limit=` ([`AuditQuery`],
//! [`AuditList`]), newest first, in pages like `GET /builds`: scope
//! `projects:read`, and the global role `admin`, or `owner` of the project
//! that `project=` names.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditAction {
    /// A project was created (`PUT /projects/{name}` or `POST /definitions`).
    #[serde(rename = "project.create")]
    ProjectCreate,
    /// A project was changed.
    #[serde(rename = "project.update")]
    ProjectUpdate,
    /// A project was deleted.
    #[serde(rename = "project.delete")]
    ProjectDelete,
    /// A pipeline was created.
    #[serde(rename = "pipeline.create")]
    PipelineCreate,
    /// A pipeline was changed.
    #[serde(rename = "pipeline.update")]
    PipelineUpdate,
    /// A pipeline was deleted.
    #[serde(rename = "pipeline.delete")]
    PipelineDelete,
    /// A member was given a role on a project (or another one).
    #[serde(rename = "member.set")]
    MemberSet,
    /// A member was removed from a project.
    #[serde(rename = "member.remove")]
    MemberRemove,
    /// A global role was granted.
    #[serde(rename = "role.grant")]
    RoleGrant,
    /// A global role was revoked.
    #[serde(rename = "role.revoke")]
    RoleRevoke,
    /// A project's trigger secret was made (on first use).
    #[serde(rename = "trigger_secret.create")]
    TriggerSecretCreate,
    /// A project's trigger secret was replaced.
    #[serde(rename = "trigger_secret.rotate")]
    TriggerSecretRotate,
    /// A build was triggered (by a caller or a web hook).
    #[serde(rename = "build.trigger")]
    BuildTrigger,
    /// A build was cancelled.
    #[serde(rename = "build.cancel")]
    BuildCancel,
    /// A build was run again.
    #[serde(rename = "build.retry")]
    BuildRetry,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 15] = [
        AuditAction::ProjectCreate,
        AuditAction::ProjectUpdate,
        AuditAction::ProjectDelete,
        AuditAction::PipelineCreate,
        AuditAction::PipelineUpdate,
        AuditAction::PipelineDelete,
        AuditAction::MemberSet,
        AuditAction::MemberRemove,
        AuditAction::RoleGrant,
        AuditAction::RoleRevoke,
        AuditAction::TriggerSecretCreate,
        AuditAction::TriggerSecretRotate,
        AuditAction::BuildTrigger,
        AuditAction::BuildCancel,
        AuditAction::BuildRetry,
    ];

    /// The wire name, e.g. `build.trigger`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::ProjectCreate => "project.create",
            AuditAction::ProjectUpdate => "project.update",
            AuditAction::ProjectDelete => "project.delete",
            AuditAction::PipelineCreate => "pipeline.create",
            AuditAction::PipelineUpdate => "pipeline.update",
            AuditAction::PipelineDelete => "pipeline.delete",
            AuditAction::MemberSet => "member.set",
            AuditAction::MemberRemove => "member.remove",
            AuditAction::RoleGrant => "role.grant",
            AuditAction::RoleRevoke => "role.revoke",
            AuditAction::TriggerSecretCreate => "trigger_secret.create",
            AuditAction::TriggerSecretRotate => "trigger_secret.rotate",
            AuditAction::BuildTrigger => "build.trigger",
            AuditAction::BuildCancel => "build.cancel",
            AuditAction::BuildRetry => "build.retry",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown audit action {s:?}"))
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its place in the log; later entries have larger ones.
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `user:NAME` (a person), `client:NAME` (a machine) or
    /// `webhook:FORGE` (a signed web hook).
    pub actor: String,
    /// The caller's IP address, as the controller saw it.
    pub address: String,
    /// What was done.
    pub action: AuditAction,
    /// The project it concerns, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// What it was done to: a project's or pipeline's name, a build's id,
    /// a member.
    pub target: String,
    /// The particulars: a revision, a role, a build number, the projects
    /// that run a changed pipeline.
    #[serde(default)]
    pub detail: Value,
}

/// `GET /audit`'s query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only entries about this project (required for a project's owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Only this actor: `user:NAME`, `client:NAME`, `webhook:FORGE`, or a
    /// bare NAME for any kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only entries from this time on (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The cursor of a next page (`next` of the previous answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// At most this many (1 to 500, default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// The answer of `GET /audit`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditList {
    /// The entries.
    pub entries: Vec<AuditEntry>,
    /// Give it as `before=` for the next, older page; none at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
