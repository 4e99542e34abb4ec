//! The counts `/metrics` reads from the database, each from an index
//! (builds by project and status; queued nodes through their builds;
//! ready and running nodes from their partial indexes), so that a scrape
//! stays cheap with a long history.

use sqlx::{AnyConnection, Row};

use crate::error::Result;

/// What the database holds now.
#[derive(Debug, Default)]
pub struct Counts {
    /// (project, status, builds).
    pub builds: Vec<(String, String, i64)>,
    /// (what they wait for, queued actions).
    pub queued_nodes: Vec<(String, i64)>,
    /// Actions ready to run, waiting for a worker.
    pub ready_nodes: i64,
    /// Actions running.
    pub running_nodes: i64,
    /// (state, workers).
    pub workers: Vec<(String, i64)>,
    /// (status, notifications).
    pub notifications: Vec<(String, i64)>,
}

fn pairs(rows: &[sqlx::any::AnyRow]) -> Result<Vec<(String, i64)>> {
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

pub async fn counts(conn: &mut AnyConnection) -> Result<Counts> {
    let builds = sqlx::query(
        "SELECT project, status, COUNT(*) FROM builds GROUP BY project, status ORDER BY project",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
    .collect::<Result<_>>()?;
    // Only builds not yet ended have queued nodes: found from the builds'
    // status index, not by reading every node ever.
    let queued_nodes = pairs(
        &sqlx::query(
            "SELECT CASE WHEN n.waiting > 0 THEN 'needs' WHEN n.held > 0 THEN 'admission' \
             ELSE 'worker' END AS reason, COUNT(*) FROM builds b \
             JOIN nodes n ON n.build_id = b.id \
             WHERE b.status IN ('queued', 'running') AND n.status = 'queued' GROUP BY 1",
        )
        .fetch_all(&mut *conn)
        .await?,
    )?;
    let ready_nodes = sqlx::query(
        "SELECT COUNT(*) FROM nodes WHERE status = 'queued' AND waiting = 0 AND held = 0",
    )
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    let running_nodes = sqlx::query("SELECT COUNT(*) FROM nodes WHERE status = 'running'")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    let workers = pairs(
        &sqlx::query("SELECT state, COUNT(*) FROM workers GROUP BY state")
            .fetch_all(&mut *conn)
            .await?,
    )?;
    let notifications = pairs(
        &sqlx::query("SELECT status, COUNT(*) FROM notifications GROUP BY status")
            .fetch_all(&mut *conn)
            .await?,
    )?;
    Ok(Counts {
        builds,
        queued_nodes,
        ready_nodes,
        running_nodes,
        workers,
        notifications,
    })
}
