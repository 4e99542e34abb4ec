//! Mail about how builds ended. [`enqueue`] decides, in the transaction
//! that ends a build, whether the project wants mail about it and writes
//! the notification to the outbox; the [`sender`] task sends what the
//! outbox holds, with retries, and keeps what keeps failing.

pub mod message;
pub mod sender;

use std::collections::BTreeMap;

use ick_api::controller::{
    BuildStatus, DefinitionKind, NodeStatus, NotificationList, NotificationQuery,
    NotificationStatus, NotifyOn, ProjectSpec,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyConnection;

use crate::core::Core;
use crate::error::Result;
use crate::paging::Page;
use crate::store::builds::{self as bdb, BuildRow};
use crate::store::definitions as defs;
use crate::store::notifications::{self as ndb, NotificationRow};
use crate::store::{from_json, to_json};

/// What a mail says of a build, fixed when the build ended (a later retry
/// of the build changes its nodes, not this).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Details {
    /// When the build was triggered, started and ended (ms).
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: i64,
    /// Its parameters (`git_url`, `git_ref`, `git_commit`, …).
    pub parameters: BTreeMap<String, Value>,
    /// The commit built: `git_commit`, else what a git action fetched.
    pub commit: Option<String>,
    /// The first action that failed, in graph order.
    pub failed: Option<FailedAction>,
}

/// The action a failure mail is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedAction {
    pub node: String,
    pub attempt: i64,
    pub pipeline: String,
    /// From 0.
    pub index: i64,
    pub description: String,
    pub message: Option<String>,
}

/// Whether a project that mails `on` these events wants mail about a build
/// that ended `status`, `previous` being how its last build before it
/// ended (or `Some(Failed)` for a retry's later run).
fn wanted(on: &[NotifyOn], status: BuildStatus, previous: Option<BuildStatus>) -> bool {
    match status {
        BuildStatus::Failed | BuildStatus::Cancelled => on.contains(&NotifyOn::Failure),
        BuildStatus::Succeeded => {
            on.contains(&NotifyOn::Success)
                || (on.contains(&NotifyOn::Fixed) && previous == Some(BuildStatus::Failed))
        }
        BuildStatus::Queued | BuildStatus::Running => false,
    }
}

/// Writes the notification of a build that ends `status` now, if its
/// project wants one; `true` if it wrote one. Runs in the transaction that
/// ends the build.
pub async fn enqueue(
    conn: &mut AnyConnection,
    build: &BuildRow,
    status: BuildStatus,
    now: i64,
) -> Result<bool> {
    // A deleted project's builds may still end: nobody is left to tell.
    let Some(row) = defs::get(conn, DefinitionKind::Project, &build.project).await? else {
        return Ok(false);
    };
    let project: ProjectSpec = from_json(&row.spec)?;
    if project.notify.to.is_empty() {
        return Ok(false);
    }
    let on = project.notify.events();
    let previous = if status == BuildStatus::Succeeded && on.contains(&NotifyOn::Fixed) {
        if build.run > 1 {
            // A retry re-runs a build that did not succeed.
            Some(BuildStatus::Failed)
        } else {
            bdb::previous_outcome(conn, &build.project, build.number).await?
        }
    } else {
        None
    };
    if !wanted(&on, status, previous) {
        return Ok(false);
    }
    let nodes = bdb::build_nodes(conn, &build.id).await?;
    let failed = nodes
        .iter()
        .find(|n| n.status == NodeStatus::Failed)
        .map(|n| FailedAction {
            node: n.id.clone(),
            attempt: n.attempt,
            pipeline: n.pipeline.clone(),
            index: n.index,
            description: n.action.describe(),
            message: n.message.clone(),
        });
    let commit = build
        .parameters
        .get("git_commit")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .or_else(|| nodes.iter().find_map(|n| n.outputs.get("commit").cloned()));
    let details = Details {
        created_at: build.created_at,
        started_at: build.started_at,
        ended_at: now,
        parameters: build.shown_parameters(),
        commit,
        failed,
    };
    let notification = NotificationRow {
        seq: 0,
        id: uuid::Uuid::new_v4().to_string(),
        build_id: build.id.clone(),
        project: build.project.clone(),
        number: build.number,
        run: build.run,
        build_status: status,
        recipients: project.notify.to.clone(),
        details: to_json(&details)?,
        status: NotificationStatus::Pending,
        attempts: 0,
        next_attempt_at: now,
        lease_until: None,
        last_error: None,
        created_at: now,
        sent_at: None,
    };
    ndb::insert(conn, &notification).await?;
    tracing::info!(build_id = %build.id, notification = %notification.id, recipients = notification.recipients.len(), "notification queued");
    Ok(true)
}

/// `GET /notifications`.
pub async fn list(
    core: &Core,
    query: &NotificationQuery,
    readable: &crate::access::Readable,
) -> Result<NotificationList> {
    let page = Page::<NotificationStatus>::parse(
        query.status.as_deref(),
        query.before.as_deref(),
        query.limit,
    )?;
    if let Some(p) = &query.project {
        crate::definitions::check_name("project", p)?;
    }
    let mut conn = core.store.conn().await?;
    let rows = ndb::list(
        &mut conn,
        &page.statuses,
        query.project.as_deref(),
        readable,
        page.before,
        page.limit + 1,
    )
    .await?;
    let (rows, next) = page.cut(rows, |n| n.seq);
    Ok(NotificationList {
        next,
        notifications: rows.iter().map(NotificationRow::view).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use BuildStatus::*;
    use NotifyOn::*;

    #[test]
    fn the_default_mails_failures_and_fixes() {
        let on = [Failure, Fixed];
        assert!(wanted(&on, Failed, None));
        assert!(wanted(&on, Cancelled, None));
        assert!(!wanted(&on, Succeeded, None));
        assert!(!wanted(&on, Succeeded, Some(Succeeded)));
        assert!(wanted(&on, Succeeded, Some(Failed)));
    }

    #[test]
    fn success_mails_every_success_only() {
        let on = [Success];
        assert!(wanted(&on, Succeeded, None));
        assert!(wanted(&on, Succeeded, Some(Failed)));
        assert!(!wanted(&on, Failed, None));
        assert!(!wanted(&on, Running, None));
    }
}
