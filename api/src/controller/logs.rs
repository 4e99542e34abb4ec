//! Build logs: `GET /builds/{id}/log` and the Server-Sent Events of
//! `GET /builds/{id}/log/stream`.

use serde::{Deserialize, Serialize};

use crate::controller::{BuildSummary, NodeStatus};
use crate::work::Stream;

/// A piece of a node's output. `GET /builds/{id}/log[?node=ID]` answers a
/// JSON array of them, each node's chunks in order (`attempt`, then `seq`),
/// nodes in graph order; with `Accept: text/plain`, the text alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// The node.
    pub node: String,
    /// Its pipeline.
    pub pipeline: String,
    /// Its index in the pipeline.
    pub index: u32,
    /// The attempt that wrote it (a requeued node keeps earlier output).
    pub attempt: i64,
    /// Its number within the attempt.
    pub seq: i64,
    /// Its stream.
    pub stream: Stream,
    /// The text.
    pub data: String,
}

/// A node changed state (SSE event `node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// The node.
    pub node: String,
    /// Its pipeline.
    pub pipeline: String,
    /// Its index in the pipeline.
    pub index: u32,
    /// Its new state.
    pub status: NodeStatus,
    /// Its attempt.
    pub attempt: i64,
    /// Its worker, once it has one.
    pub worker: Option<String>,
    /// Its exit code, once it exited.
    pub exit_code: Option<i32>,
    /// Why it ended so, when there is more to say.
    pub message: Option<String>,
}

/// One Server-Sent Event of `GET /builds/{id}/log/stream[?node=ID]`: the
/// stream replays what exists, then follows, and ends with `end` once the
/// build has ended and all its output was sent. The SSE `event:` field is
/// [`LogEvent::name`]; `data:` is the JSON of the inner value.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// `event: chunk` — output, in order per node and attempt.
    Chunk(LogChunk),
    /// `event: node` — a node's state, first as it is, then on each change.
    Node(NodeEvent),
    /// `event: end` — the build ended; the last event.
    End(BuildSummary),
}

impl LogEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            LogEvent::Chunk(_) => "chunk",
            LogEvent::Node(_) => "node",
            LogEvent::End(_) => "end",
        }
    }

    /// The SSE data: the inner value as JSON.
    pub fn data(&self) -> String {
        let json = match self {
            LogEvent::Chunk(c) => serde_json::to_string(c),
            LogEvent::Node(n) => serde_json::to_string(n),
            LogEvent::End(b) => serde_json::to_string(b),
        };
        json.unwrap_or_default()
    }

    /// Parses an event from its SSE name and data; `None` for names this
    /// version does not know (newer controllers may add some).
    pub fn parse(name: &str, data: &str) -> Option<Result<LogEvent, serde_json::Error>> {
        Some(match name {
            "chunk" => serde_json::from_str(data).map(LogEvent::Chunk),
            "node" => serde_json::from_str(data).map(LogEvent::Node),
            "end" => serde_json::from_str(data).map(LogEvent::End),
            _ => return None,
        })
    }
}
