//! Files in and out of the store, resuming where a cut stopped them.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::client::{BlobClient, BlobError, DigestQuery, READ_CHUNK, check, hashing, json, lock};
use super::digest::{Digest, Hasher};
use super::range::ChunkRange;
use super::retry::Backoff;
use super::wire::{BlobInfo, UPLOAD_OFFSET};

/// An open upload session: the URL chunks are sent to. Keep it (it is
/// serializable) to resume the upload later, even from another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSession {
    /// `…/uploads/{id}`.
    pub url: String,
}

/// The hash of a file's first `offset` bytes.
#[derive(Clone, Default)]
struct Hashed {
    offset: u64,
    hasher: Hasher,
}

/// Hashes `path` from `from.offset` up to `to`.
async fn hash_file(path: &Path, from: Hashed, to: u64) -> Result<Hashed, BlobError> {
    let context = || format!("cannot read {}", path.display());
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(BlobError::io(context()))?;
    file.seek(SeekFrom::Start(from.offset))
        .await
        .map_err(BlobError::io(context()))?;
    let mut hashed = from;
    let mut buf = vec![0u8; READ_CHUNK];
    while hashed.offset < to {
        let want = usize::try_from(to - hashed.offset).map_or(buf.len(), |n| n.min(buf.len()));
        let n = file
            .read(&mut buf[..want])
            .await
            .map_err(BlobError::io(context()))?;
        if n == 0 {
            return Err(BlobError::Protocol(format!(
                "{} is shorter than the {to} bytes already sent",
                path.display()
            )));
        }
        hashed.hasher.update(&buf[..n]);
        hashed.offset += n as u64;
    }
    Ok(hashed)
}

fn upload_offset(response: &reqwest::Response) -> Result<u64, BlobError> {
    response
        .headers()
        .get(UPLOAD_OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| BlobError::Protocol("no Upload-Offset in the answer".into()))
}

