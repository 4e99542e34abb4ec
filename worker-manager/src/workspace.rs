//! Workspaces: one directory per pipeline of a build, and beside it the
//! pipeline's system tree. A pipeline's first action starts with both
//! fresh; its later actions (which the controller hands only to this
//! worker) find them as the previous action left them; they go once the
//! last action ended or an action failed (the rest will not come).

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use ick_api::controller::is_valid_name;
use ick_api::work::WorkAssignment;

use crate::error::ActionError;

/// The directories of one pipeline run.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// The workspace, where actions run.
    pub workspace: PathBuf,
    /// The system tree of `where: container` actions.
    pub systree: PathBuf,
}

/// Where workspaces and system trees live. Cheap to clone.
#[derive(Clone)]
pub struct Workspaces {
    root: PathBuf,
    systree_root: PathBuf,
    /// Creating and removing directories that share parents, one at a time.
    lock: Arc<Mutex<()>>,
}

impl Workspaces {
    /// Creates the roots if needed.
    pub async fn open(root: PathBuf, systree_root: PathBuf) -> anyhow::Result<Workspaces> {
        let (r, s) = (root.clone(), systree_root.clone());
        blocking(move || {
            std::fs::create_dir_all(&r).map_err(|e| {
                ActionError::new(format!("cannot create workspace_root {}: {e}", r.display()))
            })?;
            std::fs::create_dir_all(&s).map_err(|e| {
                ActionError::new(format!("cannot create systree_root {}: {e}", s.display()))
            })
        })
        .await?;
        Ok(Workspaces {
            root,
            systree_root,
            lock: Arc::new(Mutex::new(())),
        })
    }

    /// The workspace root, where spilled output also goes.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directories of the assignment's pipeline run.
    pub fn dirs(&self, a: &WorkAssignment) -> Result<Dirs, ActionError> {
        // The controller checks these names; a worker still does not build
        // paths from names it has not checked itself.
        for name in [&a.build.project, &a.pipeline] {
            if !is_valid_name(name) {
                return Err(ActionError::new(format!(
                    "{name:?} is not a valid project or pipeline name"
                )));
            }
        }
        let tail = Path::new(&a.build.project)
            .join(a.build.number.to_string())
            .join(&a.pipeline);
        Ok(Dirs {
            workspace: self.root.join(&tail),
            systree: self.systree_root.join(&tail),
        })
    }

    /// Makes the directories ready: fresh for a pipeline's first action,
    /// as they were left for the others.
    pub async fn prepare(&self, a: &WorkAssignment) -> Result<Dirs, ActionError> {
        let dirs = self.dirs(a)?;
        let first = a.first_in_pipeline();
        let lock = self.lock.clone();
        let d = dirs.clone();
        blocking(move || {
            let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
            if first {
                for dir in [&d.workspace, &d.systree] {
                    remove_tree(dir)?;
                    std::fs::create_dir_all(dir).map_err(|e| {
                        ActionError::new(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                Ok(())
            } else if d.workspace.is_dir() {
                std::fs::create_dir_all(&d.systree).map_err(|e| {
                    ActionError::new(format!("cannot create {}: {e}", d.systree.display()))
                })
            } else {
                Err(ActionError::new(format!(
                    "the pipeline's workspace {} is gone from this worker (was it restarted or cleaned?); retry the build",
                    d.workspace.display()
                )))
            }
        })
        .await?;
        Ok(dirs)
    }

    /// Removes a pipeline run's directories, and their parents once empty.
    pub async fn remove(&self, dirs: Dirs) {
        let lock = self.lock.clone();
        let roots = [self.root.clone(), self.systree_root.clone()];
        let result = blocking(move || {
            let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
            for (dir, root) in [(&dirs.workspace, &roots[0]), (&dirs.systree, &roots[1])] {
                remove_tree(dir)?;
                let mut parent = dir.parent();
                while let Some(p) = parent {
                    if p == root.as_path() || std::fs::remove_dir(p).is_err() {
                        break;
                    }
                    parent = p.parent();
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot remove a workspace");
        }
    }
}

fn remove_tree(dir: &Path) -> Result<(), ActionError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ActionError::new(format!(
            "cannot remove {}: {e}",
            dir.display()
        ))),
    }
}

/// `rel` inside `base`: a relative path without `..` that, following any
/// symbolic links that exist, stays inside `base`. Blocking (it reads the
/// file system).
pub fn inside(base: &Path, rel: &str, what: &str) -> Result<PathBuf, ActionError> {
    let path = Path::new(rel);
    let lexical_ok = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if rel.is_empty() || !lexical_ok {
        return Err(ActionError::new(format!(
            "{what} {rel:?} must be a relative path inside the workspace, without '..'"
        )));
    }
    let joined = base.join(path);
    // A symbolic link the action made may point anywhere: resolve what
    // exists of the path and check that it is still inside.
    let canonical_base = base
        .canonicalize()
        .map_err(|e| ActionError::new(format!("cannot resolve {}: {e}", base.display())))?;
    let mut existing = joined.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            if !real.starts_with(&canonical_base) {
                return Err(ActionError::new(format!(
                    "{what} {rel:?} leads outside the workspace (through a symbolic link)"
                )));
            }
            break;
        }
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    Ok(joined)
}

/// Runs blocking file-system work off the runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ActionError> + Send + 'static,
) -> Result<T, ActionError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ActionError::new(format!("internal error: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside_the_workspace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        std::fs::create_dir(base.join("sub")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", base.join("out")).expect("symlink");
        std::os::unix::fs::symlink("sub", base.join("in")).expect("symlink");
        assert_eq!(
            inside(base, "sub/x", "path").expect("ok"),
            base.join("sub/x")
        );
        assert!(inside(base, "in/new/deeper", "path").is_ok());
        assert!(inside(base, "./sub", "path").is_ok());
        for bad in ["../x", "/etc", "sub/../../x", ""] {
            let err = inside(base, bad, "path").expect_err(bad);
            assert!(err.0.contains("relative path"), "{err}");
        }
        let err = inside(base, "out/passwd", "path").expect_err("through a link");
        assert!(err.0.contains("outside the workspace"), "{err}");
    }
}
