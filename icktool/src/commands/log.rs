//! `icktool log BUILD [--node N] [--follow]`.

use anyhow::bail;
use ick_api::controller::{BuildView, LogChunk, LogQuery, NEXT_PAGE_HEADER, NodeView};
use reqwest::Method;

use crate::Exit;
use crate::commands::build::{node_label, resolve};
use crate::connection::{Ick, Service};
use crate::follow::{ended, follow};
use crate::output::{Format, Out, write_stdout};

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
    let mut printer = Printer::new(&view, out.human());
    let mut after: Option<String> = None;
    // A page at a time, printed as it comes: no log is held whole.
    loop {
        let query = LogQuery {
            node: node.clone(),
            after: after.clone(),
            limit: Some(PAGE),
        };
        let response = ick
            .send(Service::Controller, Method::GET, &path, &[], |r| {
                r.query(&query)
            })
            .await?;
        let next = response
            .headers()
            .get(NEXT_PAGE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let chunks: Vec<LogChunk> = response.json().await?;
        printer.page(&chunks, out)?;
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    printer.end(out)?;
    Ok(Exit::Ok)
}

/// Chunks read at a time.
const PAGE: u32 = 1000;

/// Prints a log page by page. As `--follow` prints: the output on stdout,
/// which action it came from on stderr, so that `icktool log B > out.txt`
/// keeps the output alone; but an action run more than once has each
/// attempt under a header on stdout too, so that a rerun's lines do not
/// run on from a lost attempt's. `--output json` prints one JSON array.
struct Printer<'a> {
    view: &'a BuildView,
    human: bool,
    current: Option<(String, i64)>,
    ends_line: bool,
    /// Something was printed for scripts.
    json_started: bool,
}

impl<'a> Printer<'a> {
    fn new(view: &'a BuildView, human: bool) -> Self {
        Printer {
            view,
            human,
            current: None,
            ends_line: true,
            json_started: false,
        }
    }

    fn node(&self, id: &str) -> Option<&'a NodeView> {
        self.view.nodes.iter().find(|n| n.id == id)
    }

    fn page(&mut self, chunks: &[LogChunk], out: &Out) -> anyhow::Result<()> {
        if !self.human {
            let mut text = String::new();
            for c in chunks {
                if out.format == Format::Yaml {
                    // Sequences of one, one after the other, read as one.
                    text.push_str(&serde_yaml::to_string(&[c])?);
                    self.json_started = true;
                    continue;
                }
                text.push_str(if self.json_started { ",\n" } else { "[\n" });
                text.push_str(&serde_json::to_string(c)?);
                self.json_started = true;
            }
            return write_stdout(&text);
        }
        let mut text = String::new();
        for c in chunks {
            if self.current.as_ref() != Some(&(c.node.clone(), c.attempt)) {
                self.close(&mut text);
                let header = format!("==> {}/{} (attempt {})", c.pipeline, c.index + 1, c.attempt);
                if self.node(&c.node).is_some_and(|n| n.attempt > 1) {
                    text.push_str(&header);
                    text.push('\n');
                } else {
                    write_stdout(&std::mem::take(&mut text))?;
                    eprintln!("{header}");
                }
                self.current = Some((c.node.clone(), c.attempt));
                self.ends_line = true;
            }
            text.push_str(&c.data);
            if !c.data.is_empty() {
                self.ends_line = c.data.ends_with('\n');
            }
        }
        write_stdout(&text)
    }

    /// After an attempt's output: the line saying it was lost, if it was.
    fn close(&mut self, text: &mut String) {
        let Some((node, attempt)) = self.current.take() else {
            return;
        };
        let lost = self
            .node(&node)
            .and_then(|n| n.lost_attempts.iter().find(|l| l.attempt == attempt));
        if let Some(lost) = lost {
            if !self.ends_line {
                text.push('\n');
            }
            text.push_str(&format!("==> {}\n", lost.describe()));
        }
    }

    fn end(mut self, out: &Out) -> anyhow::Result<()> {
        match out.format {
            Format::Json if self.json_started => return write_stdout("\n]\n"),
            Format::Json => return write_stdout("[]\n"),
            Format::Yaml if !self.json_started => return write_stdout("[]\n"),
            Format::Yaml => return Ok(()),
            Format::Table => {}
        }
        let mut text = String::new();
        self.close(&mut text);
        write_stdout(&text)
    }
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
