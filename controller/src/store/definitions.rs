//! Projects, pipelines and their revisions.

use ick_api::controller::{DefinitionKind, Revision};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Store, time};
use crate::error::Result;

/// A project or pipeline row.
#[derive(Debug, Clone)]
pub struct DefRow {
    pub name: String,
    /// Canonical JSON of the parsed definition.
    pub spec: String,
    pub text: String,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

macro_rules! on_table {
    ($kind:expr, $before:expr, $after:expr) => {
        match $kind {
            DefinitionKind::Project => concat!($before, "projects", $after),
            DefinitionKind::Pipeline => concat!($before, "pipelines", $after),
        }
    };
}

macro_rules! def_columns {
    () => {
        "SELECT name, spec, text, revision, created_at, updated_at, updated_by FROM "
    };
}

fn kind_str(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Project => "project",
        DefinitionKind::Pipeline => "pipeline",
    }
}

fn decode(row: &AnyRow) -> Result<DefRow> {
    Ok(DefRow {
        name: row.try_get("name")?,
        spec: row.try_get("spec")?,
        text: row.try_get("text")?,
        revision: row.try_get("revision")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

/// One definition.
pub async fn get(
    conn: &mut AnyConnection,
    kind: DefinitionKind,
    name: &str,
) -> Result<Option<DefRow>> {
    let sql = on_table!(kind, def_columns!(), " WHERE name = $1");
    let row = sqlx::query(sql).bind(name).fetch_optional(conn).await?;
    row.as_ref().map(decode).transpose()
}

/// One definition, locked until the transaction ends (Postgres).
pub async fn get_for_update(
    store: &Store,
    conn: &mut AnyConnection,
    kind: DefinitionKind,
    name: &str,
) -> Result<Option<DefRow>> {
    let sql = match kind {
        DefinitionKind::Project => store.sql(
            concat!(def_columns!(), "projects WHERE name = $1 FOR UPDATE"),
            concat!(def_columns!(), "projects WHERE name = $1"),
        ),
        DefinitionKind::Pipeline => store.sql(
            concat!(def_columns!(), "pipelines WHERE name = $1 FOR UPDATE"),
            concat!(def_columns!(), "pipelines WHERE name = $1"),
        ),
    };
    let row = sqlx::query(sql).bind(name).fetch_optional(conn).await?;
    row.as_ref().map(decode).transpose()
}

/// A pipeline, kept from changing until the transaction ends (Postgres).
pub async fn get_pipeline_shared(
    store: &Store,
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<DefRow>> {
    let sql = store.sql(
        concat!(def_columns!(), "pipelines WHERE name = $1 FOR SHARE"),
        concat!(def_columns!(), "pipelines WHERE name = $1"),
    );
    let row = sqlx::query(sql).bind(name).fetch_optional(conn).await?;
    row.as_ref().map(decode).transpose()
}

/// All definitions of a kind, by name.
pub async fn list(conn: &mut AnyConnection, kind: DefinitionKind) -> Result<Vec<DefRow>> {
    let sql = on_table!(kind, def_columns!(), " ORDER BY name");
    let rows = sqlx::query(sql).fetch_all(conn).await?;
    rows.iter().map(decode).collect()
}

/// Creates or replaces a definition.
pub async fn upsert(conn: &mut AnyConnection, kind: DefinitionKind, row: &DefRow) -> Result<()> {
    let sql = on_table!(
        kind,
        "INSERT INTO ",
        " (name, spec, text, revision, created_at, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, text = excluded.text, \
         revision = excluded.revision, updated_at = excluded.updated_at, updated_by = excluded.updated_by"
    );
    sqlx::query(sql)
        .bind(&row.name)
        .bind(&row.spec)
        .bind(&row.text)
        .bind(row.revision)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(&row.updated_by)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes a definition; `false` if there was none.
pub async fn delete(conn: &mut AnyConnection, kind: DefinitionKind, name: &str) -> Result<bool> {
    let sql = on_table!(kind, "DELETE FROM ", " WHERE name = $1");
    let done = sqlx::query(sql).bind(name).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

/// Records a change and answers its revision number (one more than the
/// last, deletions included).
pub async fn add_revision(
    conn: &mut AnyConnection,
    kind: DefinitionKind,
    name: &str,
    author: &str,
    at: i64,
    deleted: bool,
    text: &str,
) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO revisions (kind, name, revision, author, at, deleted, text) \
         SELECT $1, $2, COALESCE(MAX(revision), 0) + 1, $3, $4, $5, $6 FROM revisions \
         WHERE kind = $1 AND name = $2 RETURNING revision",
    )
    .bind(kind_str(kind))
    .bind(name)
    .bind(author)
    .bind(at)
    .bind(i64::from(deleted))
    .bind(text)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("revision")?)
}

/// A definition's revisions, newest first.
pub async fn revisions(
    conn: &mut AnyConnection,
    kind: DefinitionKind,
    name: &str,
) -> Result<Vec<Revision>> {
    let rows = sqlx::query(
        "SELECT revision, author, at, deleted, text FROM revisions \
         WHERE kind = $1 AND name = $2 ORDER BY revision DESC",
    )
    .bind(kind_str(kind))
    .bind(name)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Revision {
                revision: r.try_get("revision")?,
                author: r.try_get("author")?,
                at: time(r.try_get("at")?),
                deleted: r.try_get::<i64, _>("deleted")? != 0,
                text: r.try_get("text")?,
            })
        })
        .collect()
}

/// Replaces the list of pipelines a project runs.
pub async fn set_project_pipelines(
    conn: &mut AnyConnection,
    project: &str,
    pipelines: &[String],
) -> Result<()> {
    sqlx::query("DELETE FROM project_pipelines WHERE project = $1")
        .bind(project)
        .execute(&mut *conn)
        .await?;
    for pipeline in pipelines {
        sqlx::query("INSERT INTO project_pipelines (project, pipeline) VALUES ($1, $2)")
            .bind(project)
            .bind(pipeline)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The projects that run a pipeline.
pub async fn projects_using(conn: &mut AnyConnection, pipeline: &str) -> Result<Vec<String>> {
    let rows =
        sqlx::query("SELECT project FROM project_pipelines WHERE pipeline = $1 ORDER BY project")
            .bind(pipeline)
            .fetch_all(conn)
            .await?;
    rows.iter().map(|r| Ok(r.try_get("project")?)).collect()
}

/// Which project runs which pipeline: (project, pipeline), every pair.
pub async fn all_project_pipelines(conn: &mut AnyConnection) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query("SELECT project, pipeline FROM project_pipelines ORDER BY project")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("project")?, r.try_get("pipeline")?)))
        .collect()
}
