//! Build logs: `GET /builds/{id}/log` and the Server-Sent Events of
//! `GET /builds/{id}/log/stream`.

use serde::{Deserialize, Serialize};

use crate::controller::{BuildSummary, NodeStatus};
use crate::work::Stream;

/// `GET /builds/{id}/log` query: `?node=ID&after=CURSOR&limit=N`.
///
/// Without `limit`, the whole log (streamed, never held whole by the
/// controller). With it, at most `limit` chunks (1 to [`MAX_LOG_PAGE`])
/// after `after`, and when there may be more, a `Link: <…>; rel="next"`
/// header whose URL reads the next page; [`NEXT_PAGE_HEADER`] carries its
/// cursor alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Only this node's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The cursor of the last chunk read ([`LogCursor`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// The largest page of a log read.
pub const MAX_LOG_PAGE: u32 = 10_000;

/// The header that carries the cursor of the next page of a log read.
pub const NEXT_PAGE_HEADER: &str = "ick-next-after";

/// Where a chunk is in a log's order: its node's position in the graph,
/// its attempt, its number. Written `POSITION.ATTEMPT.SEQ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogCursor {
    /// The node's position in the build's graph.
    pub position: i64,
    /// The attempt.
    pub attempt: i64,
    /// The chunk's number in the attempt.
    pub seq: i64,
}

impl std::fmt::Display for LogCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.position, self.attempt, self.seq)
    }
}

impl std::str::FromStr for LogCursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("{s:?} is not a log cursor (POSITION.ATTEMPT.SEQ, as the last page gave)");
        let mut parts = s
            .split('.')
            .map(|p| p.parse::<i64>().ok().filter(|n| *n >= 0));
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Some(position)), Some(Some(attempt)), Some(Some(seq)), None) => Ok(LogCursor {
                position,
                attempt,
                seq,
            }),
            _ => Err(bad()),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c: LogCursor = "3.2.17".parse().expect("parses");
        assert_eq!(
            c,
            LogCursor {
                position: 3,
                attempt: 2,
                seq: 17
            }
        );
        assert_eq!(c.to_string(), "3.2.17");
        for bad in ["", "3", "3.2", "3.2.1.0", "a.b.c", "-1.0.0", "3..1"] {
            assert!(bad.parse::<LogCursor>().is_err(), "{bad:?}");
        }
    }
}
