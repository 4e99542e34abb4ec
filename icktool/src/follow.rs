//! Following a build live: the controller's Server-Sent Events, printed as
//! they come. Output goes to stdout; what happens to each action goes to
//! stderr, so that `icktool log --follow BUILD > out.txt` keeps the output
//! alone. A broken stream is opened again, and what was already printed is
//! not printed twice.
//!
//! With `--output json` (or `yaml`) stdout gets the events instead, one
//! JSON object a line (`{"event": "chunk", "data": {…}}`; YAML: one
//! document each), the last one `end`; stderr then says only what went
//! wrong.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use ick_api::controller::{BuildStatus, BuildSummary, BuildView, LogChunk, LogEvent, NodeEvent};
use reqwest::{Method, StatusCode};

use serde::Serialize;

use crate::Exit;
use crate::connection::{Ick, Refused, Service, chain};
use crate::output::{Format, Out, duration, without_status};

/// The controller sends a keep-alive every 15 s; a stream silent for this
/// long is dead.
const IDLE: Duration = Duration::from_secs(60);
/// Tries in a row, without any event, before giving up.
const ATTEMPTS: u32 = 8;
/// How often a follower with nothing running asks why the build waits.
const WAIT_CHECK: Duration = Duration::from_secs(3);

/// Splits a byte stream into SSE events: `(event name, data)`.
#[derive(Default)]
pub struct SseParser {
    buffer: Vec<u8>,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete event, skipping comments (keep-alives).
    pub fn next_event(&mut self) -> Option<(String, String)> {
        loop {
            let text_end = self.buffer.windows(2).position(|w| w == b"\n\n")?;
            let block: Vec<u8> = self.buffer.drain(..text_end + 2).collect();
            let text = String::from_utf8_lossy(&block);
            let mut name = "message".to_string();
            let mut data = Vec::new();
            for line in text.lines() {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                }
            }
            if !data.is_empty() {
                return Some((name, data.join("\n")));
            }
        }
    }
}

/// What has been printed, so that a reopened stream (which replays from
/// the start) prints only what is new.
struct Printer {
    /// `pipeline/N` of each node, and its description.
    labels: HashMap<String, (String, String)>,
    prefix: bool,
    printed: HashMap<(String, i64), i64>,
    states: HashMap<String, NodeEvent>,
    partial: HashMap<String, String>,
    /// Why the build waits, as last said.
    waiting: Option<String>,
    /// Text for people, or events for scripts.
    format: Format,
}

/// One event for scripts: a line of `--output json`.
#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    event: &'a str,
    data: &'a T,
}

/// Prints one event for scripts (JSON line or YAML document).
pub fn emit<T: Serialize>(format: Format, event: &str, data: &T) {
    let event = Event { event, data };
    let text = match format {
        Format::Yaml => serde_yaml::to_string(&event)
            .ok()
            .map(|t| format!("---\n{t}")),
        _ => serde_json::to_string(&event).ok().map(|t| format!("{t}\n")),
    };
    if let Some(text) = text {
        let _ = crate::output::write_stdout(&text);
    }
}

impl Printer {
    fn new(view: &BuildView, node: Option<&str>, format: Format) -> Printer {
        let mut pipelines: Vec<&str> = view.nodes.iter().map(|n| n.pipeline.as_str()).collect();
        pipelines.dedup();
        let labels = view
            .nodes
            .iter()
            .map(|n| {
                let label = format!("{}/{}", n.pipeline, n.index + 1);
                (n.id.clone(), (label, n.description.clone()))
            })
            .collect();
        Printer {
            labels,
            prefix: node.is_none() && pipelines.len() > 1,
            printed: HashMap::new(),
            states: HashMap::new(),
            partial: HashMap::new(),
            waiting: None,
            format,
        }
    }

    fn human(&self) -> bool {
        self.format == Format::Table
    }

    /// Whether an action it follows runs (then there is nothing to ask).
    fn running(&self) -> bool {
        use ick_api::controller::NodeStatus as S;
        self.states.values().any(|n| n.status == S::Running)
    }

