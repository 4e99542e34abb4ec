//! Reading stored output.

use ick_api::controller::{LogChunk, LogCursor, NodeStatus};
use ick_api::work::Stream;
use sqlx::{AnyConnection, Row};

use crate::error::{ControllerError, Result};

fn stream(text: &str) -> Result<Stream> {
    match text {
        "stdout" => Ok(Stream::Stdout),
        "stderr" => Ok(Stream::Stderr),
        other => Err(ControllerError::Internal(format!(
            "stored stream {other:?}"
        ))),
    }
}

fn decode(row: &sqlx::any::AnyRow) -> Result<LogChunk> {
    Ok(LogChunk {
        node: row.try_get("node_id")?,
        pipeline: row.try_get("pipeline")?,
        index: row.try_get::<i64, _>("idx")? as u32,
        attempt: row.try_get("attempt")?,
        seq: row.try_get("seq")?,
        stream: stream(row.try_get("stream")?)?,
        data: row.try_get("data")?,
    })
}

/// A page of a build's output (or one node's), nodes in graph order,
/// each node's chunks by attempt and number: at most `limit` chunks after
/// `after`, with their cursors; with `until`, only what was stored by then (the build's end:
/// what a run wrote, without a later retry's).
pub async fn log_page(
    conn: &mut AnyConnection,
    build_id: &str,
    node: Option<&str>,
    after: Option<LogCursor>,
    until: Option<i64>,
    limit: u32,
) -> Result<Vec<(LogCursor, LogChunk)>> {
    let after = after.unwrap_or(LogCursor {
        position: -1,
        attempt: 0,
        seq: 0,
    });
    let rows = sqlx::query(
        "SELECT c.node_id, n.pipeline, n.idx, n.position, c.attempt, c.seq, c.stream, c.data \
         FROM chunks c JOIN nodes n ON n.id = c.node_id \
         WHERE c.build_id = $1 AND ($2 = '' OR c.node_id = $2) AND c.at <= $3 \
         AND (n.position > $4 OR (n.position = $4 AND (c.attempt > $5 \
           OR (c.attempt = $5 AND c.seq > $6)))) \
         ORDER BY n.position, c.attempt, c.seq LIMIT $7",
    )
    .bind(build_id)
    .bind(node.unwrap_or(""))
    .bind(until.unwrap_or(i64::MAX))
    .bind(after.position)
    .bind(after.attempt)
    .bind(after.seq)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let chunk = decode(r)?;
            let cursor = LogCursor {
                position: r.try_get("position")?,
                attempt: chunk.attempt,
                seq: chunk.seq,
            };
            Ok((cursor, chunk))
        })
        .collect()
}

/// An attempt's chunks from number `from` on.
pub async fn node_log_from(
    conn: &mut AnyConnection,
    node_id: &str,
    attempt: i64,
    from: i64,
) -> Result<Vec<LogChunk>> {
    let rows = sqlx::query(
        "SELECT c.node_id, n.pipeline, n.idx, c.attempt, c.seq, c.stream, c.data \
         FROM chunks c JOIN nodes n ON n.id = c.node_id \
         WHERE c.node_id = $1 AND c.attempt = $2 AND c.seq >= $3 ORDER BY c.seq",
    )
    .bind(node_id)
    .bind(attempt)
    .bind(from)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// What a log follower needs to know of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub id: String,
    pub pipeline: String,
    pub index: u32,
    pub status: NodeStatus,
    pub attempt: i64,
    pub chunks: i64,
    pub worker: Option<String>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
}

/// The progress of a build's nodes (or one node), in graph order.
pub async fn progress(
    conn: &mut AnyConnection,
    build_id: &str,
    node: Option<&str>,
) -> Result<Vec<Progress>> {
    let rows = sqlx::query(
        "SELECT id, pipeline, idx, status, attempt, chunks, worker, exit_code, message FROM nodes \
         WHERE build_id = $1 AND ($2 = '' OR id = $2) ORDER BY position",
    )
    .bind(build_id)
    .bind(node.unwrap_or(""))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Progress {
                id: r.try_get("id")?,
                pipeline: r.try_get("pipeline")?,
                index: r.try_get::<i64, _>("idx")? as u32,
                status: r
                    .try_get::<&str, _>("status")?
                    .parse()
                    .map_err(ControllerError::Internal)?,
                attempt: r.try_get("attempt")?,
                chunks: r.try_get("chunks")?,
                worker: r.try_get("worker")?,
                exit_code: r.try_get::<Option<i64>, _>("exit_code")?.map(|c| c as i32),
                message: r.try_get("message")?,
            })
        })
        .collect()
}
