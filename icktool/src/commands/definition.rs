//! `icktool project …` and `icktool pipeline …`: the same four commands on
//! the two kinds of definition.

use ick_api::controller::{Revision, StoredPipeline, StoredProject};
use reqwest::Method;

use crate::Exit;
use crate::connection::{Ick, Service, segment};
use crate::output::{Out, ago, time, write_stdout};

/// Which kind the command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Project,
    Pipeline,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Project => "project",
            Kind::Pipeline => "pipeline",
        }
    }

    fn path(self, name: &str) -> String {
        format!("/{}s/{}", self.name(), segment(name))
    }
}

#[derive(clap::Subcommand)]
pub enum DefinitionCommand {
    /// List them.
    #[command(alias = "ls")]
    List,
    /// Print one as it was applied (or, with --output, as the API has it).
    Show { name: String },
    /// Delete one (a project's builds stay; a pipeline in use cannot go).
    #[command(alias = "rm")]
    Delete { name: String },
    /// Every change of one: who, when, and the text.
    Revisions {
        name: String,
        /// Print the text of each revision too.
        #[arg(long)]
        text: bool,
    },
}

pub async fn run(
    ick: &Ick,
    kind: Kind,
    command: DefinitionCommand,
    out: &Out,
) -> anyhow::Result<Exit> {
    match command {
        DefinitionCommand::List => list(ick, kind, out).await?,
        DefinitionCommand::Show { name } => show(ick, kind, &name, out).await?,
        DefinitionCommand::Delete { name } => {
            ick.delete(Service::Controller, &kind.path(&name)).await?;
            out.print(
                &serde_json::json!({"kind": kind.name(), "name": name, "deleted": true}),
                || format!("{} {name} deleted\n", kind.name()),
            )?;
        }
        DefinitionCommand::Revisions { name, text } => {
            let path = format!("{}/revisions", kind.path(&name));
            let revisions: Vec<Revision> = ick.get(Service::Controller, &path).await?;
            if text && out.human() {
                let mut all = String::new();
                for r in &revisions {
                    all.push_str(&format!(
                        "# revision {} by {} at {}{}\n{}\n",
                        r.revision,
                        r.author,
                        time(r.at),
                        if r.deleted { " (deleted)" } else { "" },
                        r.text.trim_end()
                    ));
                }
                write_stdout(&all)?;
            } else {
                let rows = revisions
                    .iter()
                    .map(|r| {
                        vec![
                            r.revision.to_string(),
                            time(r.at),
                            r.author.clone(),
                            if r.deleted { "deleted" } else { "applied" }.to_string(),
                        ]
                    })
                    .collect();
                out.list(
                    &revisions,
                    &["revision", "at (utc)", "by", "change"],
                    rows,
                    "no revisions",
                )?;
            }
        }
    }
    Ok(Exit::Ok)
}

async fn list(ick: &Ick, kind: Kind, out: &Out) -> anyhow::Result<()> {
    match kind {
        Kind::Project => {
            let all: Vec<StoredProject> = ick.get(Service::Controller, "/projects").await?;
            let rows = all
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.spec.pipelines.join(", "),
                        p.revision.to_string(),
                        ago(p.updated_at),
                    ]
                })
                .collect();
            out.list(
                &all,
                &["name", "pipelines", "revision", "updated"],
                rows,
                "no projects: apply some with `icktool apply -f FILE`",
            )
        }
        Kind::Pipeline => {
            let all: Vec<StoredPipeline> = ick.get(Service::Controller, "/pipelines").await?;
            let rows = all
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.spec.actions.len().to_string(),
                        p.spec.needs.join(", "),
                        p.revision.to_string(),
                        ago(p.updated_at),
                    ]
                })
                .collect();
            out.list(
                &all,
                &["name", "actions", "needs", "revision", "updated"],
                rows,
                "no pipelines: apply some with `icktool apply -f FILE`",
            )
        }
    }
}

async fn show(ick: &Ick, kind: Kind, name: &str, out: &Out) -> anyhow::Result<()> {
    if out.human() {
        let response = ick
            .send(
                Service::Controller,
                Method::GET,
                &kind.path(name),
                &[],
                |r| r.header("accept", "application/yaml"),
            )
            .await?;
        let mut text = response.text().await?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        return write_stdout(&text);
    }
    match kind {
        Kind::Project => {
            let p: StoredProject = ick.get(Service::Controller, &kind.path(name)).await?;
            out.print(&p, String::new)
        }
        Kind::Pipeline => {
            let p: StoredPipeline = ick.get(Service::Controller, &kind.path(name)).await?;
            out.print(&p, String::new)
        }
    }
}
