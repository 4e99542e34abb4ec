//! Bytes on their way in: temporary files, and the threads that hash and
//! write request bodies into them (and read files back out), so that no
//! disk I/O or hashing runs on the async runtime and memory stays bounded
//! whatever the blob's size.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use ick_api::blobs::Hasher;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Chunks waiting for the writer thread: bounds the memory of one upload.
const WRITE_QUEUE: usize = 16;
/// The writer thread's buffer: few, large writes.
const WRITE_BUFFER: usize = 1 << 20;
/// Pieces read from files for downloads.
pub const READ_CHUNK: usize = 256 * 1024;
/// Pieces read ahead of the network.
const READ_QUEUE: usize = 4;

/// A stream of a blob's bytes.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// The directories for bytes not yet in a blob: `tmp/` (single-request
/// uploads and ref writes; emptied at every start, since what a killed
/// process left there was never acknowledged) and `uploads/` (sessions,
/// which outlive restarts).
#[derive(Debug, Clone)]
pub struct Staging {
    tmp: PathBuf,
    uploads: PathBuf,
}

impl Staging {
    /// Creates the directories under `root` and removes leftovers in `tmp/`.
    pub fn open(root: &Path) -> io::Result<Staging> {
        let staging = Staging {
            tmp: root.join("tmp"),
            uploads: root.join("uploads"),
        };
        std::fs::create_dir_all(&staging.uploads)?;
        std::fs::create_dir_all(&staging.tmp)?;
        let mut removed = 0;
        for entry in std::fs::read_dir(&staging.tmp)? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(removed, dir = %staging.tmp.display(), "removed leftovers of an earlier run");
        }
        Ok(staging)
    }

    /// Where upload sessions keep their bytes.
    pub fn uploads_dir(&self) -> &Path {
        &self.uploads
    }

    /// A new empty temporary file (blocking: call from a blocking task).
    pub fn temp_file(&self) -> io::Result<(TempFile, File)> {
        let path = self.tmp.join(uuid::Uuid::new_v4().simple().to_string());
        let file = File::options()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)?;
        Ok((TempFile { path: Some(path) }, file))
    }

    /// [`Staging::temp_file`] on a blocking thread.
    pub async fn temp_file_async(&self) -> io::Result<(TempFile, File)> {
        let staging = self.clone();
        tokio::task::spawn_blocking(move || staging.temp_file())
            .await
            .map_err(io::Error::other)?
    }
}

/// A temporary file, removed when dropped unless kept.
#[derive(Debug)]
pub struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    /// Its path.
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Removes the file now, off the runtime, and waits for it (so that
    /// whoever is answered next sees it gone).
    pub async fn remove(mut self) {
        if let Some(path) = self.path.take() {
            let _ = tokio::task::spawn_blocking(move || remove_quietly(&path)).await;
        }
    }

    /// Takes responsibility for the file away from the guard.
    pub fn keep(mut self) -> PathBuf {
        self.path.take().unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Unlinking a large file takes a while: not on the runtime.
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn_blocking(move || remove_quietly(&path));
                }
                Err(_) => remove_quietly(&path),
            }
        }
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a temporary file");
    }
}

/// Makes a rename or link in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What a [`ChunkWriter`] wrote.
#[derive(Debug)]
pub struct Written {
    /// The file, positioned after the last byte written.
    pub file: File,
    /// The hash state after the last byte, if it was hashing.
    pub hasher: Option<Hasher>,
    /// Bytes written.
    pub bytes: u64,
}

/// Writes chunks to a file on a blocking thread, hashing them on the way.
pub struct ChunkWriter {
    tx: mpsc::Sender<Bytes>,
    task: JoinHandle<io::Result<Written>>,
}

impl ChunkWriter {
    /// Starts the thread; it appends at `file`'s current position.
    pub fn spawn(file: File, hasher: Option<Hasher>) -> ChunkWriter {
        let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        let task = tokio::task::spawn_blocking(move || {
            let mut hasher = hasher;
            let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
            let mut bytes = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                out.write_all(&chunk)?;
                if let Some(h) = hasher.as_mut() {
                    h.update(&chunk);
                }
                bytes += chunk.len() as u64;
            }
            let file = out.into_inner().map_err(|e| e.into_error())?;
            Ok(Written {
                file,
                hasher,
                bytes,
            })
        });
        ChunkWriter { tx, task }
    }

    /// Queues a chunk; `false` if the thread stopped (see [`ChunkWriter::finish`]).
    pub async fn write(&mut self, chunk: Bytes) -> bool {
        self.tx.send(chunk).await.is_ok()
    }

    /// Flushes and answers what was written, or the write error.
    pub async fn finish(self) -> io::Result<Written> {
        drop(self.tx);
        self.task.await.map_err(io::Error::other)?
    }
}

/// Why a body stopped flowing into a writer.
#[derive(Debug)]
pub enum Stop {
    /// It passed the limit.
    TooLarge,
    /// The client's body broke off (a cut connection).
    Broken(String),
    /// The writer thread stopped; its error says why.
    WriterStopped,
    /// Another request took over.
    Cancelled,
}

/// Moves `body` into `writer`, refusing more than `limit` bytes. Answers
/// the bytes moved.
pub async fn pump(
    body: Body,
    writer: &mut ChunkWriter,
    limit: u64,
    cancel: &CancellationToken,
) -> Result<u64, (Stop, u64)> {
    let mut stream = body.into_data_stream();
    let mut moved = 0u64;
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = cancel.cancelled() => return Err((Stop::Cancelled, moved)),
        };
        let Some(chunk) = next else { return Ok(moved) };
        let chunk = chunk.map_err(|e| (Stop::Broken(e.to_string()), moved))?;
        if moved + chunk.len() as u64 > limit {
            return Err((Stop::TooLarge, moved));
        }
        moved += chunk.len() as u64;
        if !writer.write(chunk).await {
            return Err((Stop::WriterStopped, moved));
        }
    }
}

/// Streams `range` of `file`, read ahead on a blocking thread.
pub fn read_file(mut file: File, range: Range<u64>) -> ByteStream {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(READ_QUEUE);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(range.start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = range.end.saturating_sub(range.start);
        while left > 0 {
            let want = usize::try_from(left).map_or(READ_CHUNK, |l| l.min(READ_CHUNK));
            let mut buf = BytesMut::zeroed(want);
            let result = match file.read(&mut buf) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file is shorter than expected",
                )),
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    Ok(buf.freeze())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = result.is_err();
            // A closed channel means the reader went away: stop reading.
            if tx.blocking_send(result).is_err() || failed {
                return;
            }
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from(mut rx: mpsc::Receiver<io::Result<Bytes>>) -> ByteStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
