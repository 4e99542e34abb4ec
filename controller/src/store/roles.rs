//! Who may do what, as stored: projects' visibility and members, and the
//! global roles granted through the API. `crate::access` reads it all at
//! once into its cache and decides from there.

use ick_api::controller::{GlobalRole, Member, Membership, ProjectRole, Visibility};
use sqlx::{AnyConnection, Row};

use super::time;
use crate::error::{ControllerError, Result};

fn parse<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse()
        .map_err(|e| ControllerError::Internal(format!("stored role data: {e}")))
}

/// Everything the access cache holds.
#[derive(Debug, Default)]
pub struct AllBindings {
    /// Each project and its visibility.
    pub projects: Vec<(String, Visibility)>,
    /// (project, member, role).
    pub members: Vec<(String, Member, ProjectRole)>,
    /// The global roles of the API (not the config's).
    pub global: Vec<(Member, GlobalRole)>,
}

/// Reads every project's visibility, every member and every global role.
pub async fn load(conn: &mut AnyConnection) -> Result<AllBindings> {
    let mut all = AllBindings::default();
    for row in sqlx::query("SELECT name, visibility FROM projects")
        .fetch_all(&mut *conn)
        .await?
    {
        all.projects.push((
            row.try_get("name")?,
            parse(row.try_get::<&str, _>("visibility")?)?,
        ));
    }
    for row in sqlx::query("SELECT project, member, role FROM project_members")
        .fetch_all(&mut *conn)
        .await?
    {
        all.members.push((
            row.try_get("project")?,
            parse(row.try_get::<&str, _>("member")?)?,
            parse(row.try_get::<&str, _>("role")?)?,
        ));
    }
    for row in sqlx::query("SELECT member, role FROM global_roles")
        .fetch_all(&mut *conn)
        .await?
    {
        all.global.push((
            parse(row.try_get::<&str, _>("member")?)?,
            parse(row.try_get::<&str, _>("role")?)?,
        ));
    }
    Ok(all)
}

/// Sets a project's visibility (after its row is written).
pub async fn set_visibility(
    conn: &mut AnyConnection,
    project: &str,
    visibility: Visibility,
) -> Result<()> {
    sqlx::query("UPDATE projects SET visibility = $1 WHERE name = $2")
        .bind(visibility.as_str())
        .bind(project)
        .execute(conn)
        .await?;
    Ok(())
}

fn decode_membership(row: &sqlx::any::AnyRow) -> Result<Membership> {
    Ok(Membership {
        member: parse(row.try_get::<&str, _>("member")?)?,
        role: parse(row.try_get::<&str, _>("role")?)?,
        granted_by: row.try_get("granted_by")?,
        granted_at: time(row.try_get("granted_at")?),
    })
}

/// A project's members, by member.
pub async fn members(conn: &mut AnyConnection, project: &str) -> Result<Vec<Membership>> {
    let rows = sqlx::query(
        "SELECT member, role, granted_by, granted_at FROM project_members \
         WHERE project = $1 ORDER BY member",
    )
    .bind(project)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_membership).collect()
}

/// One member of a project.
pub async fn member(
    conn: &mut AnyConnection,
    project: &str,
    member: &Member,
) -> Result<Option<Membership>> {
    let row = sqlx::query(
        "SELECT member, role, granted_by, granted_at FROM project_members \
         WHERE project = $1 AND member = $2",
    )
    .bind(project)
    .bind(member.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode_membership).transpose()
}

/// Gives `member` `role` on `project`, replacing the role it had.
pub async fn set_member(
    conn: &mut AnyConnection,
    project: &str,
    membership: &Membership,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO project_members (project, member, role, granted_by, granted_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project, member) DO UPDATE SET \
         role = excluded.role, granted_by = excluded.granted_by, granted_at = excluded.granted_at",
    )
    .bind(project)
    .bind(membership.member.to_string())
    .bind(membership.role.as_str())
    .bind(&membership.granted_by)
    .bind(membership.granted_at.timestamp_millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes a member; `false` if it was none.
pub async fn remove_member(
    conn: &mut AnyConnection,
    project: &str,
    member: &Member,
) -> Result<bool> {
    let done = sqlx::query("DELETE FROM project_members WHERE project = $1 AND member = $2")
        .bind(project)
        .bind(member.to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// A global role as stored.
#[derive(Debug, Clone)]
pub struct GlobalRow {
    pub member: Member,
    pub role: GlobalRole,
    pub granted_by: String,
    pub granted_at: i64,
}

/// The global roles granted through the API, by member.
pub async fn global_roles(conn: &mut AnyConnection) -> Result<Vec<GlobalRow>> {
    let rows = sqlx::query(
        "SELECT member, role, granted_by, granted_at FROM global_roles ORDER BY member, role",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(GlobalRow {
                member: parse(row.try_get::<&str, _>("member")?)?,
                role: parse(row.try_get::<&str, _>("role")?)?,
                granted_by: row.try_get("granted_by")?,
                granted_at: row.try_get("granted_at")?,
            })
        })
        .collect()
}

/// Grants a global role; `false` if the member had it already (nothing
/// is written then).
pub async fn grant(conn: &mut AnyConnection, row: &GlobalRow) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO global_roles (member, role, granted_by, granted_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (member, role) DO NOTHING",
    )
    .bind(row.member.to_string())
    .bind(row.role.as_str())
    .bind(&row.granted_by)
    .bind(row.granted_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Revokes a global role; `false` if the member did not have it.
pub async fn revoke(conn: &mut AnyConnection, member: &Member, role: GlobalRole) -> Result<bool> {
    let done = sqlx::query("DELETE FROM global_roles WHERE member = $1 AND role = $2")
        .bind(member.to_string())
        .bind(role.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}