/// Whether a failed chunk may be sent again from the offset the store
/// holds: a cut, or a 416 when the store holds other than we thought
/// (an older request of ours still wrote after we gave up on it).
pub(super) fn resumable(error: &BlobError) -> bool {
    error.is_transient() || error.status() == Some(StatusCode::RANGE_NOT_SATISFIABLE)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

impl BlobClient {
    /// Opens an upload session (`POST /uploads`).
    pub async fn start_upload(&self) -> Result<UploadSession, BlobError> {
        let url = self.url("/uploads");
        self.retrying("POST uploads", || async {
            let response = self.send(&[], |_| self.http.post(&url)).await?;
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| BlobError::Protocol("no Location for the upload".into()))?;
            let url = if location.starts_with("http://") || location.starts_with("https://") {
                location.to_string()
            } else {
                self.url(location)
            };
            Ok(UploadSession { url })
        })
        .await
    }

    /// How many bytes the session holds (`HEAD /uploads/{id}`).
    pub async fn upload_offset(&self, session: &UploadSession) -> Result<u64, BlobError> {
        self.retrying("HEAD upload", || self.upload_offset_once(session))
            .await
    }

    async fn upload_offset_once(&self, session: &UploadSession) -> Result<u64, BlobError> {
        let response = self.send(&[], |_| self.http.head(&session.url)).await?;
        upload_offset(&response)
    }

    /// After a chunk failed with `error`: waits as `backoff` says, then
    /// asks the store how much of the session it holds, within the same
    /// retries (the store may be restarting).
    pub(super) async fn held_after(
        &self,
        session: &UploadSession,
        error: BlobError,
        backoff: &mut Backoff,
    ) -> Result<u64, BlobError> {
        backoff.wait(error, "PATCH upload").await?;
        loop {
            match self.upload_offset_once(session).await {
                Ok(held) => return Ok(held),
                Err(e) if e.is_transient() => backoff.wait(e, "HEAD upload").await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// `PATCH /uploads/{id}` of `len` bytes at `start`; answers the offset
    /// the store then holds, which must be the chunk's end.
    pub(super) async fn patch(
        &self,
        session: &UploadSession,
        start: u64,
        len: u64,
        body: reqwest::Body,
    ) -> Result<u64, BlobError> {
        let range = ChunkRange::new(start, len);
        let token = self.token().await?;
        let request = self
            .http
            .patch(&session.url)
            .bearer_auth(token)
            .header(header::CONTENT_RANGE, range.header())
            .header(header::CONTENT_LENGTH, len)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        let response = check(self.execute(request).await?, &[]).await?;
        let held = upload_offset(&response)?;
        if held != start + len {
            return Err(BlobError::Protocol(format!(
                "sent up to byte {} but the session holds {held}",
                start + len
            )));
        }
        Ok(held)
    }

    /// Abandons a session and the bytes it holds; `false` if it was gone.
    pub async fn abort_upload(&self, session: &UploadSession) -> Result<bool, BlobError> {
        self.retrying("DELETE upload", || async {
            let response = self
                .send(&[StatusCode::NOT_FOUND], |_| self.http.delete(&session.url))
                .await?;
            Ok(response.status() != StatusCode::NOT_FOUND)
        })
        .await
    }

    /// Uploads a file through a new session, in chunks; a cut connection
    /// resumes from the offset the store holds, and the digest (computed
    /// while sending) is checked by the store at the end.
    pub async fn upload_file(&self, path: &Path) -> Result<BlobInfo, BlobError> {
        let session = self.start_upload().await?;
        self.resume_upload(&session, path).await
    }

    /// Sends the rest of `path` to a session that may already hold its
    /// first bytes (from an earlier, interrupted call), then completes it.
    pub async fn resume_upload(
        &self,
        session: &UploadSession,
        path: &Path,
    ) -> Result<BlobInfo, BlobError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(BlobError::io(format!("cannot read {}", path.display())))?
            .len();
        let held = self.upload_offset(session).await?;
        if held > size {
            return Err(BlobError::Protocol(format!(
                "the session holds {held} bytes but {} has {size}",
                path.display()
            )));
        }
        let mut hashed = hash_file(path, Hashed::default(), held).await?;
        let mut backoff = self.backoff();
        while hashed.offset < size {
            let len = self.chunk_size.min(size - hashed.offset);
            let error = match self.send_chunk(session, path, &hashed, len).await {
                Ok(next) => {
                    hashed = next;
                    backoff.progressed();
                    continue;
                }
                Err(e) if resumable(&e) => e,
                Err(e) => return Err(e),
            };
            let held = self.held_after(session, error, &mut backoff).await?;
            if held > size {
                return Err(BlobError::Protocol(format!(
                    "the session holds {held} bytes, more than the file's {size}"
                )));
            }
            if held > hashed.offset {
                backoff.progressed();
            }
            // Go on from the last acknowledged state when we can, else
            // hash again from the start.
            let from = if held >= hashed.offset {
                hashed
            } else {
                Hashed::default()
            };
            hashed = hash_file(path, from, held).await?;
        }
        self.complete_upload(session, hashed.hasher.finish(), size)
            .await
    }

    /// Sends `len` bytes of `path` from `from.offset`; answers the hash
    /// state after them.
    async fn send_chunk(
        &self,
        session: &UploadSession,
        path: &Path,
        from: &Hashed,
        len: u64,
    ) -> Result<Hashed, BlobError> {
        let context = || format!("cannot read {}", path.display());
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(BlobError::io(context()))?;
        file.seek(SeekFrom::Start(from.offset))
            .await
            .map_err(BlobError::io(context()))?;
        let sent = Arc::new(Mutex::new((from.hasher.clone(), 0u64)));
        let body = hashing(
            ReaderStream::with_capacity(file.take(len), READ_CHUNK),
            sent.clone(),
        );
        let held = self
            .patch(session, from.offset, len, reqwest::Body::wrap_stream(body))
            .await?;
        let (hasher, n) = std::mem::take(&mut *lock(&sent));
        if n != len {
            return Err(BlobError::Protocol(format!(
                "{} changed while it was being sent",
                path.display()
            )));
        }
        Ok(Hashed {
            offset: held,
            hasher,
        })
    }

    /// `PUT /uploads/{id}?digest=`: the store checks the digest and makes
    /// the blob. If an earlier try made it but its answer was lost, the
    /// session is gone and the blob is there: that is success too.
    pub(super) async fn complete_upload(
        &self,
        session: &UploadSession,
        digest: Digest,
        size: u64,
    ) -> Result<BlobInfo, BlobError> {
        let query = DigestQuery { digest };
        let info: BlobInfo = self
            .retrying("PUT upload", || async {
                let response = self
                    .send(&[StatusCode::NOT_FOUND], |_| {
                        self.http.put(&session.url).query(&query)
                    })
                    .await?;
                if response.status() == StatusCode::NOT_FOUND {
                    if self.stat(&digest).await? == Some(size) {
                        return Ok(BlobInfo { digest, size });
                    }
                    return Err(check(response, &[]).await.err().unwrap_or_else(|| {
                        BlobError::Protocol("the upload session is gone".into())
                    }));
                }
                json(response).await
            })
            .await?;
        if info.digest != digest || info.size != size {
            return Err(BlobError::Protocol(format!(
                "sent {digest} ({size} bytes), the store made {} ({} bytes)",
                info.digest, info.size
            )));
        }
        Ok(info)
    }

    /// Downloads a blob to `path`, through `path.partial`: an earlier,
    /// interrupted download resumes from what that file holds. The file
    /// appears at `path` only whole and with the right digest. Returns the
    /// size.
    pub async fn download_file(&self, digest: &Digest, path: &Path) -> Result<u64, BlobError> {
        let partial = partial_path(path);
        let context = || format!("cannot write {}", partial.display());
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&partial)
            .await
            .map_err(BlobError::io(context()))?;
        let held = file
            .metadata()
            .await
            .map_err(BlobError::io(context()))?
            .len();
        let hashed = hash_file(&partial, Hashed::default(), held).await?;
        file.seek(SeekFrom::End(0))
            .await
            .map_err(BlobError::io(context()))?;
        // Large writes: a tokio file sends each write to a blocking thread.
        let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let size = match self
            .download_from(digest, &mut writer, held, hashed.hasher)
            .await
        {
            Ok(size) => size,
            Err(e) => {
                // Keep what arrived, for the next try.
                let _ = writer.flush().await;
                drop(writer);
                if !e.is_transient() {
                    // Wrong or vanished bytes are no use for a resume.
                    let _ = tokio::fs::remove_file(&partial).await;
                }
                return Err(e);
            }
        };
        let file = writer.into_inner();
        file.sync_all().await.map_err(BlobError::io(context()))?;
        drop(file);
        tokio::fs::rename(&partial, path)
            .await
            .map_err(BlobError::io(format!("cannot write {}", path.display())))?;
        Ok(size)
    }
}
