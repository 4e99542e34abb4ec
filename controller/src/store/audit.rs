//! The audit log: written in the transaction of the change it records,
//! read newest first. There is no update or delete here (and the database
//! refuses both).

use ick_api::controller::{AuditAction, AuditEntry};
use sqlx::{AnyConnection, Row};

use super::{from_json, time};
use crate::error::{ControllerError, Result};

/// An entry to write.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub at: i64,
    /// `user:NAME`, `client:NAME` or `webhook:FORGE`.
    pub actor: &'a str,
    /// The NAME of `actor`.
    pub actor_name: &'a str,
    pub address: &'a str,
    pub action: AuditAction,
    pub project: Option<&'a str>,
    pub target: &'a str,
    /// JSON.
    pub detail: String,
}

/// Appends an entry.
pub async fn append(conn: &mut AnyConnection, entry: &NewEntry<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (at, actor, actor_name, address, action, project, target, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry.at)
    .bind(entry.actor)
    .bind(entry.actor_name)
    .bind(entry.address)
    .bind(entry.action.as_str())
    .bind(entry.project)
    .bind(entry.target)
    .bind(&entry.detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    pub project: Option<&'a str>,
    /// A whole actor (`user:alice`).
    pub actor: Option<&'a str>,
    /// An actor's name of any kind (`alice`).
    pub actor_name: Option<&'a str>,
    /// From this time on (ms).
    pub since: Option<i64>,
    /// Older than this entry.
    pub before: Option<i64>,
    pub limit: i64,
}

/// Entries newest first.
pub async fn list(conn: &mut AnyConnection, filter: &Filter<'_>) -> Result<Vec<AuditEntry>> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, address, action, project, target, detail FROM audit \
         WHERE ($1 = '' OR project = $1) AND ($2 = '' OR actor = $2) \
         AND ($3 = '' OR actor_name = $3) AND at >= $4 AND seq < $5 \
         ORDER BY seq DESC LIMIT $6",
    )
    .bind(filter.project.unwrap_or(""))
    .bind(filter.actor.unwrap_or(""))
    .bind(filter.actor_name.unwrap_or(""))
    .bind(filter.since.unwrap_or(i64::MIN))
    .bind(filter.before.unwrap_or(i64::MAX))
    .bind(filter.limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                seq: row.try_get("seq")?,
                at: time(row.try_get("at")?),
                actor: row.try_get("actor")?,
                address: row.try_get("address")?,
                action: row
                    .try_get::<&str, _>("action")?
                    .parse()
                    .map_err(ControllerError::Internal)?,
                project: row.try_get("project")?,
                target: row.try_get("target")?,
                detail: from_json(row.try_get("detail")?)?,
            })
        })
        .collect()
}
