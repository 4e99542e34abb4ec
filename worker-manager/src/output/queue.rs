//! Chunks waiting for the controller, in order: in memory up to a bound,
//! then in an unnamed temporary file, so that an action can go on writing
//! while the controller is away. Every chunk in memory is older than every
//! chunk in the file.

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Mutex, Notify};

/// The queue of one attempt's encoded chunks (each the JSON of an
/// `OutputChunk`).
pub struct Queue {
    inner: Mutex<Inner>,
    notify: Notify,
    memory_limit: usize,
    spill_dir: PathBuf,
    /// Bytes not yet acknowledged, of this queue and others (`/metrics`).
    buffered: Gauge,
}

struct Inner {
    memory: VecDeque<Bytes>,
    memory_bytes: usize,
    spill: Option<Spill>,
    /// Chunks in the file not yet read back.
    spilled: usize,
    /// Bytes pushed and not yet acknowledged, in memory or in the file.
    held_bytes: usize,
    closed: bool,
    spill_failed: bool,
}

struct Spill {
    file: Arc<std::fs::File>,
    write_at: u64,
    read_at: u64,
}

impl Queue {
    /// An empty queue keeping up to `memory_limit` bytes in memory and
    /// spilling the rest to a file in `spill_dir`.
    /// `buffered` counts the bytes it holds, with other queues'.
    pub fn new(memory_limit: usize, spill_dir: PathBuf, buffered: Gauge) -> Self {
        Queue {
            buffered,
            inner: Mutex::new(Inner {
                memory: VecDeque::new(),
                memory_bytes: 0,
                spill: None,
                spilled: 0,
                held_bytes: 0,
                closed: false,
                spill_failed: false,
            }),
            notify: Notify::new(),
            memory_limit,
            spill_dir,
        }
    }

    /// Adds a chunk at the end.
    pub async fn push(&self, chunk: Bytes) {
        let mut inner = self.inner.lock().await;
        inner.held_bytes += chunk.len();
        self.buffered.inc_by(chunk.len() as i64);
        let fits = inner.memory_bytes + chunk.len() <= self.memory_limit;
        if inner.spilled == 0 && (fits || inner.memory.is_empty()) || inner.spill_failed {
            inner.memory_bytes += chunk.len();
            inner.memory.push_back(chunk);
        } else if let Err(e) = self.spill(&mut inner, chunk.clone()).await {
            // Keeping it in memory is better than losing it.
            tracing::warn!(error = %e, dir = %self.spill_dir.display(), "cannot spill output to disk; keeping it in memory");
            inner.spill_failed = true;
            self.unspill_all(&mut inner).await;
            inner.memory_bytes += chunk.len();
            inner.memory.push_back(chunk);
        }
        drop(inner);
        self.notify.notify_one();
    }

    /// No more chunks will come.
    pub async fn close(&self) {
        self.inner.lock().await.closed = true;
        self.notify.notify_one();
    }

    /// Whether it is closed and empty.
    pub async fn is_done(&self) -> bool {
        let inner = self.inner.lock().await;
        inner.closed && inner.memory.is_empty() && inner.spilled == 0
    }

    /// Waits until something is pushed or the queue is closed.
    pub async fn changed(&self) {
        self.notify.notified().await
    }

    /// The oldest chunks, as many as fit in `max_bytes` (at least one),
    /// without removing them: [`Queue::ack`] does, once they are delivered.
    pub async fn peek(&self, max_bytes: usize) -> Vec<Bytes> {
        let mut inner = self.inner.lock().await;
        if inner.memory.is_empty()
            && inner.spilled > 0
            && let Err(e) = self.refill(&mut inner).await
        {
            tracing::error!(error = %e, "cannot read spilled output back");
        }
        let mut batch = Vec::new();
        let mut size = 0;
        for chunk in &inner.memory {
            if !batch.is_empty() && size + chunk.len() + 1 > max_bytes {
                break;
            }
            size += chunk.len() + 1;
            batch.push(chunk.clone());
        }
        batch
    }

    /// Removes the `n` oldest chunks: the controller has them.
    pub async fn ack(&self, n: usize) {
        let mut inner = self.inner.lock().await;
        for _ in 0..n {
            if let Some(chunk) = inner.memory.pop_front() {
                inner.memory_bytes -= chunk.len();
                inner.held_bytes -= chunk.len();
                self.buffered.dec_by(chunk.len() as i64);
            }
        }
    }

