//! Applying and deleting projects and pipelines: parse and check first
//! (nothing stored on error), then one transaction that checks the
//! author's roles ([`authorize`]) and records the change, its revision and
//! its audit entry ([`record`]). Applying what is already stored changes
//! nothing.

mod authorize;
mod record;

use std::collections::BTreeMap;

use ick_api::actions::BUILTIN_KINDS;
use ick_api::auth::Caller;
use ick_api::controller::{
    Applied, ApplyAnswer, ApplyRequest, AuditAction, Change, DefinitionFile, DefinitionKind,
    DefinitionProblem, PipelineSpec, ProjectSpec, Revision, Stored,
};
use ick_definitions::files::{Definition, FileError, Spec, kind_name};
use ick_definitions::needs_cycle;

use self::authorize::{authorize, readable};
use self::record::record_apply;
use crate::access::{self, Actor, Bindings, Identity};
use crate::audit;
use crate::core::Core;
use crate::definitions::{
    DefinitionError, canonical, check_name, check_project_graph, parse_pipeline, parse_project,
};
use crate::error::{ControllerError, Result};
use crate::store::definitions::{self as defs, DefRow};
use crate::store::{from_json, now_ms, retrying, roles, time};

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
async fn advertised_kinds(core: &Core) -> Result<Vec<String>> {
    let since = now_ms() - core.config.work.worker_timeout.as_millis() as i64;
    let mut conn = core.store.conn().await?;
    let workers = crate::store::work::workers::workers(&mut conn, Some(since)).await?;
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

/// One definition to apply: parsed and checked alone, with where it came
/// from when it came in a file.
#[derive(Debug, Clone)]
struct Item {
    kind: DefinitionKind,
    name: String,
    text: String,
    spec: Spec,
    origin: Option<Definition>,
}

/// Why a set of definitions cannot be applied: for each, the item it is
/// about (by index) and what is wrong.
type Refusals = Vec<(usize, String)>;

/// What a set of definitions needs to be checked and applied beyond
/// itself.
struct Context {
    plugins: Vec<String>,
    mail: bool,
}

async fn context(core: &Core) -> Result<Context> {
    Ok(Context {
        plugins: advertised_kinds(core).await?,
        mail: core.config.mail.is_some(),
    })
}

/// Who applies or deletes: the caller (for its roles) and how the audit
/// log and revisions name it.
#[derive(Clone, Copy)]
pub struct Author<'a> {
    pub caller: &'a Caller,
    pub actor: &'a Actor,
}

/// `PUT /pipelines/{name}`.
pub async fn apply_pipeline(
    core: &Core,
    name: &str,
    text: &str,
    author: Author<'_>,
) -> Result<Applied> {
    let spec = off_runtime(text, name, parse_pipeline).await?;
    apply_one(
        core,
        DefinitionKind::Pipeline,
        name,
        text,
        Spec::Pipeline(spec),
        author,
    )
    .await
}

/// `PUT /projects/{name}`.
pub async fn apply_project(
    core: &Core,
    name: &str,
    text: &str,
    author: Author<'_>,
) -> Result<Applied> {
    let spec = off_runtime(text, name, parse_project).await?;
    apply_one(
        core,
        DefinitionKind::Project,
        name,
        text,
        Spec::Project(spec),
        author,
    )
    .await
}

