//! Who sandboxed actions run as. A worker that runs as root does not give
//! root to `chroot` and `container` actions: bubblewrap is started as the
//! configured unprivileged user, and the workspace is handed to that user
//! for the action and back to the worker afterwards, so that host-side
//! steps (git, archive, populate) work in a tree the worker owns.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Group, Uid, User, fchown, fchownat};

/// The unprivileged user and group of sandboxed actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxUser {
    pub uid: u32,
    pub gid: u32,
}

impl SandboxUser {
    /// The user to run sandboxes as: `user`/`group` (names or numbers)
    /// when this process runs as root, none otherwise (bubblewrap then
    /// runs as the worker's own user).
    pub fn for_this_process(user: &str, group: &str) -> anyhow::Result<Option<SandboxUser>> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let uid = match user.parse::<u32>() {
            Ok(uid) => uid,
            Err(_) => User::from_name(user)
                .map_err(|e| anyhow::anyhow!("cannot look up sandbox_user {user:?}: {e}"))?
                .ok_or_else(|| anyhow::anyhow!("sandbox_user {user:?}: there is no such user"))?
                .uid
                .as_raw(),
        };
        let gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => Group::from_name(group)
                .map_err(|e| anyhow::anyhow!("cannot look up sandbox_group {group:?}: {e}"))?
                .ok_or_else(|| anyhow::anyhow!("sandbox_group {group:?}: there is no such group"))?
                .gid
                .as_raw(),
        };
        if uid == 0 || gid == 0 {
            anyhow::bail!(
                "sandbox_user and sandbox_group must not be root: they are whom chroot and container actions run as"
            );
        }
        Ok(Some(SandboxUser { uid, gid }))
    }

    /// Refuses a directory the user cannot reach (bubblewrap, started as
    /// the user, must open the workspaces and system trees). Blocking.
    pub fn check_reaches(&self, dir: &Path, what: &str) -> Result<(), String> {
        let mut chain: Vec<&Path> = dir.ancestors().collect();
        chain.reverse();
        for at in chain {
            let meta = std::fs::metadata(at)
                .map_err(|e| format!("{what}: cannot look at {}: {e}", at.display()))?;
            let mode = meta.mode();
            let searchable = if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !searchable {
                return Err(format!(
                    "{what} {}: the sandbox user ({}:{}) cannot reach it, as {} is not searchable by it (chmod o+x {2}, or choose another directory)",
                    dir.display(),
                    self.uid,
                    self.gid,
                    at.display()
                ));
            }
        }
        Ok(())
    }
}

/// Gives `dir` and everything below it to `uid:gid`. Symbolic links are
/// never followed, even ones made while this runs: each directory is
/// opened below its parent with `O_NOFOLLOW`. Blocking.
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let top = Dir::open(dir, flags, Mode::empty())?;
    fchown(&top, uid, gid)?;
    struct Level {
        dir: Dir,
        subdirs: Vec<CString>,
    }
    let mut top = top;
    let subdirs = chown_entries(&mut top, uid, gid)?;
    let mut stack = vec![Level { dir: top, subdirs }];
    // Depth first, so that only one directory per level is open.
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.subdirs.pop() else {
            stack.pop();
            continue;
        };
        match Dir::openat(&level.dir, name.as_c_str(), flags, Mode::empty()) {
            Ok(mut sub) => {
                let subdirs = chown_entries(&mut sub, uid, gid)?;
                stack.push(Level { dir: sub, subdirs });
            }
            // Not a directory (any more), or gone: nothing below to do.
            Err(Errno::ENOTDIR | Errno::ELOOP | Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Chowns the entries of `dir`; returns those that may be directories.
fn chown_entries(
    dir: &mut Dir,
    uid: Option<Uid>,
    gid: Option<Gid>,
) -> std::io::Result<Vec<CString>> {
    let mut entries = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let maybe_dir = matches!(entry.file_type(), Some(nix::dir::Type::Directory) | None);
        entries.push((name.to_owned(), maybe_dir));
    }
    let mut subdirs = Vec::new();
    for (name, maybe_dir) in entries {
        match fchownat(
            &*dir,
            name.as_c_str(),
            uid,
            gid,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(()) => {}
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        }
        if maybe_dir {
            subdirs.push(name);
        }
    }
    Ok(subdirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_sandbox_user_must_exist_not_be_root_and_reach_the_workspaces() {
        if !nix::unistd::geteuid().is_root() {
            assert_eq!(
                SandboxUser::for_this_process("root", "root").ok(),
                Some(None)
            );
            return;
        }
        let user = SandboxUser::for_this_process("nobody", "nogroup")
            .expect("nobody exists")
            .expect("root runs sandboxes as another user");
        assert_ne!(user.uid, 0);
        assert_eq!(
            SandboxUser::for_this_process("4242", "4343").expect("numbers"),
            Some(SandboxUser {
                uid: 4242,
                gid: 4343
            })
        );
        for (u, g, says) in [
            ("no-such-user-here", "nogroup", "no such user"),
            ("nobody", "no-such-group-here", "no such group"),
            ("root", "nogroup", "must not be root"),
            ("nobody", "0", "must not be root"),
        ] {
            let err = SandboxUser::for_this_process(u, g)
                .expect_err(u)
                .to_string();
            assert!(err.contains(says), "{u}:{g}: {err}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = dir.path().join("workspaces");
        std::fs::create_dir(&inner).expect("mkdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let err = user
            .check_reaches(&inner, "workspace_root")
            .expect_err("0700");
        assert!(err.contains("not searchable"), "{err}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        user.check_reaches(&inner, "workspace_root").expect("o+x");
    }

    #[test]
    fn chown_tree_never_follows_a_link_out() {
        if !nix::unistd::geteuid().is_root() {
            return; // only root may give files away
        }
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("file"), "x").expect("write");
        let tree = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tree.path().join("a/b")).expect("mkdir");
        std::fs::write(tree.path().join("a/b/f"), "x").expect("write");
        std::os::unix::fs::symlink(outside.path(), tree.path().join("a/out")).expect("link");
        std::os::unix::fs::symlink(outside.path().join("file"), tree.path().join("f"))
            .expect("link");
        chown_tree(tree.path(), 65534, 65533).expect("chown");
        for path in ["", "a", "a/b", "a/b/f", "a/out", "f"] {
            let meta = std::fs::symlink_metadata(tree.path().join(path)).expect("stat");
            assert_eq!((meta.uid(), meta.gid()), (65534, 65533), "{path:?}");
        }
        for path in [outside.path().to_path_buf(), outside.path().join("file")] {
            let meta = std::fs::metadata(&path).expect("stat");
            assert_eq!(meta.uid(), 0, "{} is untouched", path.display());
        }
        chown_tree(tree.path(), 0, 0).expect("chown back");
        let meta = std::fs::metadata(tree.path().join("a/b/f")).expect("stat");
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
    }
}
