//! The audit log: every change, who made it, when and from where.
//! Append-only: there is no API that changes or removes an entry.
//!
//! Each service keeps the log of what changes there, in the transaction of
//! the change, and serves it as `GET /audit?actor=&since=&before=&limit=`
//! ([`AuditQuery`], [`AuditList`]), newest first, in pages like
//! `GET /builds`:
//! - the controller's (definitions, members, roles, trigger secrets,
//!   triggers, cancels, retries): scope `projects:read`, and the global role
//!   `admin`, or `owner` of the project that `project=` names;
//! - the IDP's (clients, users, groups, passwords): scope `idp:admin`; it
//!   has no projects, so it refuses `project=`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Caller;

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
    /// An OAuth2 client was made (IDP).
    #[serde(rename = "client.create")]
    ClientCreate,
    /// A client was changed: scopes, enabled, redirect URIs… (IDP).
    #[serde(rename = "client.update")]
    ClientUpdate,
    /// A client's secret was replaced (IDP).
    #[serde(rename = "client.rotate_secret")]
    ClientRotateSecret,
    /// A client was deleted (IDP).
    #[serde(rename = "client.delete")]
    ClientDelete,
    /// A user was made (IDP).
    #[serde(rename = "user.create")]
    UserCreate,
    /// A user was changed: display name, email, enabled (IDP).
    #[serde(rename = "user.update")]
    UserUpdate,
    /// A user's password was set (IDP).
    #[serde(rename = "user.password")]
    UserPassword,
    /// A user was deleted (IDP).
    #[serde(rename = "user.delete")]
    UserDelete,
    /// A group was made (IDP).
    #[serde(rename = "group.create")]
    GroupCreate,
    /// A group was deleted (IDP).
    #[serde(rename = "group.delete")]
    GroupDelete,
    /// A user was put in a group (IDP).
    #[serde(rename = "group.add")]
    GroupAdd,
    /// A user was taken out of a group (IDP).
    #[serde(rename = "group.remove")]
    GroupRemove,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 27] = [
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
        AuditAction::ClientCreate,
        AuditAction::ClientUpdate,
        AuditAction::ClientRotateSecret,
        AuditAction::ClientDelete,
        AuditAction::UserCreate,
        AuditAction::UserUpdate,
        AuditAction::UserPassword,
        AuditAction::UserDelete,
        AuditAction::GroupCreate,
        AuditAction::GroupDelete,
        AuditAction::GroupAdd,
        AuditAction::GroupRemove,
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
            AuditAction::ClientCreate => "client.create",
            AuditAction::ClientUpdate => "client.update",
            AuditAction::ClientRotateSecret => "client.rotate_secret",
            AuditAction::ClientDelete => "client.delete",
            AuditAction::UserCreate => "user.create",
            AuditAction::UserUpdate => "user.update",
            AuditAction::UserPassword => "user.password",
            AuditAction::UserDelete => "user.delete",
            AuditAction::GroupCreate => "group.create",
            AuditAction::GroupDelete => "group.delete",
            AuditAction::GroupAdd => "group.add",
            AuditAction::GroupRemove => "group.remove",
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
    /// Who: `user:NAME` (a person), `client:NAME` (a machine),
    /// `webhook:FORGE` (a signed web hook), `local:PROGRAM` (the
    /// service's own command line on its host) or `upstream:PROVIDER` (an
    /// account made at a person's first login through that provider).
    pub actor: String,
    /// The caller's IP address, as the service saw it.
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

/// An [`AuditQuery`] checked, as both services read their logs by it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// A whole actor (`user:alice`).
    pub actor: Option<String>,
    /// An actor's name of any kind (`alice`).
    pub actor_name: Option<String>,
    /// From this time on, milliseconds since the epoch.
    pub since: Option<i64>,
    /// Older than this entry (`seq`).
    pub before: Option<i64>,
    /// At most this many (1 to 500).
    pub limit: i64,
}

impl AuditQuery {
    /// The query checked; the error says what is wrong with which field.
    pub fn filter(&self) -> Result<Filter, String> {
        let (actor, actor_name) = match self.actor.as_deref() {
            None | Some("") => (None, None),
            Some(a) if a.contains(':') => (Some(a.to_string()), None),
            Some(a) => (None, Some(a.to_string())),
        };
        let since = match self.since.as_deref() {
            None | Some("") => None,
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|e| {
                        format!(
                            "since={t:?} is not an RFC 3339 time (e.g. 2026-12-01T00:00:00Z): {e}"
                        )
                    })?
                    .timestamp_millis(),
            ),
        };
        let before = match self.before.as_deref() {
            None | Some("") => None,
            Some(b) => Some(
                b.parse::<i64>()
                    .map_err(|_| format!("before={b:?} is not a cursor from `next`"))?,
            ),
        };
        Ok(Filter {
            actor,
            actor_name,
            since,
            before,
            limit: i64::from(self.limit.unwrap_or(50).clamp(1, 500)),
        })
    }
}

impl AuditList {
    /// The page of `entries`, read with a limit of `filter.limit + 1`
    /// newest first, and the cursor of the next one if there is more.
    pub fn page(mut entries: Vec<AuditEntry>, filter: &Filter) -> AuditList {
        let more = entries.len() as i64 > filter.limit;
        entries.truncate(filter.limit as usize);
        let next = more
            .then(|| entries.last().map(|e| e.seq.to_string()))
            .flatten();
        AuditList { entries, next }
    }
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

/// Who made a change, as audit logs, revisions and builds name it: the
/// person (`user:NAME`), else the client (`client:NAME`), or a web hook
/// (`webhook:FORGE`); and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    kind: &'static str,
    /// The person's user name, the client's name (its id if the IDP does
    /// not name it), or the forge.
    pub name: String,
    /// The caller's IP address.
    pub address: String,
}

impl Actor {
    /// The caller of a request from `address`.
    pub fn of(caller: &Caller, address: IpAddr) -> Actor {
        let (kind, name) = match &caller.user {
            Some(user) => ("user", user.name.clone()),
            None => ("client", caller.display_name().to_string()),
        };
        Actor {
            kind,
            name,
            address: address.to_string(),
        }
    }

    /// A web hook of `forge` from `address`.
    pub fn webhook(forge: &str, address: IpAddr) -> Actor {
        Actor {
            kind: "webhook",
            name: forge.to_string(),
            address: address.to_string(),
        }
    }

    /// A person's first login through the upstream OpenID provider
    /// `provider`, which made their account: `upstream:PROVIDER`.
    pub fn upstream(provider: &str, address: IpAddr) -> Actor {
        Actor {
            kind: "upstream",
            name: provider.to_string(),
            address: address.to_string(),
        }
    }

    /// A change made on the service's host by a program of its own (its
    /// command line, or `icktool up` making its first clients):
    /// `local:PROGRAM`, from address `local`.
    pub fn local(program: &str) -> Actor {
        Actor {
            kind: "local",
            name: program.to_string(),
            address: "local".to_string(),
        }
    }

    /// `user:alice`, `client:ci`, `webhook:github`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.kind, self.name)
    }

    /// How a revision's author and a build's "triggered by" name it: the
    /// person's or client's name, or `webhook:FORGE`.
    pub fn shown(&self) -> String {
        if self.kind == "webhook" {
            self.id()
        } else {
            self.name.clone()
        }
    }
}
