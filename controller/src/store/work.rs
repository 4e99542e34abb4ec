//! The work queue: claims, leases, output, endings, workers.

use std::collections::BTreeMap;

use ick_api::controller::LostAttempt;
use ick_api::work::{Outcome, OutputChunk, Stream, WorkerState};
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::builds::outcome_str;
use super::{Store, from_json, to_json};
use crate::error::Result;

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
         RETURNING build_id, attempt, pipeline, idx, pipeline_len, action",
    )
    .bind(worker)
    .bind(lease_until)
    .bind(now)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(Started {
            build_id: r.try_get("build_id")?,
            attempt: r.try_get("attempt")?,
            pipeline: r.try_get("pipeline")?,
            index: r.try_get("idx")?,
            pipeline_len: r.try_get("pipeline_len")?,
            action: r.try_get("action")?,
        })
    })
    .transpose()
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
         RETURNING id, build_id, attempt, pipeline, idx, pipeline_len, action",
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
         RETURNING id, build_id, attempt, pipeline, idx, pipeline_len, action",
    );
    let row = sqlx::query(sql)
        .bind(worker)
        .bind(lease_until)
        .bind(now)
        .bind(kinds)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok((
            r.try_get("id")?,
            Started {
                build_id: r.try_get("build_id")?,
                attempt: r.try_get("attempt")?,
                pipeline: r.try_get("pipeline")?,
                index: r.try_get("idx")?,
                pipeline_len: r.try_get("pipeline_len")?,
                action: r.try_get("action")?,
            },
        ))
    })
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

/// The first hand-out of a build makes it running. (A no-op, taking no
/// lock, once it is.)
pub async fn mark_build_running(
    conn: &mut AnyConnection,
    build_id: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE builds SET status = 'running', started_at = $1 WHERE id = $2 AND status = 'queued'",
    )
    .bind(now)
    .bind(build_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// What a renewed lease answers.
pub struct Renewed {
    pub cancel: bool,
    pub worker: Option<String>,
}

/// Renews the lease of a running node's current attempt; `None` if the
/// attempt is not current or the node not running.
pub async fn renew_lease(
    conn: &mut AnyConnection,
    id: &str,
    attempt: i64,
    holder: Option<&str>,
    until: i64,
) -> Result<Option<Renewed>> {
    // A running node always has its worker; `holder` None matches any.
    let row = sqlx::query(
        "UPDATE nodes SET lease_until = $1 WHERE id = $2 AND attempt = $3 \
         AND status = 'running' AND worker = COALESCE($4, worker) \
         RETURNING cancel_requested, worker, build_id",
    )
    .bind(until)
    .bind(id)
    .bind(attempt)
    .bind(holder)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let node_cancel = row.try_get::<i64, _>("cancel_requested")? != 0;
    let build_id: String = row.try_get("build_id")?;
    let build = sqlx::query("SELECT cancel_requested FROM builds WHERE id = $1")
        .bind(&build_id)
        .fetch_one(conn)
        .await?;
    let build_cancel = build.try_get::<i64, _>("cancel_requested")? != 0;
    Ok(Some(Renewed {
        cancel: node_cancel || build_cancel,
        worker: row.try_get("worker")?,
    }))
}

/// A node's state as the work calls check it.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub build_id: String,
    pub status: String,
    pub attempt: i64,
    pub chunks: i64,
    pub worker: Option<String>,
}