    /// Says why the build (or the followed node) waits, when the reason
    /// is new: a build no worker can take must not look like a hung
    /// follower.
    fn waiting(&mut self, view: &BuildView, node: Option<&str>) {
        let reason = match node {
            Some(node) => view
                .nodes
                .iter()
                .find(|n| n.id == node)
                .and_then(|n| n.waiting_for.clone()),
            None => view.waiting_for.clone(),
        };
        if let Some(reason) = reason
            && self.waiting.as_ref() != Some(&reason)
        {
            if self.human() {
                let _ = std::io::stdout().flush();
                eprintln!("(waiting: {reason})");
            } else {
                emit(
                    self.format,
                    "waiting",
                    &serde_json::json!({ "reason": reason }),
                );
            }
            self.waiting = Some(reason);
        }
    }

    fn label(&self, node: &str) -> String {
        self.labels
            .get(node)
            .map_or_else(|| node.to_string(), |(l, _)| l.clone())
    }

    fn chunk(&mut self, chunk: LogChunk) {
        let key = (chunk.node.clone(), chunk.attempt);
        if self
            .printed
            .get(&key)
            .is_some_and(|last| chunk.seq <= *last)
        {
            return;
        }
        self.printed.insert(key, chunk.seq);
        if !self.human() {
            emit(self.format, "chunk", &chunk);
            return;
        }
        let mut stdout = std::io::stdout().lock();
        if !self.prefix {
            let _ = stdout.write_all(chunk.data.as_bytes());
            let _ = stdout.flush();
            return;
        }
        let label = format!("[{}] ", chunk.pipeline);
        let partial = self.partial.entry(chunk.node.clone()).or_default();
        partial.push_str(&chunk.data);
        while let Some(end) = partial.find('\n') {
            let line: String = partial.drain(..=end).collect();
            let _ = write!(stdout, "{label}{line}");
        }
        let _ = stdout.flush();
    }

    fn flush_node(&mut self, node: &str, pipeline: &str) {
        if let Some(rest) = self.partial.remove(node)
            && !rest.is_empty()
        {
            let _ = writeln!(std::io::stdout().lock(), "[{pipeline}] {rest}");
        }
    }

    fn node(&mut self, event: NodeEvent) {
        let changed = self
            .states
            .get(&event.node)
            .is_none_or(|old| old.status != event.status || old.attempt != event.attempt);
        if !changed {
            return;
        }
        if !self.human() {
            emit(self.format, "node", &event);
            self.states.insert(event.node.clone(), event);
            return;
        }
        let label = self.label(&event.node);
        let description = self
            .labels
            .get(&event.node)
            .map(|(_, d)| d.clone())
            .unwrap_or_default();
        use ick_api::controller::NodeStatus as S;
        let line = match event.status {
            S::Queued => None,
            S::Running => Some(format!(
                "--> {label} {description}{}{}",
                event
                    .worker
                    .as_deref()
                    .map(|w| format!(" (on {w})"))
                    .unwrap_or_default(),
                if event.attempt > 1 {
                    format!(" [attempt {}]", event.attempt)
                } else {
                    String::new()
                }
            )),
            status => {
                self.flush_node(&event.node, &event.pipeline);
                let mut line = format!("<-- {label} {status}");
                if let Some(code) = event.exit_code
                    && status != S::Succeeded
                {
                    line.push_str(&format!(" (exit code {code})"));
                }
                // Messages may begin with the status ("skipped: …"):
                // not twice.
                if let Some(message) = &event.message {
                    line.push_str(&format!(": {}", without_status(status.as_str(), message)));
                }
                Some(line)
            }
        };
        if let Some(line) = line {
            let _ = std::io::stdout().flush();
            eprintln!("{line}");
        }
        self.states.insert(event.node.clone(), event);
    }
}

/// Follows build `id` (or one node of it) until it ends, printing for
/// people; answers how it ended.
pub async fn follow(ick: &Ick, id: &str, node: Option<&str>) -> anyhow::Result<BuildSummary> {
    follow_as(ick, id, node, &Out::new(Format::Table)).await
}

