//! Builds and their nodes.

use std::collections::BTreeMap;
use std::str::FromStr;

use ick_api::actions::Action;
use ick_api::controller::{BuildStatus, BuildSummary, LostAttempt, NodeStatus, NodeView};
use ick_api::secret::redact_urls;
use ick_api::work::Outcome;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Store, from_json, time, to_json, values_placeholders};
use crate::access::Readable;
use crate::error::{ControllerError, Result};

/// A build as stored.
#[derive(Debug, Clone)]
pub struct BuildRow {
    pub seq: i64,
    pub id: String,
    pub project: String,
    pub number: i64,
    pub status: BuildStatus,
    pub run: i64,
    pub admitted: bool,
    pub concurrency: i64,
    pub cancel_requested: bool,
    pub parameters: BTreeMap<String, Value>,
    pub triggered_by: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
}

impl BuildRow {
    /// The parameters as shown to people (views, mail): credentials in
    /// URLs redacted. Workers get them as they are.
    pub fn shown_parameters(&self) -> BTreeMap<String, Value> {
        self.parameters
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => Value::String(redact_urls(s).into_owned()),
                    other => other.clone(),
                };
                (k.clone(), v)
            })
            .collect()
    }

    /// The wire form.
    pub fn summary(&self) -> BuildSummary {
        BuildSummary {
            id: self.id.clone(),
            project: self.project.clone(),
            number: self.number,
            status: self.status,
            run: self.run,
            cancel_requested: self.cancel_requested,
            parameters: self.shown_parameters(),
            triggered_by: self.triggered_by.clone(),
            created_at: time(self.created_at),
            started_at: self.started_at.map(time),
            ended_at: self.ended_at.map(time),
        }
    }
}

macro_rules! build_columns {
    () => {
        "SELECT seq, id, project, number, status, run, admitted, concurrency, cancel_requested, \
         parameters, triggered_by, created_at, started_at, ended_at FROM builds "
    };
}

fn status<T: FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(ControllerError::Internal)
}

fn decode_build(row: &AnyRow) -> Result<BuildRow> {
    Ok(BuildRow {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        number: row.try_get("number")?,
        status: status(row.try_get::<&str, _>("status")?)?,
        run: row.try_get("run")?,
        admitted: row.try_get::<i64, _>("admitted")? != 0,
        concurrency: row.try_get("concurrency")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        parameters: from_json(row.try_get("parameters")?)?,
        triggered_by: row.try_get("triggered_by")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
    })
}

/// A node as stored.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub id: String,
    pub build_id: String,
    pub position: i64,
    pub pipeline: String,
    pub index: i64,
    pub pipeline_len: i64,
    pub kind: String,
    pub action: Action,
    /// Labels a worker must have.
    pub labels: Vec<String>,
    pub deps: Vec<String>,
    pub waiting: i64,
    pub held: bool,
    pub status: NodeStatus,
    pub affinity: Option<String>,
    pub worker: Option<String>,
    pub attempt: i64,
    pub lost: i64,
    pub lease_until: Option<i64>,
    pub cancel_requested: bool,
    pub chunks: i64,
    pub ready_at: Option<i64>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub outcome: Option<Outcome>,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
    pub outputs: BTreeMap<String, String>,
    /// Attempts whose worker was lost (`again_on` unset: the view sets it).
    pub lost_attempts: Vec<LostAttempt>,
}

impl NodeRow {
    /// The wire form.
    pub fn view(&self, waiting_for: Option<String>) -> NodeView {
        NodeView {
            id: self.id.clone(),
            pipeline: self.pipeline.clone(),
            index: self.index as u32,
            pipeline_len: self.pipeline_len as u32,
            description: self.action.describe(),
            action: self.action.clone(),
            needs: self.deps.clone(),
            status: self.status,
            attempt: self.attempt,
            worker: self.worker.clone(),
            outcome: self.outcome,
            exit_code: self.exit_code.map(|c| c as i32),
            message: self.message.clone(),
            outputs: self.outputs.clone(),
            ready_at: self.ready_at.map(time),
            started_at: self.started_at.map(time),
            ended_at: self.ended_at.map(time),
            lost_attempts: self.lost_attempts.clone(),
            waiting_for,
        }
    }
}

