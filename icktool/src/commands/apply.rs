//! `icktool apply -f FILE|DIR` (alias `make-it-so`): projects and pipelines
//! from YAML. The files go to the controller in one `POST /definitions`,
//! which checks everything and applies all of it in one transaction, or
//! none of it and lists every mistake, placed in its file. `--dry-run`
//! prints what would change, as a diff against the stored text.

use std::path::PathBuf;

use anyhow::bail;
use ick_api::controller::{
    Applied, ApplyAnswer, ApplyRequest, Change, DefinitionFile, DefinitionProblem,
};
use reqwest::Method;

use crate::Exit;
use crate::connection::{Ick, Refused, Service, describe};
use crate::definitions::{SourceFile, kind_name, read_all};
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
    /// Check everything and print what would change (a diff against each
    /// stored definition), changing nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(ick: &Ick, args: ApplyArgs, out: &Out) -> anyhow::Result<Exit> {
    let mut paths = args.files;
    paths.extend(args.more);
    if paths.is_empty() {
        bail!("nothing to apply: give -f FILE or -f DIR");
    }
    let files = read_all(&paths)?;
    let answer = send(ick, files, args.dry_run).await?;
    if out.human() {
        report(&answer)?;
    } else {
        warn(&answer.applied);
        out.print(&answer.applied, String::new)?;
    }
    Ok(Exit::Ok)
}

/// Applies `files`; prints a line per definition when `human`. Also used
/// by `icktool up --demo`.
pub async fn apply(ick: &Ick, files: Vec<SourceFile>, human: bool) -> anyhow::Result<Vec<Applied>> {
    let answer = send(ick, files, false).await?;
    if human {
        report(&answer)?;
    } else {
        warn(&answer.applied);
    }
    Ok(answer.applied)
}

async fn send(ick: &Ick, files: Vec<SourceFile>, dry_run: bool) -> anyhow::Result<ApplyAnswer> {
    let request = ApplyRequest {
        files: files
            .into_iter()
            .map(|f| DefinitionFile {
                name: f.name,
                text: f.text,
            })
            .collect(),
        dry_run,
    };
    ick.call(
        Service::Controller,
        Method::POST,
        "/definitions",
        Some(&request),
    )
    .await
    .map_err(|e| match e.downcast::<Refused>() {
        Ok(refused) => anyhow::anyhow!("{}", refusal(&refused)),
        Err(e) => e.context("applying the definitions"),
    })
}

/// Every mistake on a line of its own, `FILE:LINE:COLUMN: message`.
fn refusal(refused: &Refused) -> String {
    let listed: Option<Vec<DefinitionProblem>> = refused
        .problem
        .extensions
        .get("errors")
        .and_then(|e| serde_json::from_value(e.clone()).ok());
    match listed {
        Some(list) if !list.is_empty() => {
            let lines: Vec<String> = list
                .iter()
                .map(|p| format!("{}: {}", p.origin(), p.message))
                .collect();
            format!(
                "nothing was applied: {} mistake{}\n{}",
                list.len(),
                if list.len() == 1 { "" } else { "s" },
                lines.join("\n")
            )
        }
        _ => describe(&refused.problem),
    }
}

fn warn(applied: &[Applied]) {
    for w in applied.iter().flat_map(|a| &a.warnings) {
        eprintln!("warning: {w}");
    }
}

/// A line per definition; on a dry run, a diff of each that would change.
fn report(answer: &ApplyAnswer) -> anyhow::Result<()> {
    let mut text = String::new();
    for a in &answer.applied {
        let kind = kind_name(a.kind);
        let what = match (a.change, answer.dry_run) {
            (Change::Created, false) => format!("created (revision {})", a.revision),
            (Change::Updated, false) => format!("updated (revision {})", a.revision),
            (Change::Created, true) => "would be created".to_string(),
            (Change::Updated, true) => format!("would be updated (revision {})", a.revision),
            (Change::Unchanged, _) => "unchanged".to_string(),
        };
        text.push_str(&format!("{kind} {} {what}\n", a.name));
        if answer.dry_run && a.change != Change::Unchanged {
            text.push_str(&diff(
                kind,
                &a.name,
                a.previous_text.as_deref(),
                a.text.as_deref(),
            ));
        }
    }
    if answer.dry_run {
        text.push_str("dry run: nothing was changed\n");
    }
    warn(&answer.applied);
    crate::output::write_stdout(&text)
}

/// A unified diff of a definition's stored text and the new one.
fn diff(kind: &str, name: &str, before: Option<&str>, after: Option<&str>) -> String {
    let (before, after) = (before.unwrap_or_default(), after.unwrap_or_default());
    let stored = format!("{kind} {name} (stored)");
    let new = format!("{kind} {name} (new)");
    let mut text = similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .header(&stored, &new)
        .to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}
