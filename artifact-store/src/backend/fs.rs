//! The local-directory backend.
//!
//! ```text
//! ROOT/sha256/ab/abcdef…     blobs, each made visible by a hard link from a
//!                            fsynced staging file (link fails if it exists,
//!                            so a blob is never replaced)
//! ROOT/refs/a.d/b.d/c.ref    the ref a/b/c: the digest, replaced by rename
//! ROOT/tmp/, ROOT/uploads/   the staging area (same filesystem, for links)
//! ROOT/lock                  one process per directory
//! ```
//! Ref directories end in `.d` and ref files in `.ref`, so that the refs
//! `a` and `a/b` can both exist.

use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ick_api::blobs::{Digest, RefInfo, RefName, RefPrefix};

use super::{Backend, Staged, Usage, blob_key, blocking, lock_dir};
use crate::error::StoreError;
use crate::staging::{ByteStream, Staging, read_file, sync_dir};

const DIR_SUFFIX: &str = ".d";
const REF_SUFFIX: &str = ".ref";

/// Blobs and refs in a local directory.
#[derive(Debug, Clone)]
pub struct FsBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    refs: PathBuf,
    staging: Staging,
    _lock: File,
}

impl FsBackend {
    /// Opens (creating if needed) the store in `root`, and removes what a
    /// killed process left in its staging area.
    pub fn open(root: &Path) -> anyhow::Result<FsBackend> {
        std::fs::create_dir_all(root.join("sha256"))
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", root.display()))?;
        std::fs::create_dir_all(root.join("refs"))
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", root.display()))?;
        let lock = lock_dir(root)?;
        let staging = Staging::open(root)
            .map_err(|e| anyhow::anyhow!("cannot prepare {}: {e}", root.display()))?;
        Ok(FsBackend {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                refs: root.join("refs"),
                staging,
                _lock: lock,
            }),
        })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.root.join(blob_key(digest))
    }

    fn ref_path(&self, name: &RefName) -> PathBuf {
        let mut path = self.inner.refs.clone();
        let segments: Vec<&str> = name.segments().collect();
        if let Some((last, dirs)) = segments.split_last() {
            for dir in dirs {
                path.push(format!("{dir}{DIR_SUFFIX}"));
            }
            path.push(format!("{last}{REF_SUFFIX}"));
        }
        path
    }
}

fn read_ref(path: &Path) -> io::Result<Option<Digest>> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Collects the refs under `dir`, whose name so far is `name`.
fn walk_refs(dir: &Path, name: &str, prefix: &RefPrefix, out: &mut Vec<RefInfo>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let join = |segment: &str| {
            if name.is_empty() {
                segment.to_string()
            } else {
                format!("{name}/{segment}")
            }
        };
        if let Some(segment) = file_name.strip_suffix(DIR_SUFFIX) {
            let sub = join(segment);
            // Only descend where a match can be.
            let p = prefix.as_str();
            if p.starts_with(&format!("{sub}/")) || format!("{sub}/").starts_with(p) {
                walk_refs(&entry.path(), &sub, prefix, out)?;
            }
        } else if let Some(segment) = file_name.strip_suffix(REF_SUFFIX) {
            let Ok(ref_name) = join(segment).parse::<RefName>() else {
                continue;
            };
            if !prefix.matches(&ref_name) {
                continue;
            }
            match read_ref(&entry.path()) {
                Ok(Some(digest)) => out.push(RefInfo {
                    name: ref_name,
                    digest,
                }),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable ref"),
            }
        }
    }
    Ok(())
}

impl Backend for FsBackend {
    fn staging(&self) -> &Staging {
        &self.inner.staging
    }

