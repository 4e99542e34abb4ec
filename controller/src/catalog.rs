//! Applying and deleting projects and pipelines: parse and check first
//! (nothing stored on error), then one transaction that records the change
//! and its revision. Applying what is already stored changes nothing.

use std::collections::BTreeMap;

use ick_api::actions::BUILTIN_KINDS;
use ick_api::controller::{
    Applied, Change, DefinitionKind, PipelineSpec, ProjectSpec, Revision, Stored,
};

use crate::AppState;
use crate::definitions::{
    DefinitionError, canonical, check_name, check_project_graph, parse_pipeline, parse_project,
};
use crate::error::{ControllerError, Result};
use crate::store::definitions::{self as defs, DefRow};
use crate::store::{Store, from_json, now_ms, retrying, time};

fn invalid(message: String) -> ControllerError {
    ControllerError::InvalidDefinition {
        message,
        line: None,
        column: None,
    }
}

fn what(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Project => "project",
        DefinitionKind::Pipeline => "pipeline",
    }
}

/// A stored definition in its wire form.
pub fn stored<T: serde::de::DeserializeOwned>(row: DefRow) -> Result<Stored<T>> {
    Ok(Stored {
        spec: from_json(&row.spec)?,
        name: row.name,
        revision: row.revision,
        created_at: time(row.created_at),
        updated_at: time(row.updated_at),
        updated_by: row.updated_by,
        text: row.text,
    })
}

/// Action kinds that connected workers advertise beyond the built-ins.
async fn advertised_kinds(state: &AppState) -> Result<Vec<String>> {
    let since = now_ms() - state.config.work.worker_timeout.as_millis() as i64;
    let mut conn = state.store.conn().await?;
    let workers = crate::store::work::workers(&mut conn, Some(since)).await?;
    Ok(workers
        .into_iter()
        .flat_map(|w| w.kinds)
        .filter(|k| !BUILTIN_KINDS.contains(&k.as_str()))
        .collect())
}

/// Parses a definition on a blocking thread: a large body takes serde_yaml
/// long enough to hold up every other request on the runtime's threads.
async fn off_runtime<T: Send + 'static>(
    text: &str,
    name: &str,
    parse: impl FnOnce(&str, &str) -> Result<T, DefinitionError> + Send + 'static,
) -> Result<T> {
    let (text, name) = (text.to_string(), name.to_string());
    Ok(tokio::task::spawn_blocking(move || parse(&text, &name))
        .await
        .map_err(|e| ControllerError::Internal(format!("definition parser: {e}")))??)
}

/// `PUT /pipelines/{name}`.
pub async fn apply_pipeline(
    state: &AppState,
    name: &str,
    text: &str,
    author: &str,
) -> Result<Applied> {
    let plugins = advertised_kinds(state).await?;
    let spec = off_runtime(text, name, move |text, name| {
        parse_pipeline(text, name, |kind| plugins.iter().any(|k| k == kind))
    })
    .await?;
    let spec_json = canonical(&spec)?;
    retrying(|| apply_pipeline_tx(&state.store, name, text, author, &spec, &spec_json)).await
}

async fn apply_pipeline_tx(
    store: &Store,
    name: &str,
    text: &str,
    author: &str,
    spec: &PipelineSpec,
    spec_json: &str,
) -> Result<Applied> {
    let kind = DefinitionKind::Pipeline;
    let mut tx = store.write().await?;
    let current = defs::get_for_update(store, &mut tx, kind, name).await?;
    if let Some(current) = &current
        && current.spec == spec_json
    {
        return Ok(Applied {
            kind,
            name: name.to_string(),
            revision: current.revision,
            change: Change::Unchanged,
        });
    }
    // The projects that run this pipeline must still make sense with it.
    for project_name in defs::projects_using(&mut tx, name).await? {
        let Some(row) = defs::get(&mut tx, DefinitionKind::Project, &project_name).await? else {
            continue;
        };
        let project: ProjectSpec = from_json(&row.spec)?;
        let mut pipelines = BTreeMap::new();
        for p in &project.pipelines {
            if p == name {
                pipelines.insert(p.clone(), spec.clone());
            } else if let Some(row) = defs::get_pipeline_shared(store, &mut tx, p).await? {
                pipelines.insert(p.clone(), from_json(&row.spec)?);
            }
        }
        check_project_graph(&project, &pipelines).map_err(|e| {
            invalid(format!(
                "pipeline {name:?} would break project {project_name:?}: {e}"
            ))
        })?;
    }
    let applied = save(
        &mut tx,
        kind,
        name,
        text,
        author,
        spec_json,
        current.as_ref(),
    )
    .await?;
    tx.commit().await?;
    Ok(applied)
}

/// `PUT /projects/{name}`.
pub async fn apply_project(
    state: &AppState,
    name: &str,
    text: &str,
    author: &str,
) -> Result<Applied> {
    let spec = off_runtime(text, name, parse_project).await?;
    let spec_json = canonical(&spec)?;
    retrying(|| apply_project_tx(&state.store, name, text, author, &spec, &spec_json)).await
}

