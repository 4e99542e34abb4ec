//! Claims: the ready nodes a worker may take, and handing one out (the
//! next attempt, with a lease), with what its assignment carries of the
//! build.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{AnyConnection, Row};

use crate::error::Result;
use crate::store::{Store, from_json};

/// A ready node, as the claim query sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub kind: String,
    pub labels: Vec<String>,
    pub ready_at: i64,
}

/// The worker's action kinds as the claim queries match them: `,a,b,`.
pub fn kinds_list(kinds: &[String]) -> String {
    format!(",{},", kinds.join(","))
}

/// The oldest ready node pinned to `worker` (its pipeline's workspace is
/// there) of a kind it runs, locked; rows other claimers hold are skipped.
pub async fn pinned_candidate(
    store: &Store,
    conn: &mut AnyConnection,
    worker: &str,
    kinds: &str,
) -> Result<Option<Candidate>> {
    let sql = store.sql(
        "SELECT id, kind, labels, ready_at FROM nodes \
         WHERE status = 'queued' AND waiting = 0 AND held = 0 AND affinity = $1 \
         AND strpos($2, ',' || kind || ',') > 0 \
         ORDER BY ready_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
        "SELECT id, kind, labels, ready_at FROM nodes \
         WHERE status = 'queued' AND waiting = 0 AND held = 0 AND affinity = $1 \
         AND instr($2, ',' || kind || ',') > 0 \
         ORDER BY ready_at, id LIMIT 1",
    );
    let row = sqlx::query(sql)
        .bind(worker)
        .bind(kinds)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode_candidate).transpose()
}

/// The oldest ready node that needs no labels, of a kind the worker runs,
/// locked; rows other claimers hold are skipped. Locking one row only, so
/// that claimers never hide work from each other.
pub async fn unlabelled_candidate(
    store: &Store,
    conn: &mut AnyConnection,
    kinds: &str,
) -> Result<Option<Candidate>> {
    let sql = store.sql(
        "SELECT id, kind, labels, ready_at FROM nodes \
         WHERE status = 'queued' AND waiting = 0 AND held = 0 AND affinity IS NULL \
         AND labels = '[]' AND strpos($1, ',' || kind || ',') > 0 \
         ORDER BY ready_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
        "SELECT id, kind, labels, ready_at FROM nodes \
         WHERE status = 'queued' AND waiting = 0 AND held = 0 AND affinity IS NULL \
         AND labels = '[]' AND instr($1, ',' || kind || ',') > 0 \
         ORDER BY ready_at, id LIMIT 1",
    );
    let row = sqlx::query(sql).bind(kinds).fetch_optional(conn).await?;
    row.as_ref().map(decode_candidate).transpose()
}

/// Ready nodes that need labels, of a kind the worker runs, oldest first
/// after `(ready_at, id)`; not locked (see [`lock_if_ready`]).
pub async fn labelled_candidates(
    conn: &mut AnyConnection,
    kinds: &str,
    store: &Store,
    after: (i64, &str),
    limit: i64,
) -> Result<Vec<Candidate>> {
    let sql = store.sql(
        "SELECT id, kind, labels, ready_at FROM nodes \
         WHERE status = 'queued' AND waiting = 0 AND held = 0 AND affinity IS NULL \
         AND labels <> '[]' AND strpos($1, ',' || kind || ',') > 0 \
         AND (ready_at > $2 OR (ready_at = $2 AND id > $3)) \
         ORDER BY ready_at, id LIMIT $4",
        "SELECT id, kind, labels, ready_at FROM nodes \
         WHERE status = 'queued' AND waiting = 0 AND held = 0 AND affinity IS NULL \
         AND labels <> '[]' AND instr($1, ',' || kind || ',') > 0 \
         AND (ready_at > $2 OR (ready_at = $2 AND id > $3)) \
         ORDER BY ready_at, id LIMIT $4",
    );
    let rows = sqlx::query(sql)
        .bind(kinds)
        .bind(after.0)
        .bind(after.1)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(decode_candidate).collect()
}

/// Locks a node if it is still ready and no other claimer holds it.
pub async fn lock_if_ready(store: &Store, conn: &mut AnyConnection, id: &str) -> Result<bool> {
    let sql = store.sql(
        "SELECT id FROM nodes WHERE id = $1 AND status = 'queued' AND waiting = 0 AND held = 0 \
         AND affinity IS NULL FOR UPDATE SKIP LOCKED",
        "SELECT id FROM nodes WHERE id = $1 AND status = 'queued' AND waiting = 0 AND held = 0 \
         AND affinity IS NULL",
    );
    Ok(sqlx::query(sql)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .is_some())
}

fn decode_candidate(row: &sqlx::any::AnyRow) -> Result<Candidate> {
    Ok(Candidate {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        labels: from_json(row.try_get("labels")?)?,
        ready_at: row.try_get::<Option<i64>, _>("ready_at")?.unwrap_or(0),
    })
}

/// What a claimed node needs for its assignment.
#[derive(Debug, Clone)]
pub struct Started {
    pub build_id: String,
    pub attempt: i64,
    pub pipeline: String,
    pub index: i64,
    pub pipeline_len: i64,
    pub action: String,
    /// When it became ready to run (ms since the epoch).
    pub ready_at: Option<i64>,
}

