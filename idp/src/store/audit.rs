//! The IDP's audit log: written in the transaction of the change it
//! records, read newest first. There is no update or delete here (and the
//! database refuses both).

use ick_api::audit::{Actor, AuditAction, AuditEntry, Filter};
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::Store;
use crate::error::IdpError;

/// What a change is, for its entry: who, what, to what, the particulars.
#[derive(Debug, Clone)]
pub struct Note<'a> {
    pub actor: &'a Actor,
    pub action: AuditAction,
    /// A client's, user's or group's name.
    pub target: String,
    pub detail: Value,
}

impl<'a> Note<'a> {
    pub fn new(actor: &'a Actor, action: AuditAction, target: impl Into<String>) -> Note<'a> {
        Note {
            actor,
            action,
            target: target.into(),
            detail: Value::Object(Default::default()),
        }
    }

    pub fn with(mut self, detail: Value) -> Note<'a> {
        self.detail = detail;
        self
    }
}

/// Appends the entry of `note`, in the transaction of `conn`.
pub async fn append(conn: &mut AnyConnection, note: &Note<'_>) -> Result<(), IdpError> {
    sqlx::query(
        "INSERT INTO audit (at, actor, actor_name, address, action, target, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(super::now_ms())
    .bind(note.actor.id())
    .bind(&note.actor.name)
    .bind(&note.actor.address)
    .bind(note.action.as_str())
    .bind(&note.target)
    .bind(note.detail.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// Entries newest first: at most `filter.limit`.
    pub async fn audit(&self, filter: &Filter, limit: i64) -> Result<Vec<AuditEntry>, IdpError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, address, action, target, detail FROM audit \
             WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR actor_name = $2) \
             AND at >= $3 AND seq < $4 ORDER BY seq DESC LIMIT $5",
        )
        .bind(filter.actor.as_deref().unwrap_or(""))
        .bind(filter.actor_name.as_deref().unwrap_or(""))
        .bind(filter.since.unwrap_or(i64::MIN))
        .bind(filter.before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let detail: String = row.try_get("detail")?;
                Ok(AuditEntry {
                    seq: row.try_get("seq")?,
                    at: chrono::DateTime::from_timestamp_millis(row.try_get("at")?)
                        .unwrap_or_default(),
                    actor: row.try_get("actor")?,
                    address: row.try_get("address")?,
                    action: row
                        .try_get::<&str, _>("action")?
                        .parse()
                        .map_err(IdpError::Internal)?,
                    project: None,
                    target: row.try_get("target")?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| IdpError::Internal(format!("stored audit detail: {e}")))?,
                })
            })
            .collect()
    }
}