macro_rules! node_columns {
    () => {
        "SELECT id, build_id, position, pipeline, idx, pipeline_len, kind, action, labels, deps, \
         waiting, held, status, affinity, worker, attempt, lost, lease_until, cancel_requested, \
         chunks, ready_at, started_at, ended_at, outcome, exit_code, message, outputs, \
         lost_attempts FROM nodes "
    };
}

pub fn outcome_str(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Exited => "exited",
        Outcome::TimedOut => "timed_out",
        Outcome::Cancelled => "cancelled",
        Outcome::Error => "error",
    }
}

fn parse_outcome(text: &str) -> Result<Outcome> {
    Ok(match text {
        "exited" => Outcome::Exited,
        "timed_out" => Outcome::TimedOut,
        "cancelled" => Outcome::Cancelled,
        "error" => Outcome::Error,
        other => {
            return Err(ControllerError::Internal(format!(
                "stored outcome {other:?}"
            )));
        }
    })
}

fn decode_node(row: &AnyRow) -> Result<NodeRow> {
    let outputs: Option<String> = row.try_get("outputs")?;
    let outcome: Option<String> = row.try_get("outcome")?;
    Ok(NodeRow {
        id: row.try_get("id")?,
        build_id: row.try_get("build_id")?,
        position: row.try_get("position")?,
        pipeline: row.try_get("pipeline")?,
        index: row.try_get("idx")?,
        pipeline_len: row.try_get("pipeline_len")?,
        kind: row.try_get("kind")?,
        action: from_json(row.try_get("action")?)?,
        labels: from_json(row.try_get("labels")?)?,
        deps: from_json(row.try_get("deps")?)?,
        waiting: row.try_get("waiting")?,
        held: row.try_get::<i64, _>("held")? != 0,
        status: status(row.try_get::<&str, _>("status")?)?,
        affinity: row.try_get("affinity")?,
        worker: row.try_get("worker")?,
        attempt: row.try_get("attempt")?,
        lost: row.try_get("lost")?,
        lease_until: row.try_get("lease_until")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        chunks: row.try_get("chunks")?,
        ready_at: row.try_get("ready_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        outcome: outcome.as_deref().map(parse_outcome).transpose()?,
        exit_code: row.try_get("exit_code")?,
        message: row.try_get("message")?,
        outputs: match outputs {
            Some(text) => from_json(&text)?,
            None => BTreeMap::new(),
        },
        lost_attempts: match row.try_get::<Option<String>, _>("lost_attempts")? {
            Some(text) => from_json(&text)?,
            None => Vec::new(),
        },
    })
}

/// The next number of a project's builds; locks the project's counter row
/// (which serialises admissions) until the transaction ends.
pub async fn next_build_number(conn: &mut AnyConnection, project: &str) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO build_counters (project, last) VALUES ($1, 1) \
         ON CONFLICT (project) DO UPDATE SET last = build_counters.last + 1 RETURNING last",
    )
    .bind(project)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("last")?)
}

/// Locks the project's counter row (Postgres), serialising admissions.
pub async fn lock_project_counter(
    store: &Store,
    conn: &mut AnyConnection,
    project: &str,
) -> Result<()> {
    let sql = store.sql(
        "SELECT last FROM build_counters WHERE project = $1 FOR UPDATE",
        "SELECT last FROM build_counters WHERE project = $1",
    );
    sqlx::query(sql).bind(project).fetch_optional(conn).await?;
    Ok(())
}

/// Admitted builds of a project that have not ended, and builds waiting
/// for admission.
pub async fn admission_counts(conn: &mut AnyConnection, project: &str) -> Result<(i64, i64)> {
    let row = sqlx::query(
        "SELECT \
           CAST(COALESCE(SUM(CASE WHEN admitted = 1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS running, \
           CAST(COALESCE(SUM(CASE WHEN admitted = 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS waiting \
         FROM builds WHERE project = $1 AND status IN ('queued', 'running')",
    )
    .bind(project)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get("running")?, row.try_get("waiting")?))
}

/// Builds of a project waiting for admission, oldest first.
pub async fn waiting_for_admission(
    conn: &mut AnyConnection,
    project: &str,
) -> Result<Vec<BuildRow>> {
    let rows = sqlx::query(concat!(
        build_columns!(),
        "WHERE project = $1 AND status = 'queued' AND admitted = 0 ORDER BY seq LIMIT 100"
    ))
    .bind(project)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_build).collect()
}