    async fn spill(&self, inner: &mut Inner, chunk: Bytes) -> std::io::Result<()> {
        if inner.spill.is_none() {
            let dir = self.spill_dir.clone();
            let file = blocking(move || {
                std::fs::create_dir_all(&dir)?;
                tempfile::tempfile_in(&dir)
            })
            .await?;
            inner.spill = Some(Spill {
                file: Arc::new(file),
                write_at: 0,
                read_at: 0,
            });
        }
        let Some(spill) = inner.spill.as_mut() else {
            return Ok(());
        };
        let file = spill.file.clone();
        let at = spill.write_at;
        let len = chunk.len() as u64;
        blocking(move || {
            let mut record = Vec::with_capacity(chunk.len() + 4);
            record.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            record.extend_from_slice(&chunk);
            file.write_all_at(&record, at)
        })
        .await?;
        spill.write_at += 4 + len;
        inner.spilled += 1;
        Ok(())
    }

    /// Reads spilled chunks back into memory, up to the memory limit.
    async fn refill(&self, inner: &mut Inner) -> std::io::Result<()> {
        let Some(spill) = inner.spill.as_mut() else {
            return Ok(());
        };
        let file = spill.file.clone();
        let (mut at, end) = (spill.read_at, spill.write_at);
        let budget = self.memory_limit.max(1);
        let (chunks, next) = blocking(move || {
            let mut chunks = Vec::new();
            let mut size = 0;
            while at < end && (chunks.is_empty() || size < budget) {
                let mut header = [0u8; 4];
                file.read_exact_at(&mut header, at)?;
                let len = u32::from_le_bytes(header) as usize;
                let mut body = vec![0u8; len];
                file.read_exact_at(&mut body, at + 4)?;
                at += 4 + len as u64;
                size += len;
                chunks.push(Bytes::from(body));
            }
            Ok((chunks, at))
        })
        .await?;
        spill.read_at = next;
        inner.spilled -= chunks.len();
        if inner.spilled == 0 {
            // Start the file over, giving its space back.
            spill.read_at = 0;
            spill.write_at = 0;
            let file = spill.file.clone();
            blocking(move || file.set_len(0)).await?;
        }
        for chunk in chunks {
            inner.memory_bytes += chunk.len();
            inner.memory.push_back(chunk);
        }
        Ok(())
    }

    /// Brings everything spilled back into memory (the disk failed).
    async fn unspill_all(&self, inner: &mut Inner) {
        while inner.spilled > 0 {
            let before = inner.spilled;
            if self.refill(inner).await.is_err() || inner.spilled == before {
                tracing::error!(
                    lost = inner.spilled,
                    "spilled output could not be read back"
                );
                inner.spilled = 0;
            }
        }
    }
}

impl Drop for Queue {
    /// What an abandoned attempt never delivered is no longer held.
    fn drop(&mut self) {
        let held = self.inner.get_mut().held_bytes;
        self.buffered.dec_by(held as i64);
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_come_out_in_order_through_memory_and_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = Queue::new(100, dir.path().to_path_buf(), Gauge::default());
        let chunks: Vec<Bytes> = (0..50)
            .map(|i| Bytes::from(format!("chunk number {i:03}")))
            .collect();
        for c in &chunks[..30] {
            queue.push(c.clone()).await;
        }
        assert!(queue.inner.lock().await.spilled > 0, "it spilled");
        let mut got = Vec::new();
        // Take some, then push more while part of it is still in the file.
        for _ in 0..3 {
            let batch = queue.peek(40).await;
            assert!(!batch.is_empty());
            queue.ack(batch.len()).await;
            got.extend(batch);
        }
        for c in &chunks[30..] {
            queue.push(c.clone()).await;
        }
        queue.close().await;
        while !queue.is_done().await {
            let batch = queue.peek(1000).await;
            queue.ack(batch.len()).await;
            got.extend(batch);
        }
        assert_eq!(got, chunks);
        assert!(queue.inner.lock().await.memory_bytes == 0);
    }

    #[tokio::test]
    async fn an_unusable_spill_directory_keeps_output_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").expect("write");
        let queue = Queue::new(10, file.join("spill"), Gauge::default());
        for i in 0..5 {
            queue.push(Bytes::from(format!("{i}-0123456789"))).await;
        }
        queue.close().await;
        let batch = queue.peek(10_000).await;
        assert_eq!(batch.len(), 5);
    }
}