/// Hands a queued node to `worker`: the next attempt, with a lease.
pub async fn start_node(
    conn: &mut AnyConnection,
    id: &str,
    worker: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<Started>> {
    let row = sqlx::query(
        "UPDATE nodes SET status = 'running', worker = $1, attempt = attempt + 1, lease_until = $2, \
         started_at = $3, ended_at = NULL, chunks = 0, cancel_requested = 0, outcome = NULL, \
         exit_code = NULL, message = NULL, outputs = NULL \
         WHERE id = $4 AND status = 'queued' \
         RETURNING build_id, attempt, pipeline, idx, pipeline_len, action, ready_at",
    )
    .bind(worker)
    .bind(lease_until)
    .bind(now)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode_started).transpose()
}

fn decode_started(r: &sqlx::any::AnyRow) -> Result<Started> {
    Ok(Started {
        build_id: r.try_get("build_id")?,
        attempt: r.try_get("attempt")?,
        pipeline: r.try_get("pipeline")?,
        index: r.try_get("idx")?,
        pipeline_len: r.try_get("pipeline_len")?,
        action: r.try_get("action")?,
        ready_at: r.try_get("ready_at")?,
    })
}

/// Hands out, in one statement, the oldest ready node pinned to `worker`,
/// else the oldest ready node that needs no labels, of a kind it runs
/// (`kinds` as [`kinds_list`] spells it): the next attempt, with a lease.
/// On Postgres the candidate row is locked with `SKIP LOCKED`, so
/// concurrent claims (from any controller) never get the same node, and
/// the statement commits by itself. (A pinned node's labels are not
/// checked: the worker ran its pipeline's earlier actions.)
pub async fn claim_next(
    store: &Store,
    conn: &mut AnyConnection,
    worker: &str,
    kinds: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<(String, Started)>> {
    let sql = store.sql(
        "UPDATE nodes SET status = 'running', worker = $1, attempt = attempt + 1, lease_until = $2, \
         started_at = $3, ended_at = NULL, chunks = 0, cancel_requested = 0, outcome = NULL, \
         exit_code = NULL, message = NULL, outputs = NULL \
         WHERE id = COALESCE( \
           (SELECT id FROM nodes WHERE status = 'queued' AND waiting = 0 AND held = 0 \
            AND affinity = $1 AND strpos($4, ',' || kind || ',') > 0 \
            ORDER BY ready_at, id LIMIT 1 FOR UPDATE SKIP LOCKED), \
           (SELECT id FROM nodes WHERE status = 'queued' AND waiting = 0 AND held = 0 \
            AND affinity IS NULL AND labels = '[]' AND strpos($4, ',' || kind || ',') > 0 \
            ORDER BY ready_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)) \
         AND status = 'queued' \
         RETURNING id, build_id, attempt, pipeline, idx, pipeline_len, action, ready_at",
        "UPDATE nodes SET status = 'running', worker = $1, attempt = attempt + 1, lease_until = $2, \
         started_at = $3, ended_at = NULL, chunks = 0, cancel_requested = 0, outcome = NULL, \
         exit_code = NULL, message = NULL, outputs = NULL \
         WHERE id = COALESCE( \
           (SELECT id FROM nodes WHERE status = 'queued' AND waiting = 0 AND held = 0 \
            AND affinity = $1 AND instr($4, ',' || kind || ',') > 0 \
            ORDER BY ready_at, id LIMIT 1), \
           (SELECT id FROM nodes WHERE status = 'queued' AND waiting = 0 AND held = 0 \
            AND affinity IS NULL AND labels = '[]' AND instr($4, ',' || kind || ',') > 0 \
            ORDER BY ready_at, id LIMIT 1)) \
         AND status = 'queued' \
         RETURNING id, build_id, attempt, pipeline, idx, pipeline_len, action, ready_at",
    );
    let row = sqlx::query(sql)
        .bind(worker)
        .bind(lease_until)
        .bind(now)
        .bind(kinds)
        .fetch_optional(conn)
        .await?;
    row.map(|r| Ok((r.try_get("id")?, decode_started(&r)?)))
        .transpose()
}

/// The parts of a build an assignment carries (they never change).
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub project: String,
    pub number: i64,
    pub parameters: BTreeMap<String, Value>,
}

pub async fn build_info(conn: &mut AnyConnection, build_id: &str) -> Result<Option<BuildInfo>> {
    let row = sqlx::query("SELECT project, number, parameters FROM builds WHERE id = $1")
        .bind(build_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(BuildInfo {
            project: r.try_get("project")?,
            number: r.try_get("number")?,
            parameters: from_json(r.try_get("parameters")?)?,
        })
    })
    .transpose()
}

/// The first hand-out of a build makes it running; when it was triggered,
/// if this made it so. (A no-op, taking no lock, once it is.)
pub async fn mark_build_running(
    conn: &mut AnyConnection,
    build_id: &str,
    now: i64,
) -> Result<Option<i64>> {
    let row = sqlx::query(
        "UPDATE builds SET status = 'running', started_at = $1 WHERE id = $2 AND status = 'queued' \
         RETURNING created_at",
    )
    .bind(now)
    .bind(build_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.try_get("created_at")).transpose()?)
}
