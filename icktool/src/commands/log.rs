//! `icktool log BUILD [--node N] [--follow]`.

use anyhow::bail;
use ick_api::controller::{BuildView, LogChunk};
use reqwest::Method;

use crate::Exit;
use crate::commands::build::{node_label, resolve};
use crate::connection::{Ick, Service};
use crate::follow::{ended, follow};
use crate::output::{Out, write_stdout};

#[derive(clap::Args)]
pub struct LogArgs {
    /// The build: its id, PROJECT/NUMBER, or PROJECT for the latest.
    build: String,
    /// Only one action: PIPELINE/N (N from 1, as `build show` lists them)
    /// or the node's id.
    #[arg(long, short = 'n')]
    node: Option<String>,
    /// Follow the build until it ends; exit 0 if it succeeded, 1 if it
    /// failed or was cancelled.
    #[arg(long, short = 'f')]
    follow: bool,
}

pub async fn run(ick: &Ick, args: LogArgs, out: &Out) -> anyhow::Result<Exit> {
    let view = resolve(ick, &args.build).await?;
    let node = match &args.node {
        Some(n) => Some(find_node(&view, n)?),
        None => None,
    };
    if args.follow {
        let end = follow(ick, &view.build.id, node.as_deref()).await?;
        let (text, exit) = ended(&end);
        eprintln!("{text}");
        return Ok(exit);
    }
    let path = format!("/builds/{}/log", view.build.id);
    let chunks: Vec<LogChunk> = ick
        .send(
            Service::Controller,
            Method::GET,
            &path,
            &[],
            |r| match &node {
                Some(node) => r.query(&[("node", node)]),
                None => r,
            },
        )
        .await?
        .json()
        .await?;
    if !out.human() {
        out.print(&chunks, String::new)?;
        return Ok(Exit::Ok);
    }
    // As `--follow` prints: the output on stdout, which action it came
    // from on stderr, so that `icktool log B > out.txt` keeps the output
    // alone.
    // A node run more than once has each attempt under a header on stdout
    // too, so that a rerun's lines do not run on from a lost attempt's.
    let runs: Vec<&[LogChunk]> = chunks
        .chunk_by(|a, b| (&a.node, a.attempt) == (&b.node, b.attempt))
        .collect();
    for (i, run) in runs.iter().enumerate() {
        let first = &run[0];
        let header = format!(
            "==> {}/{} (attempt {})",
            first.pipeline,
            first.index + 1,
            first.attempt
        );
        let same_node = |r: Option<&&[LogChunk]>| r.is_some_and(|r| r[0].node == first.node);
        let several =
            same_node(i.checked_sub(1).and_then(|p| runs.get(p))) || same_node(runs.get(i + 1));
        let mut text = String::new();
        if several {
            text.push_str(&header);
            text.push('\n');
        } else {
            eprintln!("{header}");
        }
        text.extend(run.iter().map(|c| c.data.as_str()));
        if several {
            let lost = view
                .nodes
                .iter()
                .filter(|n| n.id == first.node)
                .flat_map(|n| &n.lost_attempts)
                .find(|l| l.attempt == first.attempt);
            if let Some(lost) = lost {
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!("==> {}\n", lost.describe()));
            }
        }
        write_stdout(&text)?;
    }
    Ok(Exit::Ok)
}

fn find_node(view: &BuildView, wanted: &str) -> anyhow::Result<String> {
    if let Some(n) = view
        .nodes
        .iter()
        .find(|n| n.id == wanted || node_label(n) == wanted)
    {
        return Ok(n.id.clone());
    }
    let known: Vec<String> = view.nodes.iter().map(node_label).collect();
    bail!(
        "build {}/{} has no action {wanted:?}; it has {}",
        view.build.project,
        view.build.number,
        known.join(", ")
    )
}
