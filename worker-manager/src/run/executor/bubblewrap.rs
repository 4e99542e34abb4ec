//! `where: chroot` and `where: container`: the process inside bubblewrap.
//!
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

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::process::{self, Proc, ProcEnd};
use super::{Executor, RunCtx};
use crate::error::ActionError;
use crate::run::owner::chown_tree;
use crate::workspace::blocking;

/// Where bubblewrap mounts something in a container's root: made (as the
/// worker) before it starts, as the sandbox user may not write there.
const CONTAINER_MOUNT_POINTS: [&str; 4] = ["proc", "dev", "tmp", "workspace"];

/// Where the workspace appears inside a container.
const CONTAINER_WORKSPACE: &str = "/workspace";

/// Runs processes inside bubblewrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bubblewrap {
    /// The workspace is the root.
    Chroot,
    /// The system tree is the root, the workspace at `/workspace`.
    Container,
}

impl Executor for Bubblewrap {
    async fn prepare(
        &self,
        rc: &RunCtx,
        program: &str,
        args: Vec<OsString>,
    ) -> Result<Proc, ActionError> {
        let container = *self == Bubblewrap::Container;
        let (root, inside) = match self {
            Bubblewrap::Chroot => (rc.dirs.workspace.clone(), "/"),
            Bubblewrap::Container => {
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
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        {
            let (root, program, tree) = (root.clone(), program.to_string(), *self);
            blocking(move || tree.check_has(&root, &program, &path)).await?;
        }
        let mut wrapped: Vec<OsString> = vec!["--bind".into(), root.into_os_string(), "/".into()];
        if container {
            wrapped.push("--bind".into());
            wrapped.push(rc.dirs.workspace.clone().into_os_string());
            wrapped.push(CONTAINER_WORKSPACE.into());
        }
        let mut add = |items: &[&str]| wrapped.extend(items.iter().map(OsString::from));
        add(&["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
        if container {
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
        if rc.a.action.network == Some(true) {
            add(&["--share-net"]);
        }
        add(&["--chdir", inside, "--", program]);
        wrapped.extend(args);
        let mut proc = Proc::new("bwrap", wrapped, rc.dirs.workspace.clone(), env);
        proc.user = rc.sandbox_user.map(|u| (u.uid, u.gid));
        Ok(proc)
    }

    /// Runs it with the workspace handed to the sandbox user, and back to
    /// the worker after.
    async fn run(&self, rc: &RunCtx, proc: Proc) -> Result<ProcEnd, ActionError> {
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
}

impl Bubblewrap {
    /// Refuses to start `program` in a tree that lacks it, rather than
    /// let bubblewrap fail with `execvp`. Blocking.
    fn check_has(self, root: &Path, program: &str, path: &str) -> Result<(), ActionError> {
        let candidates: Vec<PathBuf> = match program.contains('/') {
            true => vec![PathBuf::from(program)],
            false => path
                .split(':')
                .filter(|dir| dir.starts_with('/'))
                .map(|dir| Path::new(dir).join(program))
                .collect(),
        };
        if candidates
            .iter()
            .any(|p| resolve_inside(root, p).is_some_and(|p| is_executable(&p)))
        {
            return Ok(());
        }
        let tree = match self {
            Bubblewrap::Chroot => format!(
                "the workspace {}, which is the root of where: chroot,",
                root.display()
            ),
            Bubblewrap::Container => format!(
                "the system tree {} (filled by `populate: {{into: systree}}`)",
                root.display()
            ),
        };
        let needs = match program {
            "bash" => " (shell actions run `bash -e`: the tree needs /bin/bash)".to_string(),
            _ => String::new(),
        };
        let looked = match program.contains('/') {
            true => String::new(),
            false => format!(" in any of {path}"),
        };
        Err(ActionError::new(format!(
            "cannot run {program}: {tree} has no executable {program}{looked}{needs}"
        )))
    }
}

/// Where `inside` (an absolute path as seen inside a tree whose root is
/// `root`) is on the host, with symbolic links followed as they would be
/// inside; `None` if it does not exist there.
fn resolve_inside(root: &Path, inside: &Path) -> Option<PathBuf> {
    let mut todo: VecDeque<OsString> = parts(inside);
    let mut at: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            at.pop();
            continue;
        }
        at.push(part);
        let host: PathBuf = at.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        let meta = std::fs::symlink_metadata(&host).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return None;
            }
            let target = std::fs::read_link(&host).ok()?;
            at.pop();
            if target.is_absolute() {
                at.clear();
            }
            for part in parts(&target).into_iter().rev() {
                todo.push_front(part);
            }
        }
    }
    Some(at.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// The named parts of a path, `..` kept, `.` and the root dropped.
fn parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn is_executable(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_in_a_tree_with_links_followed_inside_it() {
        let tree = tempfile::tempdir().expect("tempdir");
        let root = tree.path();
        std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("link");
        let bash = root.join("usr/bin/bash");
        std::fs::write(&bash, "").expect("write");
        std::fs::set_permissions(&bash, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // An absolute link means the tree's own /usr/bin/bash.
        std::os::unix::fs::symlink("/usr/bin/bash", root.join("usr/bin/sh")).expect("link");
        std::fs::write(root.join("usr/bin/plain"), "").expect("write");
        let path = "/usr/local/bin:/bin";
        let tree = Bubblewrap::Container;
        assert!(tree.check_has(root, "bash", path).is_ok());
        assert!(tree.check_has(root, "sh", path).is_ok());
        assert!(tree.check_has(root, "/bin/sh", path).is_ok());
        let e = tree
            .check_has(root, "plain", path)
            .expect_err("not executable");
        assert!(
            e.0.contains("has no executable plain in any of /usr/local/bin:/bin"),
            "{}",
            e.0
        );
        let e = tree.check_has(root, "python3", path).expect_err("missing");
        assert!(e.0.contains(&root.display().to_string()), "{}", e.0);
        // A link out of the tree does not reach the host's programs.
        std::fs::remove_dir_all(root.join("usr")).expect("rm");
        std::os::unix::fs::symlink("/usr", root.join("usr")).expect("link");
        let e = tree
            .check_has(root, "bash", path)
            .expect_err("not in the tree");
        assert!(e.0.contains("the tree needs /bin/bash"), "{}", e.0);
    }
}
