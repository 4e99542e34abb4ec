//! An action's output on its way to the controller: read from the
//! action's pipes, cut into ordered chunks (flushed every `flush_interval`
//! or when a chunk is full), queued (spilling to disk past a bound) and
//! sent in batches, retried with backoff until delivered, in order. Output
//! is never dropped while the attempt is ours.

mod chunker;
mod queue;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ick_api::blobs::RetryPolicy;
use ick_api::work::{OutputChunk, Stream};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::OutputConfig;
use crate::controller::ControllerClient;
use crate::error::CallError;
use crate::stop::Stop;

pub use chunker::Chunker;
use queue::Queue;

enum Message {
    Data(Stream, Bytes),
    Close,
}

/// Writes to an action's output. Cheap to clone.
#[derive(Clone)]
pub struct OutputWriter {
    tx: mpsc::Sender<Message>,
}

impl OutputWriter {
    /// Appends bytes to `stream`.
    pub async fn write(&self, stream: Stream, bytes: Bytes) {
        let _ = self.tx.send(Message::Data(stream, bytes)).await;
    }

    /// Appends a line of the worker's own (what it did, why it failed),
    /// credentials in URLs redacted.
    pub async fn line(&self, stream: Stream, text: &str) {
        let text = ick_api::secret::redact_urls(text);
        let mut line = String::with_capacity(text.len() + 1);
        line.push_str(&text);
        line.push('\n');
        self.write(stream, Bytes::from(line)).await;
    }
}

/// The attempt was abandoned: the controller gave the node to another
/// worker, so its output is of no use.
#[derive(Debug)]
pub struct Abandoned;

/// The output of one attempt: a chunker task and a sender task.
pub struct Output {
    tx: mpsc::Sender<Message>,
    chunker: JoinHandle<i64>,
    sender: JoinHandle<Result<(), Abandoned>>,
}

/// Where output goes and how.
#[derive(Clone)]
pub struct Destination {
    pub controller: ControllerClient,
    pub node_id: String,
    pub attempt: i64,
    pub config: OutputConfig,
    pub spill_dir: PathBuf,
    /// Bytes queued and not yet delivered, every action's together.
    pub buffered: Gauge,
}

impl Output {
    /// Starts the tasks; `stop` is abandoned if the controller says the
    /// attempt is no longer current.
    pub fn start(dest: Destination, stop: Stop) -> (Output, OutputWriter) {
        let (tx, rx) = mpsc::channel(64);
        let queue = Arc::new(Queue::new(
            dest.config.memory_limit.0 as usize,
            dest.spill_dir.clone(),
            dest.buffered.clone(),
        ));
        let chunker = tokio::spawn(chunk(rx, queue.clone(), dest.config.clone()));
        let sender = tokio::spawn(send(queue, dest, stop));
        (
            Output {
                tx: tx.clone(),
                chunker,
                sender,
            },
            OutputWriter { tx },
        )
    }

    /// Ends the output and waits until the controller holds all of it;
    /// returns how many chunks there were.
    pub async fn finish(self) -> Result<i64, Abandoned> {
        let _ = self.tx.send(Message::Close).await;
        let count = self.chunker.await.map_err(|_| Abandoned)?;
        self.sender.await.map_err(|_| Abandoned)??;
        Ok(count)
    }

    /// Stops both tasks at once (the attempt was abandoned).
    pub fn abort(self) {
        self.chunker.abort();
        self.sender.abort();
    }
}

/// Cuts what the writers send into chunks and queues them.
async fn chunk(mut rx: mpsc::Receiver<Message>, queue: Arc<Queue>, config: OutputConfig) -> i64 {
    let mut chunker = Chunker::new(config.chunk_size.0 as usize);
    let mut tick = tokio::time::interval(config.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::new();
    loop {
        let closed = tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Data(stream, bytes)) => {
                    chunker.push(stream, &bytes, &mut out);
                    false
                }
                Some(Message::Close) | None => {
                    chunker.finish(&mut out);
                    true
                }
            },
            _ = tick.tick() => {
                chunker.flush(&mut out);
                false
            }
        };
        for c in out.drain(..) {
            queue.push(encode(&c)).await;
        }
        if closed {
            queue.close().await;
            return chunker.count();
        }
    }
}

fn encode(chunk: &OutputChunk) -> Bytes {
    Bytes::from(serde_json::to_vec(chunk).unwrap_or_default())
}

/// Sends queued chunks in order, each batch until the controller takes it.
async fn send(queue: Arc<Queue>, dest: Destination, stop: Stop) -> Result<(), Abandoned> {
    let prefix = format!("{{\"attempt\":{},\"chunks\":[", dest.attempt);
    let mut max = dest.config.max_batch.0 as usize;
    let retry = backoff();
    let mut failures = 0u32;
    loop {
        let batch = queue.peek(max.saturating_sub(prefix.len() + 2)).await;
        if batch.is_empty() {
            if queue.is_done().await {
                return Ok(());
            }
            tokio::select! {
                _ = queue.changed() => {}
                _ = stop.abandoned() => return Err(Abandoned),
            }
            continue;
        }
        let mut body = Vec::with_capacity(max.min(1 << 22));
        body.extend_from_slice(prefix.as_bytes());
        for (i, chunk) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(chunk);
        }
        body.extend_from_slice(b"]}");
        let sent = tokio::select! {
            sent = dest.controller.output(&dest.node_id, Bytes::from(body)) => sent,
            _ = stop.abandoned() => return Err(Abandoned),
        };
        match sent {
            Ok(()) => {
                queue.ack(batch.len()).await;
                failures = 0;
            }
            Err(CallError::Stale(why)) => {
                tracing::warn!(%why, "the controller no longer takes output of this attempt; abandoning it");
                stop.abandon();
                return Err(Abandoned);
            }
            Err(e) if e.status() == Some(413) && batch.len() > 1 => {
                max /= 2;
                tracing::warn!(
                    max,
                    "the controller refused a batch of output as too large; sending smaller ones"
                );
            }
            Err(e) if e.is_transient() => {
                failures += 1;
                let delay = retry.delay(failures);
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %e, failures, ?delay, "sending output failed; keeping it and trying again");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.abandoned() => return Err(Abandoned),
                }
            }
            Err(e) => {
                // Not something time will fix: the attempt cannot end well.
                tracing::error!(error = %e, "the controller refused output; abandoning the attempt");
                stop.abandon();
                return Err(Abandoned);
            }
        }
    }
}

/// Waits between tries of a call to the controller: from 100 ms up to 5 s.
pub fn backoff() -> RetryPolicy {
    RetryPolicy {
        attempts: u32::MAX,
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
    }
}
