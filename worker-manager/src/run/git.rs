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

use super::executor::{Executor, Host, Proc, ProcEnd};
use super::gitdir::{self, Prepared};
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

/// An http(s) URL's credentials taken out of it, to be sent as a header
/// given in the environment: then they are in no argument (which `ps`
/// shows), no log line, no error git prints and no file in the workspace
/// (`.git/FETCH_HEAD`). Other URLs are as they were.
fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    use base64::Engine;
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_string(), None);
    };
    let http = matches!(parsed.scheme(), "http" | "https");
    if !http || (parsed.username().is_empty() && parsed.password().is_none()) {
        return (url.to_string(), None);
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(parsed.username());
    let password = parsed.password().map(decode).unwrap_or_default();
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut scope = parsed.clone();
    scope.set_path("/");
    scope.set_query(None);
    scope.set_fragment(None);
    (
        parsed.to_string(),
        Some((
            format!("http.{scope}.extraHeader"),
            format!("Authorization: Basic {basic}"),
        )),
    )
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
    let (url, credentials) = split_credentials(&url);
    let mut env = git_env();
    if let Some((key, value)) = credentials {
        env.extend([
            ("GIT_CONFIG_COUNT".into(), "1".into()),
            ("GIT_CONFIG_KEY_0".into(), key),
            ("GIT_CONFIG_VALUE_0".into(), value),
        ]);
    }
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
        match Host.run(rc, step).await? {
            ProcEnd::Exited { code: 0, .. } => {}
            other => return Ok(rc.ending(other)),
        }
    }
    let mut rev = git(&["rev-parse", "HEAD"]);
    rev.capture_stdout = true;
    let commit = match Host.run(rc, rev).await? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_http_urls_for_a_header_of_that_server() {
        let (url, header) = split_credentials("https://ci:t%40k@git.example.org:8443/o/r.git");
        assert_eq!(url, "https://git.example.org:8443/o/r.git");
        let (key, value) = header.expect("a header");
        assert_eq!(key, "http.https://git.example.org:8443/.extraHeader");
        // base64("ci:t@k")
        assert_eq!(value, "Authorization: Basic Y2k6dEBr");
        let (url, header) = split_credentials("https://TOKEN@github.com/o/r");
        assert_eq!(url, "https://github.com/o/r");
        assert_eq!(
            header.map(|h| h.1),
            Some("Authorization: Basic VE9LRU46".to_string())
        );
        for plain in [
            "https://github.com/o/r.git",
            "ssh://git@github.com/o/r.git",
            "git@github.com:o/r.git",
            "/srv/git/r.git",
        ] {
            assert_eq!(split_credentials(plain), (plain.to_string(), None));
        }
    }
}
