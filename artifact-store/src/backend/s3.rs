//! The S3-compatible backend, through `object_store`.
//!
//! ```text
//! PREFIX/sha256/ab/abcdef…   blobs: a multipart upload of the checked
//!                            staging file, visible only once completed
//! PREFIX/refs/a/b/c          the ref a/b/c: the digest (a single PUT)
//! STAGING_DIR/tmp/, uploads/ the local staging area
//! ```
//! A multipart upload cut by a killed process is invisible; give the bucket
//! a lifecycle rule that aborts incomplete multipart uploads after a day so
//! that their parts do not linger.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ick_api::blobs::{Digest, RefInfo, RefName, RefPrefix};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::{Backend, Staged, Usage, blob_key, blocking, lock_dir};
use crate::config::S3Config;
use crate::error::StoreError;
use crate::staging::{ByteStream, Staging, read_file};

/// Parts uploaded at the same time: with the part size, bounds memory.
const PARTS_IN_FLIGHT: usize = 2;

/// Blobs and refs in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Backend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: AmazonS3,
    prefix: String,
    part_size: usize,
    staging: Staging,
    _lock: std::fs::File,
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl S3Backend {
    /// Connects to the bucket (lazily: the first request tells whether it
    /// works; `/readyz` asks) and prepares the staging directory.
    pub fn open(config: &S3Config) -> anyhow::Result<S3Backend> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(config.virtual_hosted_style);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret.expose());
        }
        let store = builder
            .build()
            .map_err(|e| anyhow::anyhow!("storage.s3 is not usable: {e}"))?;
        std::fs::create_dir_all(&config.staging_dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", config.staging_dir.display()))?;
        let lock = lock_dir(&config.staging_dir)?;
        let staging = Staging::open(&config.staging_dir)
            .map_err(|e| anyhow::anyhow!("cannot prepare {}: {e}", config.staging_dir.display()))?;
        let prefix = config
            .prefix
            .as_deref()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
            .map(|p| format!("{p}/"))
            .unwrap_or_default();
        Ok(S3Backend {
            inner: Arc::new(Inner {
                store,
                prefix,
                part_size: usize::try_from(config.part_size.0).unwrap_or(8 << 20),
                staging,
                _lock: lock,
            }),
        })
    }

    fn key(&self, rest: &str) -> Result<Path, StoreError> {
        Path::parse(format!("{}{rest}", self.inner.prefix))
            .map_err(|e| StoreError::Internal(format!("bad object key: {e}")))
    }

    fn blob(&self, digest: &Digest) -> Result<Path, StoreError> {
        self.key(&blob_key(digest))
    }

    fn ref_key(&self, name: &RefName) -> Result<Path, StoreError> {
        self.key(&format!("refs/{name}"))
    }

    async fn exists(&self, key: &Path) -> Result<Option<u64>, StoreError> {
        match self.inner.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn upload(&self, key: &Path, staged: Staged) -> Result<(), StoreError> {
        let store = &self.inner.store;
        if staged.size <= self.inner.part_size as u64 {
            // Small enough for one PUT (also the only way for an empty blob).
            let bytes = blocking("reading a staged blob", move || {
                let mut file = staged.file;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
                let mut buf = Vec::with_capacity(usize::try_from(staged.size).unwrap_or(0));
                std::io::Read::read_to_end(&mut file, &mut buf)?;
                Ok(Bytes::from(buf))
            })
            .await?;
            if bytes.len() as u64 != staged.size {
                return Err(StoreError::Internal("the staged file changed size".into()));
            }
            store.put(key, PutPayload::from(bytes)).await?;
            return Ok(());
        }
        let upload = store.put_multipart(key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.inner.part_size);
        let mut chunks = read_file(staged.file, 0..staged.size);
        let sent: Result<(), StoreError> = async {
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| StoreError::io("reading a staged blob", e))?;
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        match sent {
            Ok(()) => {
                writer.finish().await?;
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "cannot abort a multipart upload");
                }
                Err(e)
            }
        }
    }
}

