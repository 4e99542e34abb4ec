//! Workers as stored: what they said of themselves when they claimed,
//! their presence connections, and their leaving.

use ick_api::work::WorkerState;
use sqlx::{AnyConnection, Row};

use crate::error::Result;
use crate::store::{from_json, to_json};

/// A worker as stored.
#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub name: String,
    pub labels: Vec<String>,
    pub kinds: Vec<String>,
    pub slots: i64,
    pub free_slots: i64,
    pub last_seen: i64,
    /// What it last said of itself: online, draining or gone.
    pub state: WorkerState,
    /// When its presence connection dropped, while it stays dropped.
    pub disconnected_at: Option<i64>,
    /// When it said it left.
    pub left_at: Option<i64>,
}

impl WorkerRow {
    /// Since when its running actions have no one to finish them, if so:
    /// it left, or its presence connection dropped.
    pub fn lost_at(&self) -> Option<i64> {
        match self.state {
            WorkerState::Gone => self.left_at.or(Some(self.last_seen)),
            _ => self.disconnected_at,
        }
    }

    /// Since when it takes no new work, if so: it said it was leaving
    /// (draining or gone), or its presence connection dropped.
    pub fn away_since(&self) -> Option<i64> {
        let left = match self.state {
            WorkerState::Online => None,
            _ => self.left_at.or(Some(self.last_seen)),
        };
        match (left, self.disconnected_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn worker_state(text: &str) -> WorkerState {
    match text {
        "draining" => WorkerState::Draining,
        "gone" => WorkerState::Gone,
        _ => WorkerState::Online,
    }
}

/// Records that a worker asked for work, with what it said about itself:
/// it is online.
pub async fn upsert_worker(conn: &mut AnyConnection, w: &WorkerRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO workers (name, labels, kinds, slots, free_slots, first_seen, last_seen) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (name) DO UPDATE SET labels = excluded.labels, kinds = excluded.kinds, \
         slots = excluded.slots, free_slots = excluded.free_slots, last_seen = excluded.last_seen, \
         state = 'online', left_at = NULL",
    )
    .bind(&w.name)
    .bind(to_json(&w.labels)?)
    .bind(to_json(&w.kinds)?)
    .bind(w.slots)
    .bind(w.free_slots)
    .bind(w.last_seen)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that a worker is alive.
pub async fn touch_worker(conn: &mut AnyConnection, name: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE workers SET last_seen = $1 WHERE name = $2 AND last_seen < $1")
        .bind(now)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// A worker's presence connection `session` opened: it is online, or
/// still draining.
pub async fn open_presence(
    conn: &mut AnyConnection,
    name: &str,
    session: &str,
    draining: bool,
    now: i64,
) -> Result<()> {
    let state = if draining { "draining" } else { "online" };
    sqlx::query(
        "INSERT INTO workers (name, labels, kinds, slots, free_slots, first_seen, last_seen, \
         state, session) VALUES ($1, '[]', '[]', 0, 0, $2, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen, \
         state = excluded.state, session = excluded.session, disconnected_at = NULL, \
         left_at = CASE WHEN excluded.state = 'draining' THEN workers.left_at ELSE NULL END",
    )
    .bind(name)
    .bind(now)
    .bind(state)
    .bind(session)
    .execute(conn)
    .await?;
    Ok(())
}

/// The presence connection `session` dropped at `now` (unless another
/// replaced it meanwhile).
pub async fn drop_presence(
    conn: &mut AnyConnection,
    name: &str,
    session: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE workers SET disconnected_at = $3 \
         WHERE name = $1 AND session = $2 AND disconnected_at IS NULL",
    )
    .bind(name)
    .bind(session)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// A worker said it is draining (since when is kept) or gone (from now);
/// `false` if it is unknown.
pub async fn leave(
    conn: &mut AnyConnection,
    name: &str,
    state: WorkerState,
    now: i64,
) -> Result<bool> {
    let gone = state == WorkerState::Gone;
    let done = sqlx::query(
        "UPDATE workers SET state = $2, free_slots = 0, last_seen = $3, \
         left_at = CASE WHEN $4 = 1 THEN $3 ELSE COALESCE(left_at, $3) END, \
         session = CASE WHEN $4 = 1 THEN NULL ELSE session END \
         WHERE name = $1",
    )
    .bind(name)
    .bind(state.as_str())
    .bind(now)
    .bind(i64::from(gone))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

macro_rules! worker_columns {
    () => {
        "SELECT name, labels, kinds, slots, free_slots, last_seen, state, disconnected_at, \
         left_at FROM workers "
    };
}

fn decode_worker(r: &sqlx::any::AnyRow) -> Result<WorkerRow> {
    Ok(WorkerRow {
        name: r.try_get("name")?,
        labels: from_json(r.try_get("labels")?)?,
        kinds: from_json(r.try_get("kinds")?)?,
        slots: r.try_get("slots")?,
        free_slots: r.try_get("free_slots")?,
        last_seen: r.try_get("last_seen")?,
        state: worker_state(r.try_get("state")?),
        disconnected_at: r.try_get("disconnected_at")?,
        left_at: r.try_get("left_at")?,
    })
}

/// Workers, by name; only those seen since `since` if given.
pub async fn workers(conn: &mut AnyConnection, since: Option<i64>) -> Result<Vec<WorkerRow>> {
    let rows = sqlx::query(concat!(
        worker_columns!(),
        "WHERE last_seen >= $1 ORDER BY name"
    ))
    .bind(since.unwrap_or(i64::MIN))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_worker).collect()
}

/// One worker.
pub async fn worker(conn: &mut AnyConnection, name: &str) -> Result<Option<WorkerRow>> {
    let row = sqlx::query(concat!(worker_columns!(), "WHERE name = $1"))
        .bind(name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode_worker).transpose()
}

/// Running nodes and their workers.
pub async fn running_nodes(conn: &mut AnyConnection) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT worker, id FROM nodes WHERE status = 'running' AND worker IS NOT NULL ORDER BY started_at",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("worker")?, r.try_get("id")?)))
        .collect()
}