    async fn ready(&self) -> Result<(), String> {
        let root = self.inner.root.clone();
        tokio::task::spawn_blocking(move || std::fs::metadata(root.join("sha256")))
            .await
            .map_err(|e| e.to_string())?
            .map(|_| ())
            .map_err(|e| format!("the blob directory is not usable: {e}"))
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let path = self.blob_path(digest);
        blocking("reading a blob's size", move || {
            match std::fs::metadata(path) {
                Ok(meta) => Ok(Some(meta.len())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<Option<ByteStream>, StoreError> {
        let path = self.blob_path(digest);
        let opened = blocking("opening a blob", move || match File::open(path) {
            Ok(file) => {
                let len = file.metadata()?.len();
                Ok(Some((file, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await?;
        Ok(opened.map(|(file, len)| read_file(file, range.unwrap_or(0..len))))
    }

    async fn usage(&self) -> Result<Usage, StoreError> {
        let blobs = self.inner.root.join("sha256");
        blocking("counting blobs", move || {
            let mut usage = Usage::default();
            for fan in std::fs::read_dir(&blobs)? {
                let fan = fan?;
                if !fan.file_type()?.is_dir() {
                    continue;
                }
                for blob in std::fs::read_dir(fan.path())? {
                    let meta = blob?.metadata()?;
                    if meta.is_file() {
                        usage.blobs += 1;
                        usage.bytes += meta.len();
                    }
                }
            }
            Ok(usage)
        })
        .await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        let path = self.blob_path(digest);
        blocking("deleting a blob", move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    if let Some(dir) = path.parent() {
                        sync_dir(dir)?;
                    }
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn commit(&self, staged: Staged) -> Result<bool, StoreError> {
        let target = self.blob_path(&staged.digest);
        blocking("storing a blob", move || {
            staged.file.sync_all()?;
            let dir = target.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir)?;
            match std::fs::hard_link(&staged.path, &target) {
                Ok(()) => {
                    sync_dir(dir)?;
                    if let Some(fanout) = dir.parent() {
                        sync_dir(fanout)?;
                    }
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn get_ref(&self, name: &RefName) -> Result<Option<Digest>, StoreError> {
        let path = self.ref_path(name);
        blocking("reading a ref", move || read_ref(&path)).await
    }

    async fn set_ref(&self, name: &RefName, digest: &Digest) -> Result<bool, StoreError> {
        let path = self.ref_path(name);
        let staging = self.inner.staging.clone();
        let text = format!("{digest}\n");
        blocking("writing a ref", move || {
            let (tmp, mut file) = staging.temp_file()?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            let existed = path.exists();
            // A concurrent delete may remove the (then empty) directory
            // between its creation and the rename: try again.
            let mut tries = 0;
            loop {
                std::fs::create_dir_all(&dir)?;
                match std::fs::rename(tmp.path(), &path) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 5 => tries += 1,
                    Err(e) => return Err(e),
                }
            }
            tmp.keep();
            sync_dir(&dir)?;
            Ok(!existed)
        })
        .await
    }

    async fn delete_ref(&self, name: &RefName) -> Result<bool, StoreError> {
        let path = self.ref_path(name);
        let refs = self.inner.refs.clone();
        blocking("deleting a ref", move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
            let mut dir = path.parent().map(Path::to_path_buf);
            if let Some(d) = &dir {
                sync_dir(d)?;
            }
            // Remove directories left empty; stop at the first that is not.
            while let Some(d) = dir {
                if d == refs || std::fs::remove_dir(&d).is_err() {
                    break;
                }
                dir = d.parent().map(Path::to_path_buf);
            }
            Ok(true)
        })
        .await
    }

    async fn list_refs(&self, prefix: &RefPrefix) -> Result<Vec<RefInfo>, StoreError> {
        let mut dir = self.inner.refs.clone();
        let mut name = String::new();
        for segment in prefix.directory() {
            dir.push(format!("{segment}{DIR_SUFFIX}"));
            if !name.is_empty() {
                name.push('/');
            }
            name.push_str(segment);
        }
        let prefix = prefix.clone();
        blocking("listing refs", move || {
            let mut out = Vec::new();
            walk_refs(&dir, &name, &prefix, &mut out)?;
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }
}
