//! `icktool apply -f FILE|DIR` (alias `make-it-so`): projects and pipelines
//! from YAML. Everything is parsed and checked first, with the
//! controller's own rules and against what it already holds, so that a
//! mistake anywhere changes nothing; then pipelines are applied before the
//! projects that run them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::bail;
use ick_api::actions::BUILTIN_KINDS;
use ick_api::controller::{
    Applied, Change, DefinitionKind, PipelineSpec, ProjectSpec, StoredPipeline, StoredProject,
};
use ick_api::work::WorkerInfo;
use ick_definitions::{check_project_graph, parse_pipeline, parse_project};
use reqwest::{Method, StatusCode};

use crate::Exit;
use crate::connection::{Ick, Refused, Service, describe, segment};
use crate::definitions::{Definition, Spec, kind_name, parse_all, read_all};
use crate::output::Out;

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// A definition file, a folder of them (*.yaml, *.yml, *.ick), or `-`
    /// for stdin. Repeat for more.
    #[arg(short = 'f', long = "file", value_name = "FILE|DIR")]
    files: Vec<PathBuf>,
    /// The same, without -f (as the original `icktool make-it-so FILE`).
    #[arg(value_name = "FILE|DIR")]
    more: Vec<PathBuf>,
}

pub async fn run(ick: &Ick, args: ApplyArgs, out: &Out) -> anyhow::Result<Exit> {
    let mut paths = args.files;
    paths.extend(args.more);
    if paths.is_empty() {
        bail!("nothing to apply: give -f FILE or -f DIR");
    }
    let definitions = parse_all(&read_all(&paths)?)?;
    if definitions.is_empty() {
        bail!("the files hold no definition");
    }
    let applied = apply(ick, definitions, out.human()).await?;
    out.print(&applied, String::new)?;
    Ok(Exit::Ok)
}

/// Checks and applies `definitions`; prints a line per definition when
/// `human`. Also used by `icktool up --demo`.
pub async fn apply(
    ick: &Ick,
    definitions: Vec<Definition>,
    human: bool,
) -> anyhow::Result<Vec<Applied>> {
    check(ick, &definitions).await?;
    let mut applied = Vec::new();
    let ordered = definitions
        .iter()
        .filter(|d| d.kind == DefinitionKind::Pipeline)
        .chain(
            definitions
                .iter()
                .filter(|d| d.kind == DefinitionKind::Project),
        );
    for definition in ordered {
        let kind = kind_name(definition.kind);
        let path = format!("/{kind}s/{}", segment(&definition.name));
        let result = ick
            .send(Service::Controller, Method::PUT, &path, &[], |r| {
                r.header("content-type", "application/yaml")
                    .body(definition.text.clone())
            })
            .await;
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                let done = if applied.is_empty() {
                    String::new()
                } else {
                    format!(" ({} applied before it)", applied.len())
                };
                return Err(match e.downcast::<Refused>() {
                    Ok(refused) => anyhow::anyhow!(
                        "{}: {kind} {:?}: {}{done}",
                        definition.origin(),
                        definition.name,
                        describe(&refused.problem)
                    ),
                    Err(e) => e.context(format!("applying {kind} {:?}{done}", definition.name)),
                });
            }
        };
        let result: Applied = crate::connection::read_json(response).await?;
        if human {
            let what = match result.change {
                Change::Created => format!("created (revision {})", result.revision),
                Change::Updated => format!("updated (revision {})", result.revision),
                Change::Unchanged => "unchanged".to_string(),
            };
            crate::output::write_stdout(&format!("{kind} {} {what}\n", result.name))?;
        }
        applied.push(result);
    }
    Ok(applied)
}

type Pipelines = BTreeMap<String, PipelineSpec>;
type Projects = BTreeMap<String, ProjectSpec>;

/// The controller's checks, here, on everything at once: each definition
/// alone, then each project against its pipelines (from the files or the
/// controller), then each stored project against the pipelines that change.
async fn check(ick: &Ick, definitions: &[Definition]) -> anyhow::Result<()> {
    // Plugin kinds are those connected workers advertise. A client that
    // may not read the workers (builds:read) leaves that check to the
    // controller.
    let plugins: Option<BTreeSet<String>> = match ick
        .get::<Vec<WorkerInfo>>(Service::Controller, "/workers")
        .await
    {
        Ok(workers) => Some(
            workers
                .into_iter()
                .flat_map(|w| w.kinds)
                .filter(|k| !BUILTIN_KINDS.contains(&k.as_str()))
                .collect(),
        ),
        Err(e)
            if e.downcast_ref::<Refused>()
                .is_some_and(|r| r.problem.status_code() == StatusCode::FORBIDDEN) =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    let kind_known = |k: &str| plugins.as_ref().is_none_or(|p| p.contains(k));
    let mut new_pipelines = Pipelines::new();
    let mut new_projects = Projects::new();
    for d in definitions {
        let invalid = |e: ick_definitions::DefinitionError| anyhow::anyhow!("{}", d.locate(e));
        match &d.spec {
            Spec::Pipeline(_) => {
                let spec = parse_pipeline(&d.text, &d.name, kind_known).map_err(invalid)?;
                new_pipelines.insert(d.name.clone(), spec);
            }
            Spec::Project(_) => {
                let spec = parse_project(&d.text, &d.name).map_err(invalid)?;
                new_projects.insert(d.name.clone(), spec);
            }
        }
    }
    let stored_pipelines: Vec<StoredPipeline> = ick.get(Service::Controller, "/pipelines").await?;
    let mut pipelines: Pipelines = stored_pipelines
        .into_iter()
        .map(|p| (p.name, p.spec))
        .collect();
    pipelines.extend(new_pipelines.clone());
    for (name, project) in &new_projects {
        if let Err(e) = check_project_graph(project, &pipelines) {
            let origin = origin(definitions, DefinitionKind::Project, name);
            bail!("{origin}: {e}");
        }
    }
    if !new_pipelines.is_empty() {
        let stored_projects: Vec<StoredProject> = ick.get(Service::Controller, "/projects").await?;
        for project in stored_projects {
            if new_projects.contains_key(&project.name)
                || !project
                    .spec
                    .pipelines
                    .iter()
                    .any(|p| new_pipelines.contains_key(p))
            {
                continue;
            }
            if let Err(e) = check_project_graph(&project.spec, &pipelines) {
                let changed: Vec<&str> = project
                    .spec
                    .pipelines
                    .iter()
                    .filter(|p| new_pipelines.contains_key(*p))
                    .map(String::as_str)
                    .collect();
                let origin = origin(definitions, DefinitionKind::Pipeline, changed[0]);
                bail!(
                    "{origin}: pipeline {:?} would break project {:?}, which runs it: {e}",
                    changed[0],
                    project.name
                );
            }
        }
    }
    Ok(())
}

fn origin(definitions: &[Definition], kind: DefinitionKind, name: &str) -> String {
    definitions
        .iter()
        .find(|d| d.kind == kind && d.name == name)
        .map_or_else(|| name.to_string(), |d| d.origin())
}