/// The node's state, locked until the transaction ends (Postgres).
pub async fn lock_node_state(
    store: &Store,
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<NodeState>> {
    let sql = store.sql(
        "SELECT build_id, status, attempt, chunks, worker FROM nodes WHERE id = $1 FOR UPDATE",
        "SELECT build_id, status, attempt, chunks, worker FROM nodes WHERE id = $1",
    );
    let row = sqlx::query(sql).bind(id).fetch_optional(conn).await?;
    row.map(|r| {
        Ok(NodeState {
            build_id: r.try_get("build_id")?,
            status: r.try_get("status")?,
            attempt: r.try_get("attempt")?,
            chunks: r.try_get("chunks")?,
            worker: r.try_get("worker")?,
        })
    })
    .transpose()
}

pub fn stream_str(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}

/// Stores chunks of an attempt; answers how many were new (resent ones are
/// kept once).
pub async fn insert_chunks(
    conn: &mut AnyConnection,
    build_id: &str,
    node_id: &str,
    attempt: i64,
    chunks: &[OutputChunk],
    now: i64,
) -> Result<i64> {
    let mut inserted = 0;
    for batch in chunks.chunks(100) {
        let sql = format!(
            "INSERT INTO chunks (node_id, attempt, seq, build_id, stream, data, at) VALUES {} \
             ON CONFLICT (node_id, attempt, seq) DO NOTHING",
            super::values_placeholders(batch.len(), 7)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for c in batch {
            query = query
                .bind(node_id.to_string())
                .bind(attempt)
                .bind(c.seq)
                .bind(build_id.to_string())
                .bind(stream_str(c.stream))
                .bind(c.data.clone())
                .bind(now);
        }
        inserted += query.execute(&mut *conn).await?.rows_affected() as i64;
    }
    Ok(inserted)
}

/// Counts new chunks and renews the lease.
pub async fn add_chunks(
    conn: &mut AnyConnection,
    id: &str,
    added: i64,
    lease_until: i64,
) -> Result<()> {
    sqlx::query("UPDATE nodes SET chunks = chunks + $1, lease_until = $2 WHERE id = $3")
        .bind(added)
        .bind(lease_until)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// How a node ended.
pub struct Ending<'a> {
    pub status: &'a str,
    pub outcome: Option<Outcome>,
    pub exit_code: Option<i32>,
    pub message: Option<&'a str>,
    pub outputs: &'a BTreeMap<String, String>,
}

pub async fn end_node(
    conn: &mut AnyConnection,
    id: &str,
    ending: &Ending<'_>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE nodes SET status = $1, ended_at = $2, outcome = $3, exit_code = $4, message = $5, \
         outputs = $6, lease_until = NULL WHERE id = $7",
    )
    .bind(ending.status)
    .bind(now)
    .bind(ending.outcome.map(outcome_str))
    .bind(ending.exit_code.map(i64::from))
    .bind(ending.message)
    .bind(to_json(ending.outputs)?)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// What an ended node's dependents need to know.
pub struct Ended {
    pub build_id: String,
    pub pipeline: String,
    pub index: i64,
    pub worker: Option<String>,
}

/// Ends attempt `attempt` of a running node if it holds at least `chunks`
/// chunks; `None` if not (the caller finds out why).
pub async fn end_running_node(
    conn: &mut AnyConnection,
    id: &str,
    attempt: i64,
    holder: Option<&str>,
    chunks: i64,
    ending: &Ending<'_>,
    now: i64,
) -> Result<Option<Ended>> {
    let row = sqlx::query(
        "UPDATE nodes SET status = $1, ended_at = $2, outcome = $3, exit_code = $4, message = $5, \
         outputs = $6, lease_until = NULL \
         WHERE id = $7 AND attempt = $8 AND status = 'running' AND chunks >= $9 \
         AND worker = COALESCE($10, worker) \
         RETURNING build_id, pipeline, idx, worker",
    )
    .bind(ending.status)
    .bind(now)
    .bind(ending.outcome.map(outcome_str))
    .bind(ending.exit_code.map(i64::from))
    .bind(ending.message)
    .bind(to_json(ending.outputs)?)
    .bind(id)
    .bind(attempt)
    .bind(chunks)
    .bind(holder)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode_ended).transpose()
}

fn decode_ended(r: &sqlx::any::AnyRow) -> Result<Ended> {
    Ok(Ended {
        build_id: r.try_get("build_id")?,
        pipeline: r.try_get("pipeline")?,
        index: r.try_get("idx")?,
        worker: r.try_get("worker")?,
    })
}

/// What [`succeed_node`] did.
pub struct Succeeded {
    pub ended: Ended,
    /// Dependents that became ready.
    pub ready: i64,
    /// Whether the build still has queued nodes.
    pub queued: bool,
}

/// Postgres only: ends a running node's attempt as succeeded and releases
/// its dependents (as [`end_running_node`] and [`release_dependents`] do)
/// in one statement that commits by itself. `None` if the node did not
/// match (not running, another attempt, chunks missing).
pub async fn succeed_node(
    conn: &mut AnyConnection,
    id: &str,
    attempt: i64,
    holder: Option<&str>,
    chunks: i64,
    ending: &Ending<'_>,
    now: i64,
) -> Result<Option<Succeeded>> {
    // The outer SELECT sees the nodes as they were before the statement:
    // the released ones were queued and stay so, this one was running.
    let row = sqlx::query(
        "WITH ended AS ( \
           UPDATE nodes SET status = 'succeeded', ended_at = $1, outcome = $2, exit_code = $3, \
             message = $4, outputs = $5, lease_until = NULL \
           WHERE id = $6 AND attempt = $7 AND status = 'running' AND chunks >= $8 \
             AND worker = COALESCE($9, worker) \
           RETURNING build_id, pipeline, idx, worker), \
         released AS ( \
           UPDATE nodes n SET waiting = n.waiting - 1, \
             ready_at = CASE WHEN n.waiting = 1 THEN $1 ELSE n.ready_at END, \
             affinity = CASE WHEN n.pipeline = e.pipeline THEN e.worker ELSE n.affinity END \
           FROM ended e \
           WHERE n.id IN (SELECT to_node FROM node_edges WHERE from_node = $6) AND n.status = 'queued' \
           RETURNING n.waiting, n.held) \
         SELECT e.build_id, e.pipeline, e.idx, e.worker, \
           (SELECT COUNT(*) FROM released r WHERE r.waiting = 0 AND r.held = 0) AS ready, \
           CASE WHEN EXISTS (SELECT 1 FROM nodes q WHERE q.build_id = e.build_id AND q.status = 'queued') THEN 1 ELSE 0 END AS queued \
         FROM ended e",
    )
    .bind(now)
    .bind(ending.outcome.map(outcome_str))
    .bind(ending.exit_code.map(i64::from))
    .bind(ending.message)
    .bind(to_json(ending.outputs)?)
    .bind(id)
    .bind(attempt)
    .bind(chunks)
    .bind(holder)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(Succeeded {
            ended: decode_ended(&r)?,
            ready: r.try_get("ready")?,
            queued: r.try_get::<i64, _>("queued")? != 0,
        })
    })
    .transpose()
}

