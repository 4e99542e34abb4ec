//! What an applied definition leaves besides itself: its audit entry,
//! and for a new project its creator's ownership.

use ick_api::controller::{
    Applied, AuditAction, Change, DefinitionKind, Member, Membership, ProjectRole,
};

use super::authorize::users_of;
use super::{Author, Item};
use crate::access::{Bindings, Identity};
use crate::audit;
use crate::error::Result;
use crate::store::{now_ms, roles, time};

/// The audit entries of a definition that changed; a new project's
/// author becomes its owner (an admin need not).
pub(super) async fn record_apply(
    conn: &mut sqlx::AnyConnection,
    author: Author<'_>,
    bindings: &Bindings,
    who: &Identity<'_>,
    item: &Item,
    done: &Applied,
    runs: &[(String, String)],
) -> Result<()> {
    let created = done.change == Change::Created;
    match item.kind {
        DefinitionKind::Project => {
            let action = if created {
                AuditAction::ProjectCreate
            } else {
                AuditAction::ProjectUpdate
            };
            audit::record(
                conn,
                author.actor,
                action,
                Some(&item.name),
                &item.name,
                serde_json::json!({"revision": done.revision}),
            )
            .await?;
            if created && !bindings.is_admin(who) {
                let member = match who {
                    Identity::Person { name, .. } => Member::User(name.to_string()),
                    Identity::Client { name: Some(name) } => Member::Client(name.to_string()),
                    // A creator has a name: it holds the role by it.
                    _ => return Ok(()),
                };
                let owner = Membership {
                    member: member.clone(),
                    role: ProjectRole::Owner,
                    granted_by: author.actor.shown(),
                    granted_at: time(now_ms()),
                };
                roles::set_member(conn, &item.name, &owner).await?;
                audit::record(
                    conn,
                    author.actor,
                    AuditAction::MemberSet,
                    Some(&item.name),
                    &member.to_string(),
                    serde_json::json!({"role": ProjectRole::Owner, "why": "the creator of the project"}),
                )
                .await?;
            }
        }
        DefinitionKind::Pipeline => {
            let action = if created {
                AuditAction::PipelineCreate
            } else {
                AuditAction::PipelineUpdate
            };
            let users: Vec<&String> = users_of(runs, &item.name).collect();
            audit::record(
                conn,
                author.actor,
                action,
                None,
                &item.name,
                serde_json::json!({"revision": done.revision, "projects": users}),
            )
            .await?;
        }
    }
    Ok(())
}
