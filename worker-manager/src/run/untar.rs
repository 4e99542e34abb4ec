//! Unpacking a tar that a build made, so one not to trust: every entry is
//! checked before it is written, and one that would reach outside the
//! target is refused by name rather than skipped or bent into shape.
//!
//! Refused: absolute paths, `..` components, a path (or a hard link's
//! target) that goes through a symbolic link, a directory over a symbolic
//! link, hard links that do not name a file inside, and device nodes and
//! FIFOs — except in a system tree, where those are skipped (a container
//! gets its own `/dev`; a device node on the host's disk would be a way
//! into the host's devices). Setuid and setgid bits are always dropped:
//! the unpacked files are on the host's disk too.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// Mode bits never unpacked.
const DROPPED_MODE_BITS: u32 = 0o6000;

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UntarError {
    /// An entry was refused; the text names it and says why.
    #[error("{0}")]
    Refused(String),
    /// Reading the archive or writing the files failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn refuse(path: &[u8], why: &str) -> UntarError {
    UntarError::Refused(format!("entry {:?} {why}", String::from_utf8_lossy(path)))
}

/// Unpacks `reader` into `dst` (made if missing), keeping modes (less the
/// setuid and setgid bits) and times, and owners in a `systree`. Returns
/// what was skipped, one line each. Blocking.
pub fn unpack(reader: impl Read, dst: &Path, systree: bool) -> Result<Vec<String>, UntarError> {
    std::fs::create_dir_all(dst)?;
    let dst = dst.canonicalize()?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    archive.set_mask(DROPPED_MODE_BITS);
    // A system tree keeps its owners (root's files); a workspace belongs to
    // whoever runs the actions.
    archive.set_preserve_ownerships(systree);
    let mut skipped = Vec::new();
    // Directories get their modes at the end, deepest first, so that a
    // read-only one does not stop its own entries (as `Archive::unpack`).
    let mut directories = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        let path = relative(&entry.path()?, &raw)?;
        if path.as_os_str().is_empty() {
            continue; // the target itself
        }
        let kind = entry.header().entry_type();
        // The tar reader makes a directory of an old-style entry whose
        // name ends in '/', whatever its type says.
        let is_dir = kind.is_dir() || (entry.header().as_ustar().is_none() && raw.ends_with(b"/"));
        match kind {
            EntryType::Directory => {
                directories.push((raw, path, entry));
                continue;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let what = match kind {
                    EntryType::Fifo => "FIFO",
                    _ => "device node",
                };
                if !systree {
                    return Err(refuse(
                        &raw,
                        &format!("is a {what}, which a workspace may not hold"),
                    ));
                }
                skipped.push(format!(
                    "skipped {what} {:?}: a container gets its own /dev",
                    String::from_utf8_lossy(&raw)
                ));
                continue;
            }
            EntryType::Link => {
                let target = match entry.link_name()? {
                    Some(target) => target.into_owned(),
                    None => return Err(refuse(&raw, "is a hard link without a target")),
                };
                check_link_target(&dst, &raw, &target)?;
            }
            _ => {}
        }
        check_on_disk(&dst, &raw, &path, is_dir)?;
        if !entry.unpack_in(&dst)? {
            return Err(refuse(&raw, "was refused by the tar reader"));
        }
    }
    directories.sort_by(|a, b| b.1.cmp(&a.1));
    for (raw, path, mut entry) in directories {
        check_on_disk(&dst, &raw, &path, true)?;
        if !entry.unpack_in(&dst)? {
            return Err(refuse(&raw, "was refused by the tar reader"));
        }
    }
    Ok(skipped)
}

/// An entry's path as plain components below the target.
fn relative(path: &Path, raw: &[u8]) -> Result<PathBuf, UntarError> {
    let mut rel = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse(raw, "has a '..' component")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse(raw, "has an absolute path"));
            }
        }
    }
    Ok(rel)
}

/// Refuses a path below `dst` whose existing parents are not all real
/// directories (one may be a symbolic link a build or an earlier entry
/// made), or, for a directory, whose last component is a symbolic link.
fn check_on_disk(dst: &Path, raw: &[u8], rel: &Path, is_dir: bool) -> Result<(), UntarError> {
    let mut at = dst.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(part) = parts.next() {
        at.push(part);
        let last = parts.peek().is_none();
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(meta) => meta,
            // Nothing there yet: nothing below it either.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if meta.file_type().is_symlink() && (!last || is_dir) {
            let shown = at.strip_prefix(dst).unwrap_or(&at).display().to_string();
            let why = match last {
                true => format!("is a directory where the symbolic link {shown:?} is"),
                false => format!("goes through the symbolic link {shown:?}"),
            };
            return Err(refuse(raw, &why));
        }
        if !last && !meta.is_dir() {
            // The tar reader fails on it; say which entry.
            return Err(refuse(
                raw,
                "goes through something that is not a directory",
            ));
        }
    }
    Ok(())
}

/// A hard link's target must be a file already unpacked below `dst`,
/// named without `..` and not through a symbolic link.
fn check_link_target(dst: &Path, raw: &[u8], target: &Path) -> Result<(), UntarError> {
    let outside = || refuse(raw, "is a hard link to something outside the archive");
    let mut rel = PathBuf::new();
    for part in target.components() {
        match part {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            _ => return Err(outside()),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(outside());
    }
    check_on_disk(dst, raw, &rel, false).map_err(|e| match e {
        UntarError::Refused(why) => UntarError::Refused(format!("{why} (its hard link target)")),
        other => other,
    })?;
    match std::fs::symlink_metadata(dst.join(&rel)) {
        Ok(meta) if meta.file_type().is_file() => Ok(()),
        Ok(_) => Err(refuse(
            raw,
            "is a hard link to something that is not a file",
        )),
        Err(_) => Err(outside()),
    }
}
