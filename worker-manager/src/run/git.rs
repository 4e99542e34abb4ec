//! `git:` — fetch `url` at `ref` into the workspace (or `dir` in it) and
//! check out exactly that commit; report it as `outputs.commit`. Missing
//! fields come from the build's parameters: `git_url`, and `git_commit`
//! or `git_ref` (default `HEAD`). A directory that is already a clone is
//! fetched into, not cloned again. Git runs on the host.

use std::collections::BTreeMap;

use ick_api::actions::GitSpec;
use ick_api::work::Stream;
use serde_json::Value;

use super::process::{self, Proc, ProcEnd};
use super::{Ending, RunCtx};
use crate::error::ActionError;
use crate::workspace::{blocking, inside};

fn param(rc: &RunCtx, name: &str) -> Option<String> {
    match rc.a.parameters.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

pub async fn run(rc: &RunCtx) -> Result<Ending, ActionError> {
    let spec: GitSpec = if rc.a.action.spec.is_null() {
        GitSpec::default()
    } else {
        rc.a.action.spec_as().map_err(ActionError)?
    };
    let url = spec
        .url
        .clone()
        .or_else(|| param(rc, "git_url"))
        .ok_or_else(|| {
            ActionError::new("git needs a url: give `url:` or the build parameter git_url")
        })?;
    let target = spec
        .ref_
        .clone()
        .or_else(|| param(rc, "git_commit"))
        .or_else(|| param(rc, "git_ref"))
        .unwrap_or_else(|| "HEAD".into());
    if target.starts_with('-') || url.starts_with('-') {
        return Err(ActionError::new("git url and ref must not start with '-'"));
    }
    let dir = match spec.dir.clone() {
        None => rc.dirs.workspace.clone(),
        Some(rel) => {
            let ws = rc.dirs.workspace.clone();
            blocking(move || {
                let dir = inside(&ws, &rel, "git dir")?;
                std::fs::create_dir_all(&dir).map_err(|e| {
                    ActionError::new(format!("cannot create {}: {e}", dir.display()))
                })?;
                Ok(dir)
            })
            .await?
        }
    };
    let mut env = rc.host_env().await;
    env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
    let git = |args: &[&str]| {
        let mut all: Vec<String> = vec!["-C".into(), dir.to_string_lossy().into_owned()];
        all.extend(args.iter().map(|a| a.to_string()));
        Proc::new("git", all, dir.clone(), env.clone())
    };
    rc.out
        .line(Stream::Stderr, &format!("ick: fetching {target} of {url}"))
        .await;
    let is_clone = tokio::fs::metadata(dir.join(".git")).await.is_ok();
    let mut steps = Vec::new();
    if !is_clone {
        steps.push(git(&["init", "--quiet"]));
    }
    steps.push(git(&["fetch", "--quiet", "--no-tags", &url, &target]));
    steps.push(git(&[
        "checkout",
        "--quiet",
        "--force",
        "--detach",
        "FETCH_HEAD",
    ]));
    for step in steps {
        match process::run(step, &rc.limits()).await? {
            ProcEnd::Exited { code: 0, .. } => {}
            other => return Ok(rc.ending(other)),
        }
    }
    let mut rev = git(&["rev-parse", "HEAD"]);
    rev.capture_stdout = true;
    let commit = match process::run(rev, &rc.limits()).await? {
        ProcEnd::Exited {
            code: 0, stdout, ..
        } => String::from_utf8_lossy(&stdout).trim().to_string(),
        other => return Ok(rc.ending(other)),
    };
    rc.out
        .line(Stream::Stderr, &format!("ick: checked out {commit}"))
        .await;
    Ok(Ending {
        outputs: BTreeMap::from([("commit".to_string(), commit)]),
        ..Ending::exited(0)
    })
}