/// After a node succeeded: its dependents have one dependency fewer; those
/// with none left become ready, and the next action of its pipeline is
/// pinned to the worker that holds the workspace. Answers how many became
/// ready.
pub async fn release_dependents(
    conn: &mut AnyConnection,
    node_id: &str,
    pipeline: &str,
    worker: Option<&str>,
    now: i64,
) -> Result<usize> {
    let rows = sqlx::query(
        "UPDATE nodes SET waiting = waiting - 1, \
           ready_at = CASE WHEN waiting = 1 THEN $1 ELSE ready_at END, \
           affinity = CASE WHEN pipeline = $2 THEN $3 ELSE affinity END \
         WHERE id IN (SELECT to_node FROM node_edges WHERE from_node = $4) AND status = 'queued' \
         RETURNING waiting, held",
    )
    .bind(now)
    .bind(pipeline)
    .bind(worker)
    .bind(node_id)
    .fetch_all(conn)
    .await?;
    let mut ready = 0;
    for row in rows {
        if row.try_get::<i64, _>("waiting")? == 0 && row.try_get::<i64, _>("held")? == 0 {
            ready += 1;
        }
    }
    Ok(ready)
}

/// After a node failed: everything downstream of it is skipped.
pub async fn skip_dependents(
    conn: &mut AnyConnection,
    node_id: &str,
    message: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "WITH RECURSIVE down(id) AS ( \
           SELECT to_node FROM node_edges WHERE from_node = $1 \
           UNION SELECT e.to_node FROM node_edges e JOIN down d ON e.from_node = d.id) \
         UPDATE nodes SET status = 'skipped', ended_at = $2, message = $3 \
         WHERE id IN (SELECT id FROM down) AND status = 'queued'",
    )
    .bind(node_id)
    .bind(now)
    .bind(message)
    .execute(conn)
    .await?;
    Ok(())
}

