//! Streams of unknown length into the store through an upload session, so
//! that a cut connection or a store restart resumes where the store
//! stopped instead of starting over.

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::client::{BlobClient, BlobError};
use super::digest::Hasher;
use super::retry::Backoff;
use super::transfer::{UploadSession, resumable};
use super::wire::BlobInfo;

/// The largest chunk of a stream: a stream cannot be read again, so each
/// chunk stays in memory until the store has it (with the next one being
/// read meanwhile).
const STREAM_CHUNK: u64 = 8 << 20;

impl BlobClient {
    /// Uploads everything `reader` yields as one blob, without knowing its
    /// size or digest first, through an upload session: chunks of at most
    /// 8 MiB (or the chunk size, if smaller) are kept in memory until the
    /// store acknowledges them, so a cut or a store that restarts resumes
    /// from the offset the store holds, for as long as the retry policy
    /// (or [`BlobClient::outage_timeout`]) allows. The digest is computed
    /// while reading and checked by the store at the end; nothing is
    /// visible before. A session that fails for another reason than the
    /// store being away is abandoned.
    pub async fn upload_stream<R>(&self, reader: R) -> Result<BlobInfo, BlobError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let session = self.start_upload().await?;
        let sent = self.send_stream(&session, reader).await;
        if let Err(e) = &sent
            && !e.is_transient()
            && !matches!(e, BlobError::Unreachable { .. })
        {
            // Once, best effort: the store also expires silent sessions.
            let _ = self
                .send(&[StatusCode::NOT_FOUND], |_| self.http.delete(&session.url))
                .await;
        }
        sent
    }

    async fn send_stream<R>(
        &self,
        session: &UploadSession,
        mut reader: R,
    ) -> Result<BlobInfo, BlobError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let max = self.chunk_size.min(STREAM_CHUNK);
        let mut hasher = Hasher::new();
        let mut backoff = self.backoff();
        let mut start = 0u64;
        let mut current = read_chunk(&mut reader, max, &mut hasher).await?;
        while !current.is_empty() {
            let (next, ()) = tokio::try_join!(
                read_chunk(&mut reader, max, &mut hasher),
                self.send_resuming(session, start, &current, &mut backoff),
            )?;
            start += current.len() as u64;
            current = next;
        }
        self.complete_upload(session, hasher.finish(), start).await
    }

    /// Sends `bytes`, which begin at byte `start` of the session, until
    /// the store holds them all; after a failure, goes on from what the
    /// store says it holds (a chunk cut short keeps what arrived).
    async fn send_resuming(
        &self,
        session: &UploadSession,
        start: u64,
        bytes: &Bytes,
        backoff: &mut Backoff,
    ) -> Result<(), BlobError> {
        let end = start + bytes.len() as u64;
        let mut at = start;
        while at < end {
            let rest = bytes.slice(usize::try_from(at - start).unwrap_or(usize::MAX)..);
            let error = match self.patch(session, at, end - at, rest.into()).await {
                Ok(_) => {
                    backoff.progressed();
                    return Ok(());
                }
                Err(e) if resumable(&e) => e,
                Err(e) => return Err(e),
            };
            let held = self.held_after(session, error, backoff).await?;
            if held < start || held > end {
                // The bytes before `start` were acknowledged, and are gone
                // from memory; those after `end` were never sent.
                return Err(BlobError::Protocol(format!(
                    "the upload session holds {held} bytes, but {start} were acknowledged and {end} sent"
                )));
            }
            if held > at {
                backoff.progressed();
            }
            tracing::info!(offset = held, "resuming the upload where the store stopped");
            at = held;
        }
        Ok(())
    }
}

/// Reads up to `max` bytes (fewer only at the end of the stream), adding
/// them to `hasher` piece by piece as they come.
async fn read_chunk<R>(reader: &mut R, max: u64, hasher: &mut Hasher) -> Result<Bytes, BlobError>
where
    R: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(usize::try_from(max).unwrap_or(usize::MAX));
    while (buf.len() as u64) < max {
        let before = buf.len();
        let n = (&mut *reader)
            .take(max - before as u64)
            .read_buf(&mut buf)
            .await
            .map_err(BlobError::io("cannot read what is being uploaded"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[before..]);
    }
    Ok(buf.freeze())
}
