//! The mail outbox. A row is written in the transaction that ends a build;
//! senders claim due rows one at a time with a lease (`SKIP LOCKED` on
//! Postgres, so controllers sharing the database never take the same row),
//! and the claim's `attempts` fences what they write afterwards.

use ick_api::controller::{BuildStatus, Notification, NotificationStatus};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Store, from_json, time, to_json};
use crate::error::{ControllerError, Result};

/// A notification as stored.
#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub seq: i64,
    pub id: String,
    pub build_id: String,
    pub project: String,
    pub number: i64,
    pub run: i64,
    pub build_status: BuildStatus,
    pub recipients: Vec<String>,
    /// JSON of `crate::notify::Details`.
    pub details: String,
    pub status: NotificationStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

impl NotificationRow {
    /// The wire form.
    pub fn view(&self) -> Notification {
        Notification {
            id: self.id.clone(),
            build_id: self.build_id.clone(),
            project: self.project.clone(),
            number: self.number,
            run: self.run,
            build_status: self.build_status,
            recipients: self.recipients.clone(),
            status: self.status,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            created_at: time(self.created_at),
            next_attempt_at: (self.status == NotificationStatus::Pending)
                .then(|| time(self.next_attempt_at)),
            sent_at: self.sent_at.map(time),
        }
    }
}

macro_rules! columns {
    () => {
        "seq, id, build_id, project, number, run, build_status, recipients, details, status, \
         attempts, next_attempt_at, lease_until, last_error, created_at, sent_at"
    };
}

fn parse<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(ControllerError::Internal)
}

fn decode(row: &AnyRow) -> Result<NotificationRow> {
    Ok(NotificationRow {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        build_id: row.try_get("build_id")?,
        project: row.try_get("project")?,
        number: row.try_get("number")?,
        run: row.try_get("run")?,
        build_status: parse(row.try_get::<&str, _>("build_status")?)?,
        recipients: from_json(row.try_get("recipients")?)?,
        details: row.try_get("details")?,
        status: parse(row.try_get::<&str, _>("status")?)?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        lease_until: row.try_get("lease_until")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
    })
}

/// Writes a new pending notification, due at once.
pub async fn insert(conn: &mut AnyConnection, n: &NotificationRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO notifications (id, build_id, project, number, run, build_status, recipients, \
         details, status, attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $10)",
    )
    .bind(&n.id)
    .bind(&n.build_id)
    .bind(&n.project)
    .bind(n.number)
    .bind(n.run)
    .bind(n.build_status.as_str())
    .bind(to_json(&n.recipients)?)
    .bind(&n.details)
    .bind(n.next_attempt_at)
    .bind(n.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Claims the pending notification due first, if any is due and not held
/// by another sender: it is held until `lease_until` and its attempt is
/// counted. One self-committing statement on Postgres.
pub async fn claim_next(
    store: &Store,
    conn: &mut AnyConnection,
    now: i64,
    lease_until: i64,
) -> Result<Option<NotificationRow>> {
    let sql = store.sql(
        concat!(
            "UPDATE notifications SET lease_until = $1, attempts = attempts + 1 WHERE id = \
             (SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at <= $2 \
             AND (lease_until IS NULL OR lease_until < $2) ORDER BY next_attempt_at, seq LIMIT 1 \
             FOR UPDATE SKIP LOCKED) RETURNING ",
            columns!()
        ),
        concat!(
            "UPDATE notifications SET lease_until = $1, attempts = attempts + 1 WHERE id = \
             (SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at <= $2 \
             AND (lease_until IS NULL OR lease_until < $2) ORDER BY next_attempt_at, seq LIMIT 1) \
             RETURNING ",
            columns!()
        ),
    );
    let row = sqlx::query(sql)
        .bind(lease_until)
        .bind(now)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// Marks a claimed notification sent; `false` if the claim was lost.
pub async fn mark_sent(
    conn: &mut AnyConnection,
    id: &str,
    attempts: i64,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE notifications SET status = 'sent', sent_at = $1, lease_until = NULL, \
         last_error = NULL WHERE id = $2 AND attempts = $3 AND status = 'pending'",
    )
    .bind(now)
    .bind(id)
    .bind(attempts)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failed try of a claimed notification: tried again at
/// `next_attempt_at`, or kept as failed when that is `None`.
pub async fn mark_failed_try(
    conn: &mut AnyConnection,
    id: &str,
    attempts: i64,
    error: &str,
    next_attempt_at: Option<i64>,
) -> Result<()> {
    match next_attempt_at {
        Some(at) => {
            sqlx::query(
                "UPDATE notifications SET next_attempt_at = $1, lease_until = NULL, \
                 last_error = $2 WHERE id = $3 AND attempts = $4 AND status = 'pending'",
            )
            .bind(at)
            .bind(error)
            .bind(id)
            .bind(attempts)
            .execute(conn)
            .await?;
        }
        None => {
            sqlx::query(
                "UPDATE notifications SET status = 'failed', lease_until = NULL, last_error = $1 \
                 WHERE id = $2 AND attempts = $3 AND status = 'pending'",
            )
            .bind(error)
            .bind(id)
            .bind(attempts)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// When the next pending notification is due, if any is.
pub async fn next_due(conn: &mut AnyConnection) -> Result<Option<i64>> {
    let row = sqlx::query(
        "SELECT MIN(CASE WHEN lease_until IS NULL OR lease_until < next_attempt_at \
         THEN next_attempt_at ELSE lease_until END) AS due FROM notifications WHERE status = 'pending'",
    )
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("due")?)
}

/// Whether any notification waits to be sent.
pub async fn any_pending(conn: &mut AnyConnection) -> Result<bool> {
    let row = sqlx::query("SELECT 1 AS one FROM notifications WHERE status = 'pending' LIMIT 1")
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// A page of notifications, newest first.
pub async fn list(
    conn: &mut AnyConnection,
    statuses: &[NotificationStatus],
    project: Option<&str>,
    readable: &crate::access::Readable,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<NotificationRow>> {
    let status_list = super::status_list(statuses.iter().map(|s| s.as_str()));
    let (all, only) = super::readable_param(readable);
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM notifications WHERE ($1 = ',,' OR $1 LIKE '%,' || status || ',%') \
         AND ($2 = '' OR project = $2) AND seq < $3 \
         AND ($5 = 1 OR instr($6, ',' || project || ',') > 0) ORDER BY seq DESC LIMIT $4"
    ))
    .bind(status_list)
    .bind(project.unwrap_or(""))
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .bind(all)
    .bind(only)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}