async fn apply_one(
    core: &Core,
    kind: DefinitionKind,
    name: &str,
    text: &str,
    spec: Spec,
    author: Author<'_>,
) -> Result<Applied> {
    let items = vec![Item {
        kind,
        name: name.to_string(),
        text: text.to_string(),
        spec,
        origin: None,
    }];
    let context = context(core).await?;
    let bindings = access::bindings(core).await?;
    let mut applied = retrying(|| apply_tx(core, &items, author, &bindings, false, &context))
        .await?
        .map_err(|list| {
            invalid(
                list.into_iter()
                    .map(|(_, m)| m)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
    Ok(applied.remove(0))
}

/// `POST /definitions`: every definition of `files`, in one transaction,
/// or none; every mistake is reported, placed in its file.
pub async fn apply_files(
    core: &Core,
    request: ApplyRequest,
    author: Author<'_>,
) -> Result<ApplyAnswer> {
    if request.files.is_empty() {
        return Err(ControllerError::BadRequest(
            "no files: give at least one definition file".into(),
        ));
    }
    let dry_run = request.dry_run;
    let items = tokio::task::spawn_blocking(move || parse_files(&request.files))
        .await
        .map_err(|e| ControllerError::Internal(format!("definition parser: {e}")))?
        .map_err(|errors| {
            ControllerError::InvalidDefinitions(errors.into_iter().map(problem).collect())
        })?;
    let context = context(core).await?;
    let bindings = access::bindings(core).await?;
    let applied = retrying(|| apply_tx(core, &items, author, &bindings, dry_run, &context))
        .await?
        .map_err(|list| {
            ControllerError::InvalidDefinitions(
                list.into_iter()
                    .map(|(i, message)| match &items[i].origin {
                        Some(d) => DefinitionProblem {
                            file: d.file.clone(),
                            line: Some(d.line),
                            column: None,
                            message: format!("{} {:?}: {message}", kind_name(d.kind), d.name),
                        },
                        None => DefinitionProblem {
                            file: String::new(),
                            line: None,
                            column: None,
                            message,
                        },
                    })
                    .collect(),
            )
        })?;
    Ok(ApplyAnswer { dry_run, applied })
}

fn problem(e: FileError) -> DefinitionProblem {
    DefinitionProblem {
        file: e.file,
        line: e.line,
        column: e.column,
        message: e.message,
    }
}

/// Parses every file and checks each definition alone, as `PUT` does;
/// pipelines come first, then projects, each in the files' order.
fn parse_files(files: &[DefinitionFile]) -> std::result::Result<Vec<Item>, Vec<FileError>> {
    let mut definitions = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let (found, mistakes) = ick_definitions::read_file(&file.name, &file.text);
        definitions.extend(found);
        errors.extend(mistakes);
    }
    errors.extend(ick_definitions::check_duplicates(&definitions));
    let mut items = Vec::new();
    for d in definitions {
        let spec = match d.kind {
            DefinitionKind::Pipeline => parse_pipeline(&d.text, &d.name).map(Spec::Pipeline),
            DefinitionKind::Project => parse_project(&d.text, &d.name).map(Spec::Project),
        };
        match spec {
            Ok(spec) => items.push(Item {
                kind: d.kind,
                name: d.name.clone(),
                text: d.text.clone(),
                spec,
                origin: Some(d),
            }),
            Err(e) => errors.push(d.locate(e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    items.sort_by_key(|i| i.kind != DefinitionKind::Pipeline);
    Ok(items)
}

/// Checks `items` against what is stored and against each other, then
/// stores them, in one transaction; a dry run rolls it back, so that the
/// answer says exactly what would change. Before anything, every
/// definition that would change is checked against the author's roles
/// (with what the transaction reads of who runs which pipeline): one
/// refusal refuses them all (403).
async fn apply_tx(
    core: &Core,
    items: &[Item],
    author: Author<'_>,
    bindings: &Bindings,
    dry_run: bool,
    context: &Context,
) -> Result<std::result::Result<Vec<Applied>, Refusals>> {
    let store = &core.store;
    let mut tx = store.write().await?;
    let mut current = Vec::new();
    for item in items {
        current.push(defs::get_for_update(store, &mut tx, item.kind, &item.name).await?);
    }
    let mut pipelines: BTreeMap<String, PipelineSpec> = BTreeMap::new();
    for row in defs::list(&mut tx, DefinitionKind::Pipeline).await? {
        pipelines.insert(row.name.clone(), from_json(&row.spec)?);
    }
    let runs = defs::all_project_pipelines(&mut tx).await?;
    let mut specs = Vec::new();
    for item in items {
        specs.push(match &item.spec {
            Spec::Pipeline(p) => canonical(p),
            Spec::Project(p) => canonical(p),
        }?);
    }
    let who = Identity::of(Some(author.caller));
    let refused = authorize(bindings, &who, items, &current, &specs, &runs);
    if !refused.is_empty() {
        return Err(ControllerError::Forbidden(refused.join("; ")));
    }
    let mut new_pipelines = BTreeMap::new();
    let mut new_projects = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        match &item.spec {
            Spec::Pipeline(spec) => {
                pipelines.insert(item.name.clone(), spec.clone());
                new_pipelines.insert(item.name.clone(), i);
            }
            Spec::Project(spec) => {
                new_projects.insert(item.name.clone(), (i, spec));
            }
        }
    }
    // A project may run only pipelines its author may read: one that only
    // projects hidden from the author run is, to it, not there.
    let visible: BTreeMap<String, PipelineSpec> = pipelines
        .iter()
        .filter(|(name, _)| {
            new_pipelines.contains_key(*name) || readable(bindings, &who, name, &runs)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut refusals = Refusals::new();
    // A cycle among the pipelines, whatever project runs them.
    for (name, &i) in &new_pipelines {
        if let Some(cycle) = needs_cycle(&pipelines, [name]) {
            refusals.push((i, format!("needs: cycle {}", cycle.join(" → "))));
        }
    }
    for (i, spec) in new_projects.values() {
        if let Err(e) = check_project_graph(spec, &visible) {
            refusals.push((*i, e));
        }
    }
    // The stored projects that run a changed pipeline must still make
    // sense with it.
    for (name, &i) in &new_pipelines {
        for project_name in defs::projects_using(&mut tx, name).await? {
            if new_projects.contains_key(&project_name) {
                continue;
            }
            let Some(row) = defs::get(&mut tx, DefinitionKind::Project, &project_name).await?
            else {
                continue;
            };
            let project: ProjectSpec = from_json(&row.spec)?;
            if let Err(e) = check_project_graph(&project, &pipelines) {
                refusals.push((
                    i,
                    format!("pipeline {name:?} would break project {project_name:?}: {e}"),
                ));
            }
        }
    }
    if !refusals.is_empty() {
        refusals.sort();
        refusals.dedup();
        return Ok(Err(refusals));
    }
    let mut applied = Vec::new();
    let mut access_changed = false;
    for ((item, current), spec_json) in items.iter().zip(&current).zip(&specs) {
        let mut done = match current {
            Some(c) if &c.spec == spec_json => Applied {
                kind: item.kind,
                name: item.name.clone(),
                revision: c.revision,
                change: Change::Unchanged,
                warnings: Vec::new(),
                previous_text: None,
                text: None,
            },
            _ => {
                let done = save(
                    &mut tx,
                    item.kind,
                    &item.name,
                    &item.text,
                    &author.actor.shown(),
                    spec_json,
                    current.as_ref(),
                )
                .await?;
                record_apply(&mut tx, author, bindings, &who, item, &done, &runs).await?;
                if let Spec::Project(p) = &item.spec {
                    defs::set_project_pipelines(&mut tx, &item.name, &p.pipelines).await?;
                    roles::set_visibility(&mut tx, &item.name, p.visibility).await?;
                    access_changed = true;
                }
                done
            }
        };
        done.warnings = warnings(item, context);
        if dry_run {
            done.previous_text = current.as_ref().map(|c| c.text.clone());
            done.text = Some(item.text.clone());
        }
        applied.push(done);
    }
    if dry_run {
        // Dropped uncommitted, it rolls back.
        drop(tx);
    } else {
        tx.commit().await?;
        if access_changed {
            core.access.changed();
        }
    }
    Ok(Ok(applied))
}

/// What a definition will do that its author may not expect.
fn warnings(item: &Item, context: &Context) -> Vec<String> {
    let mut found = Vec::new();
    match &item.spec {
        Spec::Pipeline(spec) => {
            for (i, action) in spec.actions.iter().enumerate() {
                if !action.is_builtin() && !context.plugins.contains(&action.kind) {
                    found.push(format!(
                        "pipeline {:?}: action {}: no connected worker has a plugin for kind {:?}; \
                         its builds wait until one that has it connects",
                        item.name,
                        i + 1,
                        action.kind
                    ));
                }
            }
        }
        Spec::Project(spec) => {
            if !spec.notify.to.is_empty() && !context.mail {
                found.push(format!(
                    "project {:?} notifies {}, but the controller has no `mail:` configured: \
                     its mail waits unsent in the outbox",
                    item.name,
                    spec.notify.to.join(", ")
                ));
            }
        }
    }
    found
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
        warnings: Vec::new(),
        previous_text: None,
        text: None,
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

/// `DELETE /projects/{name}` (its `owner`) and `DELETE /pipelines/{name}`
/// (`maintainer` of every project that runs it: then none may, so in
/// practice `creator` or a maintainer of some project). Builds of a
/// deleted project stay; its members go; a pipeline that a project runs
/// cannot go.
pub async fn delete(
    core: &Core,
    kind: DefinitionKind,
    name: &str,
    author: Author<'_>,
) -> Result<()> {
    check_name(what(kind), name)?;
    let bindings = access::bindings(core).await?;
    let who = Identity::of(Some(author.caller));
    if kind == DefinitionKind::Project {
        access::judge::<access::DeleteProject>(&bindings, &who, name, || {
            format!("no project {name:?}")
        })?;
    }
    retrying(|| async {
        let mut tx = core.store.write().await?;
        let mut detail = serde_json::json!({});
        if kind == DefinitionKind::Pipeline {
            let users = defs::projects_using(&mut tx, name).await?;
            if let Err(why) = bindings.may_change_pipeline(&who, &users) {
                return Err(ControllerError::Forbidden(access::pipeline_refusal(
                    &who, name, why,
                )));
            }
            if !users.is_empty() {
                return Err(ControllerError::Conflict(format!(
                    "pipeline {name:?} is used by project{} {}: change or delete {} first",
                    if users.len() == 1 { "" } else { "s" },
                    users.join(", "),
                    if users.len() == 1 { "it" } else { "them" }
                )));
            }
            let mut needed_by = Vec::new();
            for row in defs::list(&mut tx, DefinitionKind::Pipeline).await? {
                let spec: PipelineSpec = from_json(&row.spec)?;
                if spec.needs.iter().any(|n| n == name) {
                    needed_by.push(row.name);
                }
            }
            if !needed_by.is_empty() {
                return Err(ControllerError::Conflict(format!(
                    "pipeline {name:?} is needed by pipeline{} {}: change or delete {} first",
                    if needed_by.len() == 1 { "" } else { "s" },
                    needed_by.join(", "),
                    if needed_by.len() == 1 { "it" } else { "them" }
                )));
            }
        } else {
            detail = serde_json::json!({"members": roles::members(&mut tx, name).await?});
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
        let revision = defs::add_revision(
            &mut tx,
            kind,
            name,
            &author.actor.shown(),
            now_ms(),
            true,
            "",
        )
        .await
        .map_err(concurrent_change)?;
        detail["revision"] = revision.into();
        let (action, project) = match kind {
            DefinitionKind::Project => (AuditAction::ProjectDelete, Some(name)),
            DefinitionKind::Pipeline => (AuditAction::PipelineDelete, None),
        };
        audit::record(&mut tx, author.actor, action, project, name, detail).await?;
        tx.commit().await
    })
    .await?;
    if kind == DefinitionKind::Project {
        core.access.changed();
    }
    Ok(())
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

/// `GET /projects/{name}/revisions` and `GET /pipelines/{name}/revisions`
/// (the caller's right to read it checked first).
pub async fn revisions(core: &Core, kind: DefinitionKind, name: &str) -> Result<Vec<Revision>> {
    check_name(what(kind), name)?;
    let mut conn = core.store.conn().await?;
    let list = defs::revisions(&mut conn, kind, name).await?;
    if list.is_empty() {
        return Err(ControllerError::NotFound(format!(
            "no {} {name:?}",
            what(kind)
        )));
    }
    Ok(list)
}

/// `GET /projects/{name}` and `GET /pipelines/{name}` (the caller's right
/// to read it checked first).
pub async fn get(core: &Core, kind: DefinitionKind, name: &str) -> Result<DefRow> {
    check_name(what(kind), name)?;
    let mut conn = core.store.conn().await?;
    defs::get(&mut conn, kind, name)
        .await?
        .ok_or_else(|| ControllerError::NotFound(format!("no {} {name:?}", what(kind))))
}

/// Refuses `caller` reading a pipeline: 404 (as for none) unless it may
/// read a project that runs it, or no project runs it.
pub async fn check_read_pipeline(core: &Core, caller: &Caller, name: &str) -> Result<()> {
    check_name("pipeline", name)?;
    let bindings = access::bindings(core).await?;
    let users = {
        let mut conn = core.store.conn().await?;
        defs::projects_using(&mut conn, name).await?
    };
    if bindings.may_read_pipeline(&Identity::of(Some(caller)), &users) {
        Ok(())
    } else {
        Err(ControllerError::NotFound(format!("no pipeline {name:?}")))
    }
}

/// `GET /projects` and `GET /pipelines`: what `caller` may read.
pub async fn list(core: &Core, kind: DefinitionKind, caller: &Caller) -> Result<Vec<DefRow>> {
    let bindings = access::bindings(core).await?;
    let who = Identity::of(Some(caller));
    let mut conn = core.store.conn().await?;
    let mut rows = defs::list(&mut conn, kind).await?;
    if bindings.is_admin(&who) {
        return Ok(rows);
    }
    match kind {
        DefinitionKind::Project => rows.retain(|r| bindings.may_read(&who, &r.name)),
        DefinitionKind::Pipeline => {
            let runs = defs::all_project_pipelines(&mut conn).await?;
            rows.retain(|r| readable(&bindings, &who, &r.name, &runs));
        }
    }
    Ok(rows)
}
