//! An attempt's output: chunks of stdout and stderr, each kept once.

use ick_api::work::{OutputChunk, Stream};
use sqlx::AnyConnection;

use crate::error::Result;

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
            crate::store::values_placeholders(batch.len(), 7)
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
