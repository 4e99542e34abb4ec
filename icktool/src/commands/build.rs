//! `icktool build list|show|cancel|retry`, and how a command names a
//! build: its id, `PROJECT/NUMBER`, or `PROJECT` for its latest build.

use anyhow::bail;
use ick_api::controller::{
    BuildList, BuildQuery, BuildSummary, BuildView, NodeView, StoredProject,
};
use reqwest::{Method, StatusCode};

use crate::Exit;
use crate::connection::{Ick, Refused, Service, segment};
use crate::output::{Out, ago, duration, or_dash, without_status};

#[derive(clap::Subcommand)]
pub enum BuildCommand {
    /// Builds, newest first.
    #[command(alias = "ls")]
    List {
        /// Only this project's.
        #[arg(long, short = 'p')]
        project: Option<String>,
        /// Only in these states (comma-separated: queued,running,succeeded,failed,cancelled).
        #[arg(long, short = 's')]
        status: Option<String>,
        /// At most this many (1 to 500).
        #[arg(long, short = 'n', default_value_t = 20,
              value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
    },
    /// A build and each of its actions.
    Show {
        /// The build: its id, PROJECT/NUMBER, or PROJECT for the latest.
        build: String,
    },
    /// Cancel a build: queued actions end at once, running ones are stopped.
    Cancel {
        /// The build: its id, PROJECT/NUMBER, or PROJECT for the latest.
        build: String,
    },
    /// Run again the failed, skipped and cancelled pipelines of an ended build.
    Retry {
        /// The build: its id, PROJECT/NUMBER, or PROJECT for the latest.
        build: String,
    },
}

pub async fn run(ick: &Ick, command: BuildCommand, out: &Out) -> anyhow::Result<Exit> {
    match command {
        BuildCommand::List {
            project,
            status,
            limit,
        } => {
            let query = BuildQuery {
                project,
                status,
                limit: Some(limit),
                before: None,
            };
            let list: BuildList = ick
                .get_query(Service::Controller, "/builds", &query)
                .await?;
            let rows = list.builds.iter().map(row).collect();
            out.list(
                &list,
                &["build", "status", "triggered", "took", "by", "id"],
                rows,
                "no builds",
            )?;
        }
        BuildCommand::Show { build } => {
            let view = resolve(ick, &build).await?;
            out.print(&view, || show(&view))?;
            if !view.mail_configured {
                warn_if_notify_waits(ick, &view.build.project).await;
            }
        }
        BuildCommand::Cancel { build } => {
            let view = resolve(ick, &build).await?;
            let path = format!("/builds/{}/cancel", view.build.id);
            let summary: BuildSummary = ick
                .call(Service::Controller, Method::POST, &path, None::<&()>)
                .await?;
            out.print(&summary, || {
                format!(
                    "build {} #{}: cancel requested (it is {})\n",
                    summary.project, summary.number, summary.status
                )
            })?;
        }
        BuildCommand::Retry { build } => {
            let view = resolve(ick, &build).await?;
            let path = format!("/builds/{}/retry", view.build.id);
            let summary: BuildSummary = ick
                .call(Service::Controller, Method::POST, &path, None::<&()>)
                .await?;
            out.print(&summary, || {
                format!(
                    "build {} #{} runs again (run {}); follow it with: icktool log --follow {}/{}\n",
                    summary.project, summary.number, summary.run, summary.project, summary.number
                )
            })?;
        }
    }
    Ok(Exit::Ok)
}

fn took(b: &BuildSummary) -> String {
    match (b.started_at, b.ended_at) {
        (Some(start), Some(end)) => duration((end - start).num_seconds()),
        (Some(start), None) => format!("{}…", duration((chrono::Utc::now() - start).num_seconds())),
        _ => "-".to_string(),
    }
}

fn row(b: &BuildSummary) -> Vec<String> {
    vec![
        format!("{}/{}", b.project, b.number),
        b.status.to_string(),
        ago(b.created_at),
        took(b),
        b.triggered_by.clone(),
        b.id.clone(),
    ]
}

