//! Where an action's process runs: on the host, or inside bubblewrap.
//!
//! - `where: host`: a plain process in the workspace.
//! - `where: chroot`: the workspace is the root (read-write), as in the
//!   original Ick, where a system tree was first unpacked into it.
//! - `where: container`: the pipeline's system tree (filled by `populate:
//!   {into: systree}`) is the root, read-only, and the workspace is at
//!   `/workspace`, read-write.
//!
//! Inside both: a fresh `/proc`, `/dev` and `/tmp` (a tmpfs), every
//! namespace unshared (no network unless the action says `network: true`),
//! and the whole sandbox dies with the worker.

use std::ffi::OsString;

use ick_api::actions::Where;

use super::RunCtx;
use super::process::Proc;
use crate::error::ActionError;

/// Where the workspace appears inside a container.
const CONTAINER_WORKSPACE: &str = "/workspace";

/// The process that runs `program args` where the action says.
pub async fn command(rc: &RunCtx, program: &str, args: Vec<OsString>) -> Result<Proc, ActionError> {
    let action = &rc.a.action;
    let (root, inside) = match action.where_ {
        Where::Host => {
            let env = rc.host_env().await;
            return Ok(Proc::new(program, args, rc.dirs.workspace.clone(), env));
        }
        Where::Chroot => (rc.dirs.workspace.clone(), "/"),
        Where::Container => {
            if !has_entries(&rc.dirs.systree).await {
                return Err(ActionError::new(
                    "where: container needs a system tree, and this pipeline has none: \
                     add `populate: {ref: NAME, into: systree}` before this action",
                ));
            }
            (rc.dirs.systree.clone(), CONTAINER_WORKSPACE)
        }
    };
    let env = rc.env_seen_at(inside).await;
    let mut wrapped: Vec<OsString> = vec!["--bind".into(), root.into_os_string(), "/".into()];
    if action.where_ == Where::Container {
        wrapped.push("--bind".into());
        wrapped.push(rc.dirs.workspace.clone().into_os_string());
        wrapped.push(CONTAINER_WORKSPACE.into());
    }
    let mut add = |items: &[&str]| wrapped.extend(items.iter().map(OsString::from));
    add(&["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
    if action.where_ == Where::Container {
        // Mount points are made first, then the system tree goes read-only.
        add(&["--remount-ro", "/"]);
    }
    add(&["--unshare-all", "--die-with-parent"]);
    if action.network == Some(true) {
        add(&["--share-net"]);
    }
    add(&["--chdir", inside, "--", program]);
    wrapped.extend(args);
    Ok(Proc::new("bwrap", wrapped, rc.dirs.workspace.clone(), env))
}

async fn has_entries(dir: &std::path::Path) -> bool {
    match tokio::fs::read_dir(dir).await {
        Ok(mut entries) => matches!(entries.next_entry().await, Ok(Some(_))),
        Err(_) => false,
    }
}