/// Admitted builds of a project that have not ended (their numbers).
pub async fn admitted_numbers(conn: &mut AnyConnection, project: &str) -> Result<Vec<i64>> {
    let rows = sqlx::query(
        "SELECT number FROM builds WHERE project = $1 AND admitted = 1 \
         AND status IN ('queued', 'running') ORDER BY seq",
    )
    .bind(project)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("number")?)).collect()
}

/// Lets a build's nodes be claimed.
pub async fn admit(conn: &mut AnyConnection, build_id: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE builds SET admitted = 1 WHERE id = $1")
        .bind(build_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE nodes SET held = 0, ready_at = CASE WHEN waiting = 0 THEN $1 ELSE ready_at END \
         WHERE build_id = $2 AND status = 'queued'",
    )
    .bind(now)
    .bind(build_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn insert_build(conn: &mut AnyConnection, b: &BuildRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO builds (id, project, number, status, run, admitted, concurrency, \
         cancel_requested, parameters, triggered_by, created_at, started_at, ended_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&b.id)
    .bind(&b.project)
    .bind(b.number)
    .bind(b.status.as_str())
    .bind(b.run)
    .bind(i64::from(b.admitted))
    .bind(b.concurrency)
    .bind(i64::from(b.cancel_requested))
    .bind(to_json(&b.parameters)?)
    .bind(&b.triggered_by)
    .bind(b.created_at)
    .bind(b.started_at)
    .bind(b.ended_at)
    .execute(conn)
    .await?;
    Ok(())
}

const NODE_INSERT_COLUMNS: usize = 19;

/// The digest of what a node runs on: its build's parameters (the commit
/// among them) and its action's definition. Two nodes at the same place
/// with the same digest should end alike; analytics calls one that does
/// not flaky.
pub fn inputs_digest(parameters: &str, action: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(parameters.as_bytes());
    hash.update([0]);
    hash.update(action.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// Inserts a new build's nodes and edges, many rows per statement.
pub async fn insert_graph(
    conn: &mut AnyConnection,
    build: &BuildRow,
    nodes: &[NodeRow],
) -> Result<()> {
    let parameters = to_json(&build.parameters)?;
    for batch in nodes.chunks(200) {
        let sql = format!(
            "INSERT INTO nodes (id, build_id, position, pipeline, idx, pipeline_len, kind, action, \
             labels, deps, waiting, held, status, attempt, lost, cancel_requested, chunks, ready_at, \
             project, build_created_at, inputs) \
             VALUES {}",
            values_with_constants(batch.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for n in batch {
            let action = to_json(&n.action)?;
            let inputs = inputs_digest(&parameters, &action);
            query = query
                .bind(n.id.clone())
                .bind(n.build_id.clone())
                .bind(n.position)
                .bind(n.pipeline.clone())
                .bind(n.index)
                .bind(n.pipeline_len)
                .bind(n.kind.clone())
                .bind(action)
                .bind(to_json(&n.labels)?)
                .bind(to_json(&n.deps)?)
                .bind(n.waiting)
                .bind(i64::from(n.held))
                .bind(n.status.as_str())
                .bind(n.attempt)
                .bind(n.lost)
                .bind(n.ready_at)
                .bind(build.project.clone())
                .bind(build.created_at)
                .bind(inputs);
        }
        query.execute(&mut *conn).await?;
    }
    let edges: Vec<(&str, &str, &str)> = nodes
        .iter()
        .flat_map(|n| {
            n.deps
                .iter()
                .map(move |d| (n.build_id.as_str(), d.as_str(), n.id.as_str()))
        })
        .collect();
    for batch in edges.chunks(500) {
        let sql = format!(
            "INSERT INTO node_edges (build_id, from_node, to_node) VALUES {}",
            values_placeholders(batch.len(), 3)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (build, from, to) in batch {
            query = query
                .bind(build.to_string())
                .bind(from.to_string())
                .bind(to.to_string());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The VALUES rows of a node insert: 19 placeholders, with the constant
/// columns (cancel_requested, chunks = 0) in between.
fn values_with_constants(rows: usize) -> String {
    let mut sql = String::new();
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        let p = |c: usize| format!("${}", r * NODE_INSERT_COLUMNS + c + 1);
        let first: Vec<String> = (0..15).map(p).collect();
        let last: Vec<String> = (15..NODE_INSERT_COLUMNS).map(p).collect();
        sql.push_str(&format!(
            "({}, 0, 0, {})",
            first.join(", "),
            last.join(", ")
        ));
    }
    sql
}

pub async fn get_build(conn: &mut AnyConnection, id: &str) -> Result<Option<BuildRow>> {
    let row = sqlx::query(concat!(build_columns!(), "WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode_build).transpose()
}

pub async fn get_build_by_number(
    conn: &mut AnyConnection,
    project: &str,
    number: i64,
) -> Result<Option<BuildRow>> {
    let row = sqlx::query(concat!(
        build_columns!(),
        "WHERE project = $1 AND number = $2"
    ))
    .bind(project)
    .bind(number)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode_build).transpose()
}

/// A build, locked until the transaction ends: every change to a build's
/// state starts here.
pub async fn lock_build(
    store: &Store,
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<BuildRow>> {
    let sql = store.sql(
        concat!(build_columns!(), "WHERE id = $1 FOR UPDATE"),
        concat!(build_columns!(), "WHERE id = $1"),
    );
    let row = sqlx::query(sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(decode_build).transpose()
}

/// A page of builds, newest first.
pub async fn list_builds(
    conn: &mut AnyConnection,
    project: Option<&str>,
    readable: &Readable,
    statuses: &[BuildStatus],
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<BuildRow>> {
    let status_list = super::status_list(statuses.iter().map(|s| s.as_str()));
    let (all, only) = super::readable_param(readable);
    let rows = sqlx::query(concat!(
        build_columns!(),
        "WHERE ($1 = '' OR project = $1) AND ($2 = ',,' OR $2 LIKE '%,' || status || ',%') \
         AND seq < $3 AND ($5 = 1 OR instr($6, ',' || project || ',') > 0) \
         ORDER BY seq DESC LIMIT $4"
    ))
    .bind(project.unwrap_or(""))
    .bind(status_list)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .bind(all)
    .bind(only)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_build).collect()
}

/// A build's nodes in graph order.
pub async fn build_nodes(conn: &mut AnyConnection, build_id: &str) -> Result<Vec<NodeRow>> {
    let rows = sqlx::query(concat!(
        node_columns!(),
        "WHERE build_id = $1 ORDER BY position"
    ))
    .bind(build_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_node).collect()
}

/// One node.
pub async fn get_node(conn: &mut AnyConnection, id: &str) -> Result<Option<NodeRow>> {
    let row = sqlx::query(concat!(node_columns!(), "WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode_node).transpose()
}

/// One node, locked until the transaction ends (lock its build first).
pub async fn lock_node(
    store: &Store,
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<NodeRow>> {
    let sql = store.sql(
        concat!(node_columns!(), "WHERE id = $1 FOR UPDATE"),
        concat!(node_columns!(), "WHERE id = $1"),
    );
    let row = sqlx::query(sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(decode_node).transpose()
}

/// The build a node belongs to (which never changes).
pub async fn node_build(conn: &mut AnyConnection, node_id: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT build_id FROM nodes WHERE id = $1")
        .bind(node_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| Ok(r.try_get("build_id")?)).transpose()
}

/// Whether a build has a node not yet ended.
pub async fn has_open_nodes(conn: &mut AnyConnection, build_id: &str) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM nodes WHERE build_id = $1 AND status IN ('queued', 'running') LIMIT 1",
    )
    .bind(build_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Whether a build has a queued node.
pub async fn has_queued_nodes(conn: &mut AnyConnection, build_id: &str) -> Result<bool> {
    let row =
        sqlx::query("SELECT 1 AS one FROM nodes WHERE build_id = $1 AND status = 'queued' LIMIT 1")
            .bind(build_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.is_some())
}

/// Queued builds with a running node are running.
pub async fn mark_started_builds_running(conn: &mut AnyConnection, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE builds SET status = 'running', started_at = COALESCE(started_at, $1) \
         WHERE status = 'queued' AND EXISTS \
         (SELECT 1 FROM nodes n WHERE n.build_id = builds.id AND n.status = 'running')",
    )
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Builds not ended of which no node is queued or running.
pub async fn idle_unfinished_builds(conn: &mut AnyConnection) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT b.id FROM builds b WHERE b.status IN ('queued', 'running') AND NOT EXISTS \
         (SELECT 1 FROM nodes n WHERE n.build_id = b.id AND n.status IN ('queued', 'running')) \
         LIMIT 100",
    )
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

/// Nodes that did not succeed.
pub async fn unsuccessful_nodes(conn: &mut AnyConnection, build_id: &str) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM nodes WHERE build_id = $1 AND status <> 'succeeded'",
    )
    .bind(build_id)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("n")?)
}

/// How the project's latest build before `number` that succeeded or
/// failed ended (cancelled ones say nothing of the code).
pub async fn previous_outcome(
    conn: &mut AnyConnection,
    project: &str,
    number: i64,
) -> Result<Option<BuildStatus>> {
    let row = sqlx::query(
        "SELECT status FROM builds WHERE project = $1 AND number < $2 \
         AND status IN ('succeeded', 'failed') ORDER BY number DESC LIMIT 1",
    )
    .bind(project)
    .bind(number)
    .fetch_optional(conn)
    .await?;
    row.map(|r| status(r.try_get::<&str, _>("status")?))
        .transpose()
}

/// Ends a build.
pub async fn end_build(
    conn: &mut AnyConnection,
    id: &str,
    status: BuildStatus,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE builds SET status = $1, ended_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks a build as asked to cancel.
pub async fn request_cancel(conn: &mut AnyConnection, id: &str) -> Result<()> {
    sqlx::query("UPDATE builds SET cancel_requested = 1 WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Cancels the queued nodes of a build. (Running ones learn it from the
/// build's flag through their heartbeat; their rows are not touched, as a
/// `done` may hold them.)
pub async fn cancel_queued_nodes(conn: &mut AnyConnection, build_id: &str, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE nodes SET status = 'cancelled', ended_at = $1, message = 'the build was cancelled' \
         WHERE build_id = $2 AND status = 'queued'",
    )
    .bind(now)
    .bind(build_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Starts a build's run: the state a retry leaves it in.
pub async fn restart_build(conn: &mut AnyConnection, id: &str, admitted: bool) -> Result<()> {
    sqlx::query(
        "UPDATE builds SET status = 'queued', run = run + 1, cancel_requested = 0, admitted = $1, \
         started_at = NULL, ended_at = NULL WHERE id = $2",
    )
    .bind(i64::from(admitted))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Puts a pipeline of a build back to its first action: every node queued,
/// its workspace forgotten. Attempt numbers go on, so calls from earlier
/// attempts stay refused.
pub async fn reset_pipeline(
    conn: &mut AnyConnection,
    build_id: &str,
    pipeline: &str,
    keep_lost: bool,
) -> Result<()> {
    let sql = if keep_lost {
        "UPDATE nodes SET status = 'queued', worker = NULL, affinity = NULL, lease_until = NULL, \
         cancel_requested = 0, chunks = 0, ready_at = NULL, started_at = NULL, ended_at = NULL, \
         outcome = NULL, exit_code = NULL, message = NULL, outputs = NULL \
         WHERE build_id = $1 AND pipeline = $2"
    } else {
        "UPDATE nodes SET status = 'queued', worker = NULL, affinity = NULL, lease_until = NULL, \
         cancel_requested = 0, chunks = 0, ready_at = NULL, started_at = NULL, ended_at = NULL, \
         outcome = NULL, exit_code = NULL, message = NULL, outputs = NULL, lost = 0, \
         lost_attempts = NULL \
         WHERE build_id = $1 AND pipeline = $2"
    };
    sqlx::query(sql)
        .bind(build_id)
        .bind(pipeline)
        .execute(conn)
        .await?;
    Ok(())
}

/// Recounts the unfinished dependencies of a build's queued nodes and
/// stamps the ready ones.
pub async fn recount_waiting(
    conn: &mut AnyConnection,
    build_id: &str,
    held: bool,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE nodes SET waiting = (SELECT COUNT(*) FROM node_edges e JOIN nodes d ON d.id = e.from_node \
           WHERE e.to_node = nodes.id AND d.status <> 'succeeded') \
         WHERE build_id = $1 AND status = 'queued'",
    )
    .bind(build_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE nodes SET held = $1, \
           ready_at = CASE WHEN waiting = 0 THEN COALESCE(ready_at, $2) ELSE NULL END \
         WHERE build_id = $3 AND status = 'queued'",
    )
    .bind(i64::from(held))
    .bind(now)
    .bind(build_id)
    .execute(conn)
    .await?;
    Ok(())
}