/// `pipeline/N`, N from 1, as `build show` and `log --node` name actions.
pub fn node_label(n: &NodeView) -> String {
    format!("{}/{}", n.pipeline, n.index + 1)
}

fn show(view: &BuildView) -> String {
    let b = &view.build;
    let mut text = format!(
        "build {}/{}  {}{}\nid:        {}\ntriggered: {} by {}\ntook:      {}\n",
        b.project,
        b.number,
        b.status,
        if b.cancel_requested && !b.status.is_finished() {
            " (cancel requested)"
        } else {
            ""
        },
        b.id,
        ago(b.created_at),
        b.triggered_by,
        took(b),
    );
    if b.run > 1 {
        text.push_str(&format!("run:       {}\n", b.run));
    }
    if !b.parameters.is_empty() {
        let params: Vec<String> = b
            .parameters
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        text.push_str(&format!("params:    {}\n", params.join(" ")));
    }
    if let Some(why) = &view.waiting_for {
        text.push_str(&format!("waiting:   {why}\n"));
    }
    text.push('\n');
    let rows = view
        .nodes
        .iter()
        .map(|n| {
            let note = n
                .waiting_for
                .clone()
                .or_else(|| {
                    let message = n.message.as_deref()?;
                    Some(without_status(n.status.as_str(), message).to_string())
                })
                .unwrap_or_default();
            vec![
                node_label(n),
                n.description.clone(),
                n.status.to_string(),
                or_dash(n.worker.as_deref()),
                or_dash(n.exit_code),
                note,
            ]
        })
        .collect();
    text.push_str(&crate::output::table(
        &["action", "what", "status", "worker", "exit", "note"],
        rows,
    ));
    let lost: Vec<String> = view
        .nodes
        .iter()
        .flat_map(|n| {
            n.lost_attempts
                .iter()
                .map(move |l| format!("  {}: {}\n", node_label(n), l.describe()))
        })
        .collect();
    if !lost.is_empty() {
        text.push_str("\nlost attempts:\n");
        text.extend(lost);
    }
    text
}

/// Warns (stderr) when the project notifies someone but the controller
/// sends no mail: its `notify:` would otherwise fail silently.
async fn warn_if_notify_waits(ick: &Ick, project: &str) {
    let path = format!("/projects/{}", segment(project));
    let Ok(stored) = ick.get::<StoredProject>(Service::Controller, &path).await else {
        return;
    };
    let to = &stored.spec.notify.to;
    if !to.is_empty() {
        eprintln!(
            "warning: project {project} notifies {}, but the controller has no `mail:` \
             configured: its notifications wait in the outbox, unsent",
            to.join(", ")
        );
    }
}

/// Finds a build by id, `PROJECT/NUMBER` (or `PROJECT#NUMBER`), or
/// `PROJECT` (its latest build).
pub async fn resolve(ick: &Ick, reference: &str) -> anyhow::Result<BuildView> {
    if let Some((project, number)) = reference
        .rsplit_once('/')
        .or_else(|| reference.rsplit_once('#'))
        && let Ok(number) = number.parse::<i64>()
    {
        let path = format!("/projects/{}/builds/{number}", segment(project));
        return ick.get(Service::Controller, &path).await;
    }
    let path = format!("/builds/{}", segment(reference));
    match ick.get::<BuildView>(Service::Controller, &path).await {
        Ok(view) => return Ok(view),
        Err(e) => {
            if !is_not_found(&e) || !ick_api::controller::is_valid_name(reference) {
                return Err(e);
            }
        }
    }
    let query = BuildQuery {
        project: Some(reference.to_string()),
        limit: Some(1),
        ..BuildQuery::default()
    };
    let latest = match ick
        .get_query::<BuildList, _>(Service::Controller, "/builds", &query)
        .await
    {
        Ok(list) => list.builds.into_iter().next(),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e),
    };
    match latest {
        Some(latest) => {
            ick.get(Service::Controller, &format!("/builds/{}", latest.id))
                .await
        }
        None => bail!("no build {reference:?}: no such id, and no project of that name has builds"),
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Refused>()
        .is_some_and(|r| r.problem.status_code() == StatusCode::NOT_FOUND)
}