impl Backend for S3Backend {
    fn staging(&self) -> &Staging {
        &self.inner.staging
    }

    async fn ready(&self) -> Result<(), String> {
        let probe = self.key("readyz-probe").map_err(|e| e.to_string())?;
        match self.inner.store.head(&probe).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(format!("the bucket is not reachable: {e}")),
        }
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        self.exists(&self.blob(digest)?).await
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<Option<ByteStream>, StoreError> {
        let key = self.blob(digest)?;
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        match self.inner.store.get_opts(&key, options).await {
            Ok(result) => Ok(Some(
                result.into_stream().map_err(std::io::Error::other).boxed(),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn usage(&self) -> Result<Usage, StoreError> {
        let blobs = self.key("sha256")?;
        self.inner
            .store
            .list(Some(&blobs))
            .map_err(StoreError::from)
            .try_fold(Usage::default(), |mut usage, meta| {
                usage.blobs += 1;
                usage.bytes += meta.size;
                futures::future::ready(Ok(usage))
            })
            .await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        let key = self.blob(digest)?;
        if self.exists(&key).await?.is_none() {
            return Ok(false);
        }
        self.inner.store.delete(&key).await?;
        Ok(true)
    }

    async fn commit(&self, staged: Staged) -> Result<bool, StoreError> {
        let key = self.blob(&staged.digest)?;
        if self.exists(&key).await?.is_some() {
            return Ok(false);
        }
        self.upload(&key, staged).await?;
        Ok(true)
    }

    async fn get_ref(&self, name: &RefName) -> Result<Option<Digest>, StoreError> {
        let key = self.ref_key(name)?;
        let bytes = match self.inner.store.get(&key).await {
            Ok(result) => result.bytes().await?,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let text = String::from_utf8_lossy(&bytes);
        text.trim()
            .parse()
            .map(Some)
            .map_err(|e| StoreError::Storage(format!("ref {name}: {e}")))
    }

    async fn set_ref(&self, name: &RefName, digest: &Digest) -> Result<bool, StoreError> {
        let key = self.ref_key(name)?;
        let existed = self.exists(&key).await?.is_some();
        self.inner
            .store
            .put(&key, PutPayload::from(format!("{digest}\n")))
            .await?;
        Ok(!existed)
    }

    async fn delete_ref(&self, name: &RefName) -> Result<bool, StoreError> {
        let key = self.ref_key(name)?;
        if self.exists(&key).await?.is_none() {
            return Ok(false);
        }
        self.inner.store.delete(&key).await?;
        Ok(true)
    }

    async fn list_refs(&self, prefix: &RefPrefix) -> Result<Vec<RefInfo>, StoreError> {
        let root = format!("{}refs/", self.inner.prefix);
        let dir: Vec<&str> = prefix.directory().collect();
        let listed = if dir.is_empty() {
            self.key("refs")?
        } else {
            self.key(&format!("refs/{}", dir.join("/")))?
        };
        let names: Vec<RefName> = self
            .inner
            .store
            .list(Some(&listed))
            .map_err(StoreError::from)
            .try_filter_map(|meta| {
                let name = meta
                    .location
                    .as_ref()
                    .strip_prefix(&root)
                    .and_then(|n| n.parse::<RefName>().ok())
                    .filter(|n| prefix.matches(n));
                futures::future::ready(Ok(name))
            })
            .try_collect()
            .await?;
        let mut refs: Vec<RefInfo> = futures::stream::iter(names)
            .map(|name| async move {
                let digest = self.get_ref(&name).await?;
                Ok::<_, StoreError>(digest.map(|digest| RefInfo { name, digest }))
            })
            .buffer_unordered(8)
            .try_filter_map(|r| futures::future::ready(Ok(r)))
            .try_collect()
            .await?;
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(refs)
    }
}
