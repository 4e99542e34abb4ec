//! Resumable upload sessions, on the model of the OCI distribution spec's
//! chunked blob upload.
//!
//! A session is two files in the staging area's `uploads/`: `ID.json`
//! (owner, creation time; the session exists while it does) and `ID.data`
//! (the bytes received; its length is the offset). Both outlive restarts.
//! Every acknowledged chunk is fsynced; bytes of a chunk that broke off
//! are kept, since they arrived intact, so a resume loses nothing. The
//! hash state is kept in memory while the process lives; after a restart
//! the digest is computed from the file at completion.
//!
//! One request at a time works on a session; a newer one takes over from
//! an older one still running (typically a PATCH whose connection died
//! without the server noticing yet), which then stops and keeps its bytes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use ick_api::blobs::{BlobInfo, ChunkRange, Digest, Hasher};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backend::{Backend, Staged, blocking};
use crate::error::StoreError;
use crate::staging::{ChunkWriter, Stop, pump, sync_dir};

/// How long a request waits for an older one on the same session to stop.
const TAKE_OVER_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    owner: String,
    created_at: u64,
}

#[derive(Debug)]
struct Session {
    /// The hash of the first `.0` bytes, when known.
    hasher: Option<(u64, Hasher)>,
    gone: bool,
}

#[derive(Debug)]
struct Slot {
    /// The client id that opened it: nobody else sees it.
    owner: String,
    state: tokio::sync::Mutex<Session>,
    newest: Mutex<Option<CancellationToken>>,
}

/// The open upload sessions.
#[derive(Debug)]
pub struct Uploads {
    dir: PathBuf,
    slots: Mutex<HashMap<Uuid, Arc<Slot>>>,
    expire_after: Duration,
}

/// A chunk as its request declares it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChunkHeaders {
    /// `Content-Range`, if given.
    pub range: Option<ChunkRange>,
    /// `Content-Length`, if given.
    pub length: Option<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The digest of a whole file, computed on a blocking thread.