async fn apply_project_tx(
    store: &Store,
    name: &str,
    text: &str,
    author: &str,
    spec: &ProjectSpec,
    spec_json: &str,
) -> Result<Applied> {
    let kind = DefinitionKind::Project;
    let mut tx = store.write().await?;
    let current = defs::get_for_update(store, &mut tx, kind, name).await?;
    if let Some(current) = &current
        && current.spec == spec_json
    {
        return Ok(Applied {
            kind,
            name: name.to_string(),
            revision: current.revision,
            change: Change::Unchanged,
        });
    }
    let mut pipelines = BTreeMap::new();
    for p in &spec.pipelines {
        if let Some(row) = defs::get_pipeline_shared(store, &mut tx, p).await? {
            pipelines.insert(p.clone(), from_json::<PipelineSpec>(&row.spec)?);
        }
    }
    check_project_graph(spec, &pipelines).map_err(invalid)?;
    let applied = save(
        &mut tx,
        kind,
        name,
        text,
        author,
        spec_json,
        current.as_ref(),
    )
    .await?;
    defs::set_project_pipelines(&mut tx, name, &spec.pipelines).await?;
    tx.commit().await?;
    Ok(applied)
}

async fn save(
    conn: &mut sqlx::AnyConnection,
    kind: DefinitionKind,
    name: &str,
    text: &str,
    author: &str,
    spec_json: &str,
    current: Option<&DefRow>,
) -> Result<Applied> {
    let now = now_ms();
    let revision = defs::add_revision(conn, kind, name, author, now, false, text)
        .await
        .map_err(concurrent_change)?;
    defs::upsert(
        conn,
        kind,
        &DefRow {
            name: name.to_string(),
            spec: spec_json.to_string(),
            text: text.to_string(),
            revision,
            created_at: current.map_or(now, |c| c.created_at),
            updated_at: now,
            updated_by: author.to_string(),
        },
    )
    .await?;
    Ok(Applied {
        kind,
        name: name.to_string(),
        revision,
        change: if current.is_some() {
            Change::Updated
        } else {
            Change::Created
        },
    })
}

/// Two first applications of one name at once: one wins.
fn concurrent_change(e: ControllerError) -> ControllerError {
    match &e {
        ControllerError::Storage(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            ControllerError::Conflict(
                "the definition was changed at the same time; apply it again".into(),
            )
        }
        _ => e,
    }
}

/// `DELETE /projects/{name}` and `DELETE /pipelines/{name}`. Builds of a
/// deleted project stay; a pipeline that a project runs cannot go.
pub async fn delete(
    state: &AppState,
    kind: DefinitionKind,
    name: &str,
    author: &str,
) -> Result<()> {
    check_name(what(kind), name)?;
    retrying(|| async {
        let mut tx = state.store.write().await?;
        if kind == DefinitionKind::Pipeline {
            let users = defs::projects_using(&mut tx, name).await?;
            if !users.is_empty() {
                return Err(ControllerError::Conflict(format!(
                    "pipeline {name:?} is used by project{} {}: change or delete {} first",
                    if users.len() == 1 { "" } else { "s" },
                    users.join(", "),
                    if users.len() == 1 { "it" } else { "them" }
                )));
            }
        }
        if !defs::delete(&mut tx, kind, name)
            .await
            .map_err(still_used)?
        {
            return Err(ControllerError::NotFound(format!(
                "no {} {name:?}",
                what(kind)
            )));
        }
        defs::add_revision(&mut tx, kind, name, author, now_ms(), true, "")
            .await
            .map_err(concurrent_change)?;
        tx.commit().await
    })
    .await
}

/// A project took the pipeline in use while it was being deleted.
fn still_used(e: ControllerError) -> ControllerError {
    match &e {
        ControllerError::Storage(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
            ControllerError::Conflict("the pipeline is used by a project".into())
        }
        _ => e,
    }
}

/// `GET /projects/{name}/revisions`.
pub async fn revisions(
    state: &AppState,
    kind: DefinitionKind,
    name: &str,
) -> Result<Vec<Revision>> {
    check_name(what(kind), name)?;
    let mut conn = state.store.conn().await?;
    let list = defs::revisions(&mut conn, kind, name).await?;
    if list.is_empty() {
        return Err(ControllerError::NotFound(format!(
            "no {} {name:?}",
            what(kind)
        )));
    }
    Ok(list)
}

/// `GET /projects/{name}` and `GET /pipelines/{name}`.
pub async fn get(state: &AppState, kind: DefinitionKind, name: &str) -> Result<DefRow> {
    check_name(what(kind), name)?;
    let mut conn = state.store.conn().await?;
    defs::get(&mut conn, kind, name)
        .await?
        .ok_or_else(|| ControllerError::NotFound(format!("no {} {name:?}", what(kind))))
}

/// `GET /projects` and `GET /pipelines`.
pub async fn list(state: &AppState, kind: DefinitionKind) -> Result<Vec<DefRow>> {
    let mut conn = state.store.conn().await?;
    defs::list(&mut conn, kind).await
}