/// The same, printing as `out` says: text, or events for scripts (the
/// last one `end`, with the summary).
pub async fn follow_as(
    ick: &Ick,
    id: &str,
    node: Option<&str>,
    out: &Out,
) -> anyhow::Result<BuildSummary> {
    let view: BuildView = ick
        .get(Service::Controller, &format!("/builds/{id}"))
        .await?;
    let mut printer = Printer::new(&view, node, out.format);
    let path = format!("/builds/{id}/log/stream");
    let mut failures = 0;
    loop {
        let opened = ick
            .send(Service::Controller, Method::GET, &path, &[], |r| {
                let r = r.header("accept", "text/event-stream");
                match node {
                    Some(node) => r.query(&[("node", node)]),
                    None => r,
                }
            })
            .await;
        let response = match opened {
            Ok(response) => response,
            Err(e) => {
                let permanent = e.downcast_ref::<Refused>().is_some_and(|r| {
                    r.problem.status_code().is_client_error()
                        && r.problem.status_code() != StatusCode::TOO_MANY_REQUESTS
                });
                failures += 1;
                if permanent || failures >= ATTEMPTS {
                    return Err(e);
                }
                backoff(failures, &format!("{e:#}")).await;
                continue;
            }
        };
        let mut stream = response.bytes_stream();
        let mut parser = SseParser::default();
        let mut idle = tokio::time::Instant::now() + IDLE;
        let mut check =
            tokio::time::interval_at(tokio::time::Instant::now() + WAIT_CHECK, WAIT_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = tokio::time::sleep_until(idle) => break format!("nothing heard for {}s", IDLE.as_secs()),
                _ = check.tick(), if !printer.running() => {
                    if let Ok(view) = ick.get::<BuildView>(Service::Controller, &format!("/builds/{id}")).await {
                        printer.waiting(&view, node);
                    }
                    continue;
                }
            };
            let next = match next {
                None => break "the stream ended early".to_string(),
                Some(Err(e)) => break chain(&e),
                Some(Ok(bytes)) => bytes,
            };
            idle = tokio::time::Instant::now() + IDLE;
            parser.push(&next);
            while let Some((name, data)) = parser.next_event() {
                failures = 0;
                match LogEvent::parse(&name, &data) {
                    Some(Ok(LogEvent::Chunk(chunk))) => printer.chunk(chunk),
                    Some(Ok(LogEvent::Node(event))) => printer.node(event),
                    Some(Ok(LogEvent::End(summary))) => {
                        if !printer.human() {
                            emit(printer.format, "end", &summary);
                        }
                        let _ = std::io::stdout().flush();
                        return Ok(summary);
                    }
                    Some(Err(e)) => anyhow::bail!("the controller sent a bad {name} event: {e}"),
                    None => {}
                }
            }
        };
        failures += 1;
        if failures >= ATTEMPTS {
            anyhow::bail!("lost the build's log stream: {why}");
        }
        backoff(failures, &why).await;
    }
}

async fn backoff(failures: u32, why: &str) {
    let delay = Duration::from_millis(250 * (1 << failures.min(5)));
    eprintln!("(the log stream broke: {why}; reconnecting)");
    tokio::time::sleep(delay).await;
}

/// A sentence saying how a build ended, and the exit it means.
pub fn ended(build: &BuildSummary) -> (String, Exit) {
    let took = match (build.started_at, build.ended_at) {
        (Some(start), Some(end)) => format!(" in {}", duration((end - start).num_seconds())),
        _ => String::new(),
    };
    let text = format!(
        "build {} #{} {}{took}",
        build.project, build.number, build.status
    );
    let exit = match build.status {
        BuildStatus::Succeeded => Exit::Ok,
        _ => Exit::BuildFailed,
    };
    (text, exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_and_keep_alives_skipped() {
        let mut p = SseParser::default();
        p.push(b": keep-alive\n\nevent: chunk\ndata: {\"a\":");
        assert_eq!(p.next_event(), None);
        p.push(b"1}\n\nevent: end\ndata: x\ndata: y\n\n");
        assert_eq!(p.next_event(), Some(("chunk".into(), "{\"a\":1}".into())));
        assert_eq!(p.next_event(), Some(("end".into(), "x\ny".into())));
        assert_eq!(p.next_event(), None);
    }
}
