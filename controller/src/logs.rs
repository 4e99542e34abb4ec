//! Build logs: read a page at a time, and a Server-Sent Events stream that
//! replays what exists (a page at a time too) and follows the build until
//! it ends.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::Event;
use futures::{Stream, StreamExt};
use ick_api::controller::{LogChunk, LogCursor, LogEvent, NodeEvent, NodeStatus};
use tokio::sync::broadcast::error::RecvError;

use crate::core::Core;
use crate::error::Result;
use crate::hub::ALL_BUILDS;
use crate::store::Store;
use crate::store::builds as bdb;
use crate::store::logs::{self as ldb, Progress};

/// How often a follower looks even if nothing woke it.
const REPOLL: Duration = Duration::from_secs(1);

/// Chunks read from the database at a time, when a whole log is read.
const PAGE: u32 = 1000;

/// `GET /builds/{id}/log?limit=N`: a page of the log (or of one node's),
/// and the cursor of the next page when there may be one.
pub async fn read_page(
    core: &Core,
    build_id: &str,
    node: Option<&str>,
    after: Option<LogCursor>,
    limit: u32,
) -> Result<(Vec<LogChunk>, Option<LogCursor>)> {
    let mut conn = core.store.conn().await?;
    let page = ldb::log_page(&mut conn, build_id, node, after, None, limit).await?;
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(|(c, _)| *c))
        .flatten();
    Ok((page.into_iter().map(|(_, c)| c).collect(), next))
}

/// The whole log (or one node's, or what was stored by `until`), a page
/// at a time, so that no one holds it whole.
pub fn pages(
    store: Store,
    build_id: String,
    node: Option<String>,
    until: Option<i64>,
) -> impl Stream<Item = Result<Vec<LogChunk>>> {
    async_stream::try_stream! {
        let mut after = None;
        loop {
            let page = {
                let mut conn = store.conn().await?;
                ldb::log_page(&mut conn, &build_id, node.as_deref(), after, until, PAGE).await?
            };
            let full = page.len() == PAGE as usize;
            after = page.last().map(|(c, _)| *c);
            if !page.is_empty() {
                yield page.into_iter().map(|(_, c)| c).collect::<Vec<_>>();
            }
            if !full {
                break;
            }
        }
    }
}

/// The log as text, a chunk at a time: each node's attempt under a
/// header line.
#[derive(Default)]
pub struct TextLog {
    current: Option<(String, i64)>,
    ends_line: bool,
    started: bool,
}

impl TextLog {
    /// Appends `c` to `text`, after a header if it starts another
    /// attempt of a node.
    pub fn push(&mut self, c: &LogChunk, text: &mut String) {
        if self.current.as_ref() != Some(&(c.node.clone(), c.attempt)) {
            if self.started && !self.ends_line {
                text.push('\n');
            }
            text.push_str(&format!(
                "==> {} action {} (attempt {})\n",
                c.pipeline,
                c.index + 1,
                c.attempt
            ));
            self.current = Some((c.node.clone(), c.attempt));
        }
        text.push_str(&c.data);
        self.started = true;
        if !c.data.is_empty() {
            self.ends_line = c.data.ends_with('\n');
        }
    }
}

fn event(e: LogEvent) -> Event {
    Event::default().event(e.name()).data(e.data())
}

/// What a follower has sent of one node.
#[derive(Default)]
struct Sent {
    /// Status and attempt last reported.
    reported: Option<(NodeStatus, i64)>,
    /// The next chunk number to send, per attempt.
    next: HashMap<i64, i64>,
}

fn node_state(p: &Progress) -> NodeEvent {
    NodeEvent {
        node: p.id.clone(),
        pipeline: p.pipeline.clone(),
        index: p.index,
        status: p.status,
        attempt: p.attempt,
        worker: p.worker.clone(),
        exit_code: p.exit_code,
        message: p.message.clone(),
    }
}

/// Sends the chunks in `chunks` that continue what was sent, in order;
/// a gap (a chunk still in flight) waits for the next look.
fn continue_chunks(sent: &mut Sent, chunks: Vec<LogChunk>, out: &mut Vec<Event>) {
    for c in chunks {
        let next = sent.next.entry(c.attempt).or_insert(0);
        if c.seq == *next {
            *next += 1;
            out.push(event(LogEvent::Chunk(c)));
        }
    }
}

