//! Leases: an attempt holds its node while its worker renews the lease;
//! the attempt's end ends the lease, so the endings of a running node (the
//! worker's `done`, or the reaper's verdict) are here too, beside the
//! queries by which the reaper finds leases that lapsed and nodes whose
//! worker is lost.

use std::collections::BTreeMap;

use ick_api::controller::LostAttempt;
use ick_api::work::Outcome;
use sqlx::{AnyConnection, Row};

use crate::error::Result;
use crate::store::builds::outcome_str;
use crate::store::{Store, to_json};

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

fn decode_orphan(r: &sqlx::any::AnyRow) -> Result<Orphan> {
    Ok(Orphan {
        id: r.try_get("id")?,
        build_id: r.try_get("build_id")?,
    })
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
    rows.iter().map(decode_orphan).collect()
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
    rows.iter().map(decode_orphan).collect()
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
    rows.iter().map(decode_orphan).collect()
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
