//! Trigger secrets and the deliveries that triggered builds.

use ick_api::Secret;
use sqlx::{AnyConnection, Row};

use crate::error::Result;

/// A project's trigger secret as stored.
#[derive(Debug, Clone)]
pub struct SecretRow {
    pub project: String,
    pub secret: Secret,
    pub created_at: i64,
}

/// Every project's secret with the project's definition (canonical JSON),
/// to find the projects a web hook's repository belongs to.
pub async fn secrets_and_projects(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, Secret, String)>> {
    let rows = sqlx::query(
        "SELECT s.project, s.secret, p.spec FROM trigger_secrets s \
         JOIN projects p ON p.name = s.project ORDER BY s.project",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("project")?,
                Secret::new(r.try_get::<String, _>("secret")?),
                r.try_get("spec")?,
            ))
        })
        .collect()
}

/// A project's secret.
pub async fn get_secret(conn: &mut AnyConnection, project: &str) -> Result<Option<SecretRow>> {
    let row =
        sqlx::query("SELECT project, secret, created_at FROM trigger_secrets WHERE project = $1")
            .bind(project)
            .fetch_optional(conn)
            .await?;
    row.map(|r| {
        Ok(SecretRow {
            project: r.try_get("project")?,
            secret: Secret::new(r.try_get::<String, _>("secret")?),
            created_at: r.try_get("created_at")?,
        })
    })
    .transpose()
}

/// Gives a project `secret`: with `replace`, in place of the one it has;
/// else only if it has none.
pub async fn put_secret(
    conn: &mut AnyConnection,
    project: &str,
    secret: &Secret,
    replace: bool,
    now: i64,
) -> Result<()> {
    let sql = if replace {
        "INSERT INTO trigger_secrets (project, secret, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (project) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at"
    } else {
        "INSERT INTO trigger_secrets (project, secret, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (project) DO NOTHING"
    };
    sqlx::query(sql)
        .bind(project)
        .bind(secret.expose())
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records that a delivery triggers `build_id`; `false` if it already did
/// (then nothing is written). On Postgres a concurrent insert of the same
/// delivery waits for the first to commit.
pub async fn record_delivery(
    conn: &mut AnyConnection,
    source: &str,
    delivery: &str,
    project: &str,
    build_id: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO webhook_deliveries (source, delivery, project, build_id, received_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, delivery, project) DO NOTHING",
    )
    .bind(source)
    .bind(delivery)
    .bind(project)
    .bind(build_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The build a delivery triggered.
pub async fn delivery_build(
    conn: &mut AnyConnection,
    source: &str,
    delivery: &str,
    project: &str,
) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT build_id FROM webhook_deliveries WHERE source = $1 AND delivery = $2 AND project = $3",
    )
    .bind(source)
    .bind(delivery)
    .bind(project)
    .fetch_optional(conn)
    .await?;
    row.map(|r| Ok(r.try_get("build_id")?)).transpose()
}