fn hash_file(path: &Path) -> io::Result<(Hasher, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok((hasher, total)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

impl Uploads {
    /// The sessions in `dir`; removes data files whose session was never
    /// fully created.
    pub fn open(dir: &Path, expire_after: Duration) -> io::Result<Uploads> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "data")
                && !path.with_extension("json").exists()
            {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Uploads {
            dir: dir.to_path_buf(),
            slots: Mutex::new(HashMap::new()),
            expire_after,
        })
    }

    fn data_path(&self, id: &Uuid) -> PathBuf {
        self.dir.join(format!("{}.data", id.simple()))
    }

    fn meta_path(&self, id: &Uuid) -> PathBuf {
        self.dir.join(format!("{}.json", id.simple()))
    }

    /// Opens a session for `owner` (a client id); answers its id.
    pub async fn create(&self, owner: &str) -> Result<String, StoreError> {
        let id = Uuid::new_v4();
        let (data, meta_path, dir) = (self.data_path(&id), self.meta_path(&id), self.dir.clone());
        let meta = serde_json::to_vec(&Meta {
            owner: owner.to_string(),
            created_at: now(),
        })
        .map_err(|e| StoreError::Internal(e.to_string()))?;
        blocking("creating an upload session", move || {
            File::create_new(&data)?;
            let tmp = meta_path.with_extension("json.tmp");
            std::fs::write(&tmp, meta)?;
            File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &meta_path)?;
            sync_dir(&dir)
        })
        .await?;
        lock(&self.slots).insert(
            id,
            Arc::new(Slot {
                owner: owner.to_string(),
                state: tokio::sync::Mutex::new(Session {
                    hasher: Some((0, Hasher::new())),
                    gone: false,
                }),
                newest: Mutex::new(None),
            }),
        );
        Ok(id.simple().to_string())
    }

    /// The session `id`, loaded from disk if this process has not seen it.
    async fn slot(&self, id: &str, owner: Option<&str>) -> Result<(Uuid, Arc<Slot>), StoreError> {
        let (uuid, slot) = self.any_slot(id).await?;
        if owner.is_some_and(|o| o != slot.owner) {
            return Err(StoreError::UploadNotFound(id.to_string()));
        }
        Ok((uuid, slot))
    }

    async fn any_slot(&self, id: &str) -> Result<(Uuid, Arc<Slot>), StoreError> {
        let not_found = || StoreError::UploadNotFound(id.to_string());
        let uuid = Uuid::try_parse(id).map_err(|_| not_found())?;
        if let Some(slot) = lock(&self.slots).get(&uuid) {
            return Ok((uuid, slot.clone()));
        }
        let meta_path = self.meta_path(&uuid);
        let meta = blocking("reading an upload session", move || {
            match std::fs::read(&meta_path) {
                Ok(bytes) => Ok(serde_json::from_slice::<Meta>(&bytes).ok()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?
        .ok_or_else(not_found)?;
        let slot = Arc::new(Slot {
            owner: meta.owner,
            state: tokio::sync::Mutex::new(Session {
                hasher: None,
                gone: false,
            }),
            newest: Mutex::new(None),
        });
        let slot = lock(&self.slots).entry(uuid).or_insert(slot).clone();
        Ok((uuid, slot))
    }

    /// Waits for the session, taking it over from an older request.
    async fn take_over<'a>(
        &self,
        id: &str,
        slot: &'a Slot,
    ) -> Result<(tokio::sync::MutexGuard<'a, Session>, CancellationToken), StoreError> {
        let mine = CancellationToken::new();
        if let Some(older) = lock(&slot.newest).replace(mine.clone()) {
            older.cancel();
        }
        let session = tokio::time::timeout(TAKE_OVER_WAIT, slot.state.lock())
            .await
            .map_err(|_| StoreError::Internal("an upload session stayed busy".into()))?;
        if mine.is_cancelled() {
            return Err(StoreError::Superseded);
        }
        if session.gone {
            return Err(StoreError::UploadNotFound(id.to_string()));
        }
        Ok((session, mine))
    }

    /// How many bytes the session holds.
    pub async fn offset(&self, id: &str, owner: &str) -> Result<u64, StoreError> {
        // Not the session's lock: a running PATCH must not make HEAD wait.
        let (uuid, _) = self.slot(id, Some(owner)).await?;
        let data = self.data_path(&uuid);
        let len = blocking(
            "reading an upload session",
            move || match std::fs::metadata(&data) {
                Ok(meta) => Ok(Some(meta.len())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
        )
        .await?;
        len.ok_or_else(|| StoreError::UploadNotFound(id.to_string()))
    }

    /// Appends a chunk; answers the new offset.
    pub async fn append(
        &self,
        id: &str,
        owner: &str,
        chunk: ChunkHeaders,
        body: Body,
        max: u64,
    ) -> Result<u64, StoreError> {
        let (uuid, slot) = self.slot(id, Some(owner)).await?;
        let (mut session, cancel) = self.take_over(id, &slot).await?;
        self.append_locked(&uuid, &mut session, chunk, body, max, &cancel)
            .await
    }

    async fn append_locked(
        &self,
        id: &Uuid,
        session: &mut Session,
        chunk: ChunkHeaders,
        body: Body,
        max: u64,
        cancel: &CancellationToken,
    ) -> Result<u64, StoreError> {
        let data = self.data_path(id);
        let path = data.clone();
        let (file, start) = blocking("opening an upload session", move || {
            let file = File::options().append(true).open(path)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        })
        .await?;
        if let Some(range) = chunk.range
            && range.start != start
        {
            return Err(StoreError::WrongOffset {
                held: start,
                got: range.start,
            });
        }
        let expected = chunk.range.map(|r| r.len());
        if let (Some(expected), Some(length)) = (expected, chunk.length)
            && expected != length
        {
            return Err(StoreError::BadRequest(format!(
                "Content-Range covers {expected} bytes but Content-Length is {length}"
            )));
        }
        if let Some(len) = expected.or(chunk.length)
            && start.saturating_add(len) > max
        {
            return Err(StoreError::TooLarge { limit: max });
        }
        let hasher = match &session.hasher {
            Some((n, h)) if *n == start => Some(h.clone()),
            _ => None,
        };
        let mut writer = ChunkWriter::spawn(file, hasher);
        let pumped = pump(body, &mut writer, max.saturating_sub(start), cancel).await;
        let written = writer.finish().await;
        let truncate = |why: StoreError| async move {
            let path = data.clone();
            blocking("undoing a chunk", move || {
                File::options().write(true).open(path)?.set_len(start)
            })
            .await?;
            Err(why)
        };
        let written = match written {
            Ok(written) => written,
            Err(e) => return truncate(StoreError::io("writing an upload chunk", e)).await,
        };
        let end = start + written.bytes;
        match pumped {
            Ok(n) if expected.is_some_and(|e| e != n) => {
                truncate(StoreError::BadRequest(format!(
                    "the chunk has {n} bytes but Content-Range covers {}",
                    expected.unwrap_or_default()
                )))
                .await
            }
            Ok(_) => {
                let file = written.file;
                blocking("syncing an upload chunk", move || file.sync_data()).await?;
                session.hasher = written.hasher.map(|h| (end, h));
                Ok(end)
            }
            Err((Stop::TooLarge, _)) => truncate(StoreError::TooLarge { limit: max }).await,
            Err((Stop::WriterStopped, _)) => {
                truncate(StoreError::Internal("the upload writer stopped".into())).await
            }
            Err((Stop::Broken(why), _)) => {
                // What arrived is intact and kept: the client resumes after it.
                session.hasher = written.hasher.map(|h| (end, h));
                tracing::info!(offset = end, "upload chunk broke off; its bytes are kept");
                Err(StoreError::BodyBroken(why))
            }
            Err((Stop::Cancelled, _)) => {
                session.hasher = written.hasher.map(|h| (end, h));
                Err(StoreError::Superseded)
            }
        }
    }

    /// Appends a last chunk if the body has one, checks the digest and
    /// makes the blob. A mismatch keeps the session (the client may have
    /// declared the wrong digest).
    #[allow(clippy::too_many_arguments)]
    pub async fn complete<B: Backend>(
        &self,
        id: &str,
        owner: &str,
        declared: Digest,
        chunk: ChunkHeaders,
        body: Body,
        max: u64,
        backend: &B,
    ) -> Result<(BlobInfo, bool), StoreError> {
        let (uuid, slot) = self.slot(id, Some(owner)).await?;
        let (mut session, cancel) = self.take_over(id, &slot).await?;
        if chunk.range.is_some() || chunk.length.is_some_and(|n| n > 0) {
            self.append_locked(&uuid, &mut session, chunk, body, max, &cancel)
                .await?;
        }
        let data = self.data_path(&uuid);
        let path = data.clone();
        let known = session.hasher.clone();
        let (file, hasher, size) = blocking("hashing an upload", move || {
            let file = File::open(&path)?;
            let len = file.metadata()?.len();
            match known {
                Some((n, hasher)) if n == len => Ok((file, hasher, len)),
                _ => {
                    let (hasher, len) = hash_file(&path)?;
                    Ok((file, hasher, len))
                }
            }
        })
        .await?;
        session.hasher = Some((size, hasher.clone()));
        let actual = hasher.finish();
        if actual != declared {
            return Err(StoreError::DigestMismatch { declared, actual });
        }
        let created = backend
            .commit(Staged {
                path: data,
                file,
                digest: actual,
                size,
            })
            .await?;
        self.remove_locked(&uuid, &mut session).await?;
        Ok((
            BlobInfo {
                digest: actual,
                size,
            },
            created,
        ))
    }

    /// Abandons the session and its bytes.
    pub async fn abort(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let (uuid, slot) = self.slot(id, Some(owner)).await?;
        let (mut session, _) = self.take_over(id, &slot).await?;
        self.remove_locked(&uuid, &mut session).await
    }

    async fn remove_locked(&self, id: &Uuid, session: &mut Session) -> Result<(), StoreError> {
        let (data, meta, dir) = (self.data_path(id), self.meta_path(id), self.dir.clone());
        blocking("removing an upload session", move || {
            for path in [meta, data] {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            sync_dir(&dir)
        })
        .await?;
        session.gone = true;
        lock(&self.slots).remove(id);
        Ok(())
    }

    /// How many sessions are open.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let dir = self.dir.clone();
        blocking("counting upload sessions", move || {
            let mut n = 0;
            for entry in std::fs::read_dir(&dir)? {
                if entry?.path().extension().is_some_and(|e| e == "json") {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }

    /// Removes the sessions that received nothing for `expire_after`;
    /// answers how many.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let dir = self.dir.clone();
        let expire_after = self.expire_after;
        let expired: Vec<Uuid> = blocking("listing upload sessions", move || {
            let mut expired = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let Some(id) = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| Uuid::try_parse(s).ok())
                else {
                    continue;
                };
                // The data file changes with every chunk; the meta file
                // stands in if the data is gone.
                let data = path.with_extension("data");
                let modified = std::fs::metadata(&data)
                    .or_else(|_| std::fs::metadata(&path))
                    .and_then(|m| m.modified());
                if let Ok(modified) = modified
                    && modified.elapsed().unwrap_or_default() > expire_after
                {
                    expired.push(id);
                }
            }
            Ok(expired)
        })
        .await?;
        let mut removed = 0;
        for id in expired {
            let Ok((uuid, slot)) = self.slot(&id.simple().to_string(), None).await else {
                continue;
            };
            // A session with a request running is not abandoned.
            let Ok(mut session) = slot.state.try_lock() else {
                continue;
            };
            if session.gone {
                continue;
            }
            self.remove_locked(&uuid, &mut session).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Sweeps until `cancel`, a few times per expiry period.
    pub async fn sweep_until(self: Arc<Self>, cancel: CancellationToken) {
        let every =
            (self.expire_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(300));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match self.sweep().await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "removed expired upload sessions"),
                Err(e) => tracing::warn!(error = %e, "cannot sweep upload sessions"),
            }
        }
    }
}
