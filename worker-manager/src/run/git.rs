//! `git:` — fetch `url` at `ref` into the workspace (or `dir` in it) and
//! check out exactly that commit; report it as `outputs.commit`. Missing
//! fields come from the build's parameters: `git_url`, and `git_commit`
//! or `git_ref` (default `HEAD`). A directory that is already a clone is
//! fetched into, not cloned again. Git runs on the host.
//!
//! The workspace is not trusted: a `.git` found there is made safe or
//! removed first (see `gitdir`), git never runs hooks, an fsmonitor or a
//! transport other than http(s), ssh, git and file, and it gets the
//! worker's basic environment, never the build's (parameters, `env:`),
//! nor any system or global config.

use std::collections::BTreeMap;

use ick_api::actions::GitSpec;
use ick_api::work::Stream;
use serde_json::Value;

use super::gitdir::{self, Prepared};
use super::process::{self, Proc, ProcEnd};
use super::{Ending, RunCtx};
use crate::error::ActionError;
use crate::workspace::{blocking, inside};

/// Settings every git command gets, whatever a config says (no system or
/// global config is read, and the repository's is allowlisted: these are
/// the last word all the same).
const FORCED: [&str; 10] = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "credential.helper=",
    "protocol.allow=never",
    "protocol.ext.allow=never",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.ssh.allow=always",
    "protocol.git.allow=always",
    "protocol.file.allow=always",
];

/// Variables host-side git takes from the worker-manager's environment.
const PASSED: [&str; 5] = ["PATH", "HOME", "LANG", "TZ", "TMPDIR"];

/// The environment of host-side git: the worker's basics, and no config
/// but the repository's own.
fn git_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| PASSED.contains(&name.as_str()) || name.starts_with("LC_"))
        .collect();
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    for (name, value) in [
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ] {
        env.push((name.into(), value.into()));
    }
    env
}

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
    let env = git_env();
    let git_dir = dir.join(".git");
    let git = |args: &[&str]| {
        let mut all: Vec<String> = Vec::new();
        for setting in FORCED {
            all.extend(["-c".to_string(), setting.to_string()]);
        }
        // Named, so that git looks for no repository above it.
        all.push(format!("--git-dir={}", git_dir.to_string_lossy()));
        all.push(format!("--work-tree={}", dir.to_string_lossy()));
        all.extend(args.iter().map(|a| a.to_string()));
        Proc::new("git", all, dir.clone(), env.clone())
    };
    rc.out
        .line(Stream::Stderr, &format!("ick: fetching {target} of {url}"))
        .await;
    let d = dir.clone();
    let prepared = blocking(move || {
        gitdir::prepare(&d)
            .map_err(|e| ActionError::new(format!("cannot check the .git in {}: {e}", d.display())))
    })
    .await?;
    if let Prepared::Removed(why) = &prepared {
        rc.out
            .line(
                Stream::Stderr,
                &format!("ick: the .git found there is not used ({why}); cloning anew"),
            )
            .await;
    }
    let mut steps = Vec::new();
    if prepared != Prepared::Kept {
        steps.push(git(&["init", "--quiet"]));
    }
    steps.push(git(&["fetch", "--quiet", "--no-tags", "--", &url, &target]));
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
