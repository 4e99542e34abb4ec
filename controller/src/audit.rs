//! The audit log: every change recorded with who made it, from where,
//! what and to which project, in the transaction of the change itself
//! (so that a change is in the log if and only if it was committed); and
//! `GET /audit`.

use ick_api::auth::Caller;
use ick_api::controller::{AuditAction, AuditList, AuditQuery};
use serde_json::Value;
use sqlx::AnyConnection;

use crate::access::{self, Actor, Identity};
use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::store::audit::{self as db, Filter, NewEntry};
use crate::store::now_ms;

/// Appends an entry in the transaction of `conn`.
pub async fn record(
    conn: &mut AnyConnection,
    actor: &Actor,
    action: AuditAction,
    project: Option<&str>,
    target: &str,
    detail: Value,
) -> Result<()> {
    let id = actor.id();
    db::append(
        conn,
        &NewEntry {
            at: now_ms(),
            actor: &id,
            actor_name: &actor.name,
            address: &actor.address,
            action,
            project,
            target,
            detail: detail.to_string(),
        },
    )
    .await
}

/// `GET /audit`: a global admin reads everything; a project's owner
/// reads its project's entries, with `project=` given.
pub async fn list(core: &Core, caller: &Caller, query: &AuditQuery) -> Result<AuditList> {
    if let Some(p) = &query.project {
        crate::definitions::check_name("project", p)?;
    }
    let bindings = access::bindings(core).await?;
    let who = Identity::of(Some(caller));
    if !bindings.may_read_audit(&who, query.project.as_deref()) {
        return Err(ControllerError::Forbidden(match &query.project {
            None => format!(
                "{} may not read the whole audit log: that needs the global role admin \
                 (a project's owner reads its own with project=NAME)",
                who.describe()
            ),
            // Whether it exists is not told to who may not see it.
            Some(p) if !bindings.may_read(&who, p) => {
                return Err(ControllerError::NotFound(format!("no project {p:?}")));
            }
            Some(p) => format!(
                "{} may not read the audit log of project {p:?}: that needs the role owner there",
                who.describe()
            ),
        }));
    }
    let filter = query.filter().map_err(ControllerError::BadRequest)?;
    let mut conn = core.store.conn().await?;
    let rows = db::list(
        &mut conn,
        &Filter {
            project: query.project.as_deref(),
            actor: filter.actor.as_deref(),
            actor_name: filter.actor_name.as_deref(),
            since: filter.since,
            before: filter.before,
            limit: filter.limit + 1,
        },
    )
    .await?;
    Ok(AuditList::page(rows, &filter))
}
