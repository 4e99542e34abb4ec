//! Where blobs and refs are kept: a local directory or an S3 bucket, behind
//! one trait so that the routes (and the tests) treat them alike.
//!
//! Bytes always arrive first in the local [`Staging`] area, are hashed on
//! the way, and reach the backend only whole and checked ([`Backend::commit`]),
//! which is what keeps a partial blob from ever being seen.

mod fs;
mod s3;

use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;

use ick_api::blobs::{Digest, RefInfo, RefName, RefPrefix};

use crate::error::StoreError;
use crate::staging::{ByteStream, Staging};

pub use fs::FsBackend;
pub use s3::S3Backend;

/// A complete, checked file in the staging area, ready to become a blob.
#[derive(Debug)]
pub struct Staged {
    /// Where it is.
    pub path: PathBuf,
    /// The file, open for reading.
    pub file: std::fs::File,
    /// What its bytes hash to.
    pub digest: Digest,
    /// Its length.
    pub size: u64,
}

/// What the blobs take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub blobs: u64,
    pub bytes: u64,
}

/// Blob and ref storage.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Where uploads are received before they are committed.
    fn staging(&self) -> &Staging;

    /// Whether the storage can be used now; `Err` says why not.
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send;

    /// The size of a blob, `None` if there is none.
    fn size(&self, digest: &Digest)
    -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// The bytes of a blob in `range` (the whole blob if `None`); `None` if
    /// there is no such blob.
    fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> impl Future<Output = Result<Option<ByteStream>, StoreError>> + Send;

    /// Removes a blob; `false` if there was none.
    fn delete(&self, digest: &Digest) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Makes the staged file the blob `staged.digest`, atomically: until it
    /// returns, readers see no blob; after, the whole one. `false` if the
    /// blob existed already (nothing new is stored). The staged file stays
    /// where it is; the caller removes it.
    fn commit(&self, staged: Staged) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The blob a ref points at.
    fn get_ref(
        &self,
        name: &RefName,
    ) -> impl Future<Output = Result<Option<Digest>, StoreError>> + Send;

    /// Points a ref at a blob, atomically; `true` if the ref is new.
    fn set_ref(
        &self,
        name: &RefName,
        digest: &Digest,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes a ref; `false` if there was none.
    fn delete_ref(&self, name: &RefName) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// How many blobs there are, and their bytes, counted by listing
    /// them all (for `/metrics`, now and then).
    fn usage(&self) -> impl Future<Output = Result<Usage, StoreError>> + Send;

    /// The refs whose names start with `prefix`, sorted by name.
    fn list_refs(
        &self,
        prefix: &RefPrefix,
    ) -> impl Future<Output = Result<Vec<RefInfo>, StoreError>> + Send;
}

/// The fan-out path of a blob under a root: `sha256/ab/abcdef…`.
pub fn blob_key(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("sha256/{}/{hex}", &hex[..2])
}

/// Runs blocking file work off the runtime, mapping its I/O error.
pub(crate) async fn blocking<T, F>(doing: &'static str, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await?
        .map_err(|e| StoreError::io(doing, e))
}

/// A lock file that keeps a second store process off the same directory
/// (its start would remove the first one's uploads in progress).
pub(crate) fn lock_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{} is in use by another ick-artifact-store process",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            anyhow::bail!("cannot lock {}: {e}", path.display())
        }
    }
}
