//! Plugins: any kind that is not built in runs the executable
//! `ick-action-KIND` from the plugin directory, in the workspace, with the
//! action's environment and the action as JSON on its standard input; its
//! output and exit code are the action's. Plugins run on the host whatever
//! `where:` says (it is in the JSON, for the plugin to honour), in a
//! workspace that earlier actions wrote: to a plugin, the workspace is as
//! untrusted as its input (README: "Host-side steps").

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ick_api::actions::BUILTIN_KINDS;

use super::executor::{Executor, Host, Proc};
use super::{Ending, RunCtx};
use crate::error::ActionError;

/// The prefix of a plugin's file name.
pub const PREFIX: &str = "ick-action-";

/// Whether `kind` can name a plugin.
fn is_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 100
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !BUILTIN_KINDS.contains(&kind)
}

/// The kinds of the plugins in `dir`: executable files named
/// `ick-action-KIND`, sorted. Blocking (it reads the directory).
pub fn kinds(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut kinds: Vec<String> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let kind = name.strip_prefix(PREFIX)?;
            (is_kind(kind) && is_executable(&entry.path())).then(|| kind.to_string())
        })
        .collect();
    kinds.sort();
    kinds
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

pub async fn run(rc: &RunCtx) -> Result<Ending, ActionError> {
    let kind = &rc.a.action.kind;
    let Some(dir) = &rc.plugin_dir else {
        return Err(ActionError::new(format!(
            "unknown action kind {kind:?}: it is not built in, and this worker has no plugin_dir"
        )));
    };
    let path: PathBuf = dir.join(format!("{PREFIX}{kind}"));
    let found = is_kind(kind) && {
        let path = path.clone();
        tokio::task::spawn_blocking(move || is_executable(&path))
            .await
            .unwrap_or(false)
    };
    if !found {
        return Err(ActionError::new(format!(
            "unknown action kind {kind:?}: there is no executable plugin {} on this worker",
            path.display()
        )));
    }
    let input = serde_json::to_vec(&rc.a.action)
        .map_err(|e| ActionError::new(format!("cannot encode the action: {e}")))?;
    let env = rc.host_env().await;
    let mut proc = Proc::new(
        path.into_os_string(),
        Vec::<String>::new(),
        rc.dirs.workspace.clone(),
        env,
    );
    proc.stdin = Some(input);
    Ok(rc.ending(Host.run(rc, proc).await?))
}
