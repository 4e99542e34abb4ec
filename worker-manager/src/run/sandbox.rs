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
//! no capabilities, a session of its own (no `TIOCSTI` into the worker's
//! terminal), and the whole sandbox dies with the worker. A worker that
//! runs as root starts bubblewrap as its unprivileged sandbox user, who
//! holds the workspace while the action runs (see `owner`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use ick_api::actions::Where;

use super::RunCtx;
use super::owner::chown_tree;
use super::process::{self, Proc, ProcEnd};
use crate::error::ActionError;
use crate::workspace::blocking;

/// Where bubblewrap mounts something in a container's root: made (as the
/// worker) before it starts, as the sandbox user may not write there.
const CONTAINER_MOUNT_POINTS: [&str; 4] = ["proc", "dev", "tmp", "workspace"];

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
    if let Some(user) = rc.sandbox_user {
        let container = action.where_ == Where::Container;
        let (ws, systree) = (rc.dirs.workspace.clone(), rc.dirs.systree.clone());
        blocking(move || {
            user.check_reaches(&ws, "the workspace")
                .map_err(ActionError::new)?;
            if container {
                user.check_reaches(&systree, "the system tree")
                    .map_err(ActionError::new)?;
                make_mount_points(&systree)?;
            }
            Ok(())
        })
        .await?;
    }
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
    add(&[
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]);
    if action.network == Some(true) {
        add(&["--share-net"]);
    }
    add(&["--chdir", inside, "--", program]);
    wrapped.extend(args);
    let mut proc = Proc::new("bwrap", wrapped, rc.dirs.workspace.clone(), env);
    proc.user = rc.sandbox_user.map(|u| (u.uid, u.gid));
    Ok(proc)
}

/// Runs a process that [`command`] made: a sandboxed one with the
/// workspace handed to the sandbox user, and back to the worker after.
pub async fn run(rc: &RunCtx, proc: Proc) -> Result<ProcEnd, ActionError> {
    let Some(user) = rc.sandbox_user.filter(|_| proc.user.is_some()) else {
        return process::run(proc, &rc.limits()).await;
    };
    let workspace = rc.dirs.workspace.clone();
    hand_over(&workspace, user.uid, user.gid).await?;
    let ended = process::run(proc, &rc.limits()).await;
    let worker = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    hand_over(&workspace, worker.0, worker.1).await?;
    ended
}

async fn hand_over(workspace: &Path, uid: u32, gid: u32) -> Result<(), ActionError> {
    let dir: PathBuf = workspace.to_path_buf();
    blocking(move || {
        chown_tree(&dir, uid, gid).map_err(|e| {
            ActionError::new(format!(
                "cannot give the workspace {} to {uid}:{gid}: {e}",
                dir.display()
            ))
        })
    })
    .await
}

/// Makes the directories bubblewrap mounts on in a system tree; one that
/// is there but not a directory (a link out of the tree) is refused.
fn make_mount_points(root: &Path) -> Result<(), ActionError> {
    for name in CONTAINER_MOUNT_POINTS {
        let path = root.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(ActionError::new(format!(
                    "the system tree's /{name} is not a directory; a container needs it to be one"
                )));
            }
            Err(_) => std::fs::create_dir(&path).map_err(|e| {
                ActionError::new(format!("cannot make /{name} in the system tree: {e}"))
            })?,
        }
    }
    Ok(())
}

async fn has_entries(dir: &std::path::Path) -> bool {
    match tokio::fs::read_dir(dir).await {
        Ok(mut entries) => matches!(entries.next_entry().await, Ok(Some(_))),
        Err(_) => false,
    }
}
