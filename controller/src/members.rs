//! Members of projects and global roles: changed in one transaction with
//! their audit entry, then the access cache (here and on the other
//! controllers) reads them again. A change that changes nothing is not
//! written (and not in the audit log).

use ick_api::controller::{
    AuditAction, DefinitionKind, GlobalRole, Member, MemberRequest, Membership, ProjectRole,
    RoleBinding, RoleRequest,
};

use crate::access::Actor;
use crate::audit;
use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::store::definitions as defs;
use crate::store::roles::{self as db, GlobalRow};
use crate::store::{now_ms, retrying, time};

/// What a `PUT` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// It was not a member (201).
    Added,
    /// It had another role, or the same (200).
    Kept,
}

/// `GET /projects/{name}/members` (the caller's right to read checked).
pub async fn list(core: &Core, project: &str) -> Result<Vec<Membership>> {
    let mut conn = core.store.conn().await?;
    if defs::get(&mut conn, DefinitionKind::Project, project)
        .await?
        .is_none()
    {
        return Err(ControllerError::NotFound(format!("no project {project:?}")));
    }
    db::members(&mut conn, project).await
}

/// `PUT /projects/{name}/members` (the caller is its owner, checked).
pub async fn set(
    core: &Core,
    project: &str,
    request: &MemberRequest,
    actor: &Actor,
) -> Result<(Put, Membership)> {
    let (put, membership, changed) = retrying(|| async {
        let mut tx = core.store.write().await?;
        if defs::get_for_update(&core.store, &mut tx, DefinitionKind::Project, project)
            .await?
            .is_none()
        {
            return Err(ControllerError::NotFound(format!("no project {project:?}")));
        }
        let before = db::member(&mut tx, project, &request.member).await?;
        if let Some(b) = before.as_ref().filter(|b| b.role == request.role) {
            return Ok((Put::Kept, b.clone(), false));
        }
        if let Some(b) = &before {
            keep_an_owner(&mut tx, project, b).await?;
        }
        let membership = Membership {
            member: request.member.clone(),
            role: request.role,
            granted_by: actor.shown(),
            granted_at: time(now_ms()),
        };
        db::set_member(&mut tx, project, &membership).await?;
        audit::record(
            &mut tx,
            actor,
            AuditAction::MemberSet,
            Some(project),
            &request.member.to_string(),
            serde_json::json!({
                "role": request.role,
                "previous": before.as_ref().map(|b| b.role),
            }),
        )
        .await?;
        tx.commit().await?;
        let put = if before.is_some() {
            Put::Kept
        } else {
            Put::Added
        };
        Ok((put, membership, true))
    })
    .await?;
    if changed {
        core.access.changed();
    }
    Ok((put, membership))
}

/// `DELETE /projects/{name}/members/{member}` (the caller is its owner).
pub async fn remove(core: &Core, project: &str, member: &Member, actor: &Actor) -> Result<()> {
    retrying(|| async {
        let mut tx = core.store.write().await?;
        // The project's row locked: two owners who remove each other at
        // once cannot both be the one left.
        defs::get_for_update(&core.store, &mut tx, DefinitionKind::Project, project).await?;
        let Some(before) = db::member(&mut tx, project, member).await? else {
            return Err(ControllerError::NotFound(format!(
                "{member} is not a member of project {project:?}"
            )));
        };
        keep_an_owner(&mut tx, project, &before).await?;
        db::remove_member(&mut tx, project, member).await?;
        audit::record(
            &mut tx,
            actor,
            AuditAction::MemberRemove,
            Some(project),
            &member.to_string(),
            serde_json::json!({"role": before.role}),
        )
        .await?;
        tx.commit().await
    })
    .await?;
    core.access.changed();
    Ok(())
}

/// Refuses to take the role owner from `member` (removed, or given
/// another role) when it is the project's last owner: a project with
/// owners keeps one, who may manage its members. (A project an admin made
/// may have none; admins manage it.)
async fn keep_an_owner(
    conn: &mut sqlx::AnyConnection,
    project: &str,
    member: &Membership,
) -> Result<()> {
    if member.role != ProjectRole::Owner {
        return Ok(());
    }
    let owners = db::members(conn, project)
        .await?
        .iter()
        .filter(|m| m.role == ProjectRole::Owner)
        .count();
    if owners <= 1 {
        return Err(ControllerError::Conflict(format!(
            "{} is the last owner of project {project:?}: make another member owner first",
            member.member
        )));
    }
    Ok(())
}

/// `GET /roles`: the config's admins, then those granted through the API.
pub async fn roles(core: &Core) -> Result<Vec<RoleBinding>> {
    let mut list: Vec<RoleBinding> = core
        .access
        .config_admins()
        .iter()
        .map(|member| RoleBinding {
            member: member.clone(),
            role: GlobalRole::Admin,
            from_config: true,
            granted_by: None,
            granted_at: None,
        })
        .collect();
    let mut conn = core.store.conn().await?;
    list.extend(
        db::global_roles(&mut conn)
            .await?
            .into_iter()
            .map(|row| RoleBinding {
                member: row.member,
                role: row.role,
                from_config: false,
                granted_by: Some(row.granted_by),
                granted_at: Some(time(row.granted_at)),
            }),
    );
    Ok(list)
}

/// `PUT /roles` (the caller is an admin): `true` if it was granted now.
pub async fn grant(core: &Core, request: &RoleRequest, actor: &Actor) -> Result<bool> {
    let row = GlobalRow {
        member: request.member.clone(),
        role: request.role,
        granted_by: actor.shown(),
        granted_at: now_ms(),
    };
    let granted = retrying(|| async {
        let mut tx = core.store.write().await?;
        if !db::grant(&mut tx, &row).await? {
            return Ok(false);
        }
        audit::record(
            &mut tx,
            actor,
            AuditAction::RoleGrant,
            None,
            &request.member.to_string(),
            serde_json::json!({"role": request.role}),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    })
    .await?;
    if granted {
        core.access.changed();
    }
    Ok(granted)
}

/// `DELETE /roles/{member}/{role}` (the caller is an admin). The config's
/// admins stay: 409.
pub async fn revoke(core: &Core, member: &Member, role: GlobalRole, actor: &Actor) -> Result<()> {
    if role == GlobalRole::Admin && core.access.config_admins().contains(member) {
        return Err(ControllerError::Conflict(format!(
            "{member} is an admin by the controller's config (admins:): change the config to \
             revoke it"
        )));
    }
    retrying(|| async {
        let mut tx = core.store.write().await?;
        if !db::revoke(&mut tx, member, role).await? {
            return Err(ControllerError::NotFound(format!(
                "{member} does not have the global role {role}"
            )));
        }
        audit::record(
            &mut tx,
            actor,
            AuditAction::RoleRevoke,
            None,
            &member.to_string(),
            serde_json::json!({"role": role}),
        )
        .await?;
        tx.commit().await
    })
    .await?;
    core.access.changed();
    Ok(())
}