/// A node to look at: its lease expired, or it waits for a worker that is gone.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub id: String,
    pub build_id: String,
}

/// Running nodes whose lease ended before `now`, of those whose lease ends
/// at `from` or later.
pub async fn expired_leases(conn: &mut AnyConnection, now: i64, from: i64) -> Result<Vec<Orphan>> {
    let rows = sqlx::query(
        "SELECT id, build_id FROM nodes WHERE status = 'running' AND lease_until < $1 \
         AND lease_until >= $2 ORDER BY lease_until LIMIT 100",
    )
    .bind(now)
    .bind(from)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Orphan {
                id: r.try_get("id")?,
                build_id: r.try_get("build_id")?,
            })
        })
        .collect()
}

/// Ready nodes pinned to a worker not seen since `cutoff`, or away (it
/// said it was leaving, or its presence connection dropped) since before
/// `lost_before`.
pub async fn stranded_nodes(
    conn: &mut AnyConnection,
    cutoff: i64,
    lost_before: i64,
) -> Result<Vec<Orphan>> {
    let rows = sqlx::query(
        "SELECT n.id, n.build_id FROM nodes n LEFT JOIN workers w ON w.name = n.affinity \
         WHERE n.status = 'queued' AND n.waiting = 0 AND n.held = 0 AND n.affinity IS NOT NULL \
         AND (w.name IS NULL OR w.last_seen < $1 OR w.disconnected_at < $2 \
         OR (w.state <> 'online' AND w.left_at < $2)) LIMIT 100",
    )
    .bind(cutoff)
    .bind(lost_before)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Orphan {
                id: r.try_get("id")?,
                build_id: r.try_get("build_id")?,
            })
        })
        .collect()
}

/// How many times workers were lost while running this pipeline.
pub async fn pipeline_losses(
    conn: &mut AnyConnection,
    build_id: &str,
    pipeline: &str,
) -> Result<i64> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(lost), 0) AS BIGINT) AS lost FROM nodes WHERE build_id = $1 AND pipeline = $2",
    )
    .bind(build_id)
    .bind(pipeline)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("lost")?)
}

/// Counts a loss of the node's worker, with the node's lost attempts as
/// they are now (the caller holds the node's lock and appended one).
pub async fn count_loss(
    conn: &mut AnyConnection,
    node_id: &str,
    lost_attempts: &[LostAttempt],
) -> Result<()> {
    sqlx::query("UPDATE nodes SET lost = lost + 1, lost_attempts = $2 WHERE id = $1")
        .bind(node_id)
        .bind(to_json(&lost_attempts)?)
        .execute(conn)
        .await?;
    Ok(())
}

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

/// Running nodes whose worker was lost before `before` (and, if `from` is
/// later, not before `from`): its presence connection dropped, or it
/// left without reporting their end.
pub async fn nodes_of_lost_workers(
    conn: &mut AnyConnection,
    before: i64,
    from: i64,
) -> Result<Vec<Orphan>> {
    let rows = sqlx::query(
        "SELECT n.id, n.build_id FROM nodes n JOIN workers w ON w.name = n.worker \
         WHERE n.status = 'running' AND ((w.disconnected_at < $1 AND w.disconnected_at >= $2) \
         OR (w.state = 'gone' AND w.left_at < $1 AND w.left_at >= $2)) LIMIT 100",
    )
    .bind(before)
    .bind(from)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Orphan {
                id: r.try_get("id")?,
                build_id: r.try_get("build_id")?,
            })
        })
        .collect()
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