/// `GET /builds/{id}/log/stream`: the events of a build (or one node);
/// the build must exist.
pub fn follow(
    core: Core,
    build_id: String,
    node: Option<String>,
) -> impl Stream<Item = std::result::Result<Event, Infallible>> {
    async_stream::stream! {
        let mut wake = core.hub.build_receiver();
        let mut sent: HashMap<String, Sent> = HashMap::new();
        {
            let replay = replay(&core, &build_id, node.as_deref(), &mut sent);
            futures::pin_mut!(replay);
            while let Some(events) = replay.next().await {
                match events {
                    Ok(events) => {
                        for e in events {
                            yield Ok(e);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(build_id = %build_id, error = %e, "log stream failed");
                        return;
                    }
                }
            }
        }
        loop {
            let mut out = Vec::new();
            let ended = match look(&core, &build_id, node.as_deref(), &mut sent, &mut out).await {
                Ok(ended) => ended,
                Err(e) => {
                    tracing::warn!(build_id = %build_id, error = %e, "log stream failed");
                    break;
                }
            };
            for e in out {
                yield Ok(e);
            }
            if let Some(end) = ended {
                yield Ok(event(end));
                break;
            }
            // Wait for news of this build, or look again after a while.
            let deadline = tokio::time::sleep(REPOLL);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = core.cancel.cancelled() => return,
                    _ = &mut deadline => break,
                    got = wake.recv() => match got {
                        Ok(id) if *id == *build_id || &*id == ALL_BUILDS => break,
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return,
                    },
                }
            }
            // Take the rest of a burst with this look.
            while wake.try_recv().is_ok() {}
        }
    }
}

/// The replay of what exists: node by node, every attempt's output, read
/// and sent a page at a time, so that a long log is never held whole.
fn replay<'a>(
    core: &'a Core,
    build_id: &'a str,
    node: Option<&'a str>,
    sent: &'a mut HashMap<String, Sent>,
) -> impl Stream<Item = Result<Vec<Event>>> + 'a {
    async_stream::try_stream! {
        let progress = {
            let mut conn = core.store.conn().await?;
            ldb::progress(&mut conn, build_id, node).await?
        };
        for p in &progress {
            let s = sent.entry(p.id.clone()).or_default();
            // A finished node's start first, as a live follower saw it,
            // so that a replay reads like the build did.
            let start = match (p.status.is_finished(), p.worker.is_some()) {
                (true, true) => Some(NodeEvent {
                    status: NodeStatus::Running,
                    exit_code: None,
                    message: None,
                    ..node_state(p)
                }),
                (true, false) => None,
                (false, _) => Some(node_state(p)),
            };
            if let Some(start) = start {
                yield vec![event(LogEvent::Node(start))];
            }
            let mut after = None;
            loop {
                let page = {
                    let mut conn = core.store.conn().await?;
                    ldb::log_page(&mut conn, build_id, Some(&p.id), after, None, PAGE).await?
                };
                let full = page.len() == PAGE as usize;
                after = page.last().map(|(c, _)| *c);
                let mut out = Vec::new();
                continue_chunks(s, page.into_iter().map(|(_, c)| c).collect(), &mut out);
                yield out;
                if !full {
                    break;
                }
            }
            if p.status.is_finished() {
                yield vec![event(LogEvent::Node(node_state(p)))];
            }
            s.reported = Some((p.status, p.attempt));
        }
    }
}

/// One look at the build after the replay: new node states and chunks
/// into `out`; the end event once the build has ended and everything was
/// sent.
async fn look(
    core: &Core,
    build_id: &str,
    node: Option<&str>,
    sent: &mut HashMap<String, Sent>,
    out: &mut Vec<Event>,
) -> Result<Option<LogEvent>> {
    let mut conn = core.store.conn().await?;
    // The build first: if it has ended, everything read after is final.
    let build = bdb::get_build(&mut conn, build_id).await?;
    let progress = ldb::progress(&mut conn, build_id, node).await?;
    for p in &progress {
        let s = sent.entry(p.id.clone()).or_default();
        let changed = s.reported != Some((p.status, p.attempt));
        if changed && !p.status.is_finished() {
            out.push(event(LogEvent::Node(node_state(p))));
        }
        let next = s.next.get(&p.attempt).copied().unwrap_or(0);
        if p.chunks > next && p.attempt > 0 {
            let chunks = ldb::node_log_from(&mut conn, &p.id, p.attempt, next).await?;
            continue_chunks(s, chunks, out);
        }
        if changed && p.status.is_finished() {
            out.push(event(LogEvent::Node(node_state(p))));
        }
        s.reported = Some((p.status, p.attempt));
    }
    let Some(build) = build else {
        return Ok(None);
    };
    let all_sent = progress.iter().all(|p| {
        sent.get(&p.id)
            .is_some_and(|s| s.next.get(&p.attempt).copied().unwrap_or(0) >= p.chunks)
    });
    if build.status.is_finished() && all_sent {
        return Ok(Some(LogEvent::End(build.summary())));
    }
    Ok(None)
}
