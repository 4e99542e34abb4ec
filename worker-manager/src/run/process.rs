//! Running an action's process: in a process group of its own, its output
//! streamed, stopped on cancel or timeout (SIGTERM to the whole group,
//! SIGKILL after a grace period), and nothing it started left behind.
//!
//! Every process of an action carries a marker in its environment
//! ([`MARKER_VAR`]), so that one that left the group (`setsid`, a daemon)
//! is still found, in `/proc`, and stopped with the rest.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use ick_api::work::Stream;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use crate::error::ActionError;
use crate::output::OutputWriter;
use crate::stop::{Stop, StopReason};

/// The environment variable that marks an action's processes.
pub const MARKER_VAR: &str = "ICK_ACTION_RUN";

/// How long the output pipes may stay open after the process group is
/// gone before the processes holding them are looked for.
const PIPES_CLOSE: Duration = Duration::from_millis(100);

/// Size of one read from an action's pipe.
const READ_SIZE: usize = 64 * 1024;

/// A process to start.
#[derive(Debug, Clone)]
pub struct Proc {
    /// The program (a path, or a name looked up in `PATH`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// What its standard input gets (nothing: `/dev/null`).
    pub stdin: Option<Vec<u8>>,
    /// Keep standard output instead of sending it to the log.
    pub capture_stdout: bool,
}

impl Proc {
    /// `program args…` in `cwd` with `env`.
    pub fn new<I, S>(
        program: impl Into<OsString>,
        args: I,
        cwd: PathBuf,
        env: Vec<(String, String)>,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Proc {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            cwd,
            env,
            stdin: None,
            capture_stdout: false,
        }
    }
}

/// How a process ended.
#[derive(Debug)]
pub enum ProcEnd {
    /// It exited (or a signal it did not ask for killed it).
    Exited {
        /// The exit code; 128 + the signal's number if a signal killed it.
        code: i32,
        /// Why, when a signal killed it.
        signal: Option<String>,
        /// Its standard output, when captured.
        stdout: Vec<u8>,
    },
    /// The deadline passed and it was stopped.
    TimedOut,
    /// It was stopped for this reason (`None`: the attempt was abandoned).
    Stopped(Option<StopReason>),
}

/// What a running process is watched by.
pub struct Limits<'a> {
    /// Where its output goes.
    pub out: &'a OutputWriter,
    /// Stops it early.
    pub stop: &'a Stop,
    /// Stops it at this instant.
    pub deadline: Option<Instant>,
    /// From SIGTERM to SIGKILL.
    pub grace: Duration,
    /// The value of [`MARKER_VAR`] for this action.
    pub marker: &'a str,
}

/// Runs `proc` to its end, or until it must stop.
pub async fn run(proc: Proc, limits: &Limits<'_>) -> Result<ProcEnd, ActionError> {
    let mut command = tokio::process::Command::new(&proc.program);
    command
        .args(&proc.args)
        .current_dir(&proc.cwd)
        .env_clear()
        .envs(proc.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(MARKER_VAR, limits.marker)
        .stdin(if proc.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let since = Since::now();
    let mut child = command.spawn().map_err(|e| {
        let program = proc.program.to_string_lossy();
        ActionError::new(match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "cannot run {program}: there is no such program (or interpreter) on this worker"
            ),
            _ => format!("cannot run {program}: {e}"),
        })
    })?;
    let pgid = child.id().map(|id| id as i32);
    if let (Some(mut stdin), Some(bytes)) = (child.stdin.take(), proc.stdin) {
        tokio::spawn(async move {
            // A process that does not read its input is its business.
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let captured = proc.capture_stdout;
    let stdout = child.stdout.take().map(|pipe| {
        if captured {
            tokio::spawn(capture(pipe))
        } else {
            tokio::spawn(forward(pipe, Stream::Stdout, limits.out.clone()))
        }
    });
    let stderr = child
        .stderr
        .take()
        .map(|pipe| tokio::spawn(forward(pipe, Stream::Stderr, limits.out.clone())));

    let deadline = async {
        match limits.deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let (status, interrupted) = tokio::select! {
        status = child.wait() => (Some(status), None),
        _ = deadline => (None, Some(ProcEnd::TimedOut)),
        _ = limits.stop.stopped() => (None, Some(ProcEnd::Stopped(limits.stop.reason()))),
    };
    let status = match status {
        Some(status) => status,
        None => {
            if let Some(pgid) = pgid {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
            }
            match tokio::time::timeout(limits.grace, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    if let Some(pgid) = pgid {
                        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                    }
                    child.wait().await
                }
            }
        }
    };
    // Whatever it started goes with it: what is left of its group, at
    // once; and one that left the group (`setsid`) but still holds the
    // output pipes, at once too. Others that left the group are found at
    // the end of the action (see `end_leftovers`), not to make every
    // process pay for a look through `/proc`.
    let aborts: Vec<AbortHandle> = stdout
        .iter()
        .chain(stderr.iter())
        .map(JoinHandle::abort_handle)
        .collect();
    let readers = async {
        let out = match stdout {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        };
        if let Some(task) = stderr {
            let _ = task.await;
        }
        out
    };
    tokio::pin!(readers);
    let group_left = pgid.is_some_and(|g| killpg(Pid::from_raw(g), None).is_ok());
    let quickly = match group_left {
        true => None,
        false => tokio::time::timeout(PIPES_CLOSE, &mut readers).await.ok(),
    };
    let stdout = match quickly {
        Some(stdout) => stdout,
        None => {
            end_leftovers(pgid, Some(since), limits.marker.to_string(), limits.grace).await;
            match tokio::time::timeout(limits.grace.max(Duration::from_secs(1)), &mut readers).await
            {
                Ok(stdout) => stdout,
                Err(_) => {
                    // Something we could not stop holds a pipe open.
                    aborts.iter().for_each(AbortHandle::abort);
                    Vec::new()
                }
            }
        }
    };
    if let Some(end) = interrupted {
        return Ok(end);
    }
    let status =
        status.map_err(|e| ActionError::new(format!("cannot wait for the action: {e}")))?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ProcEnd::Exited {
            code,
            signal: None,
            stdout,
        },
        (None, Some(signal)) => ProcEnd::Exited {
            code: 128 + signal,
            signal: Some(
                Signal::try_from(signal)
                    .map(|s| format!("killed by signal {signal} ({s})"))
                    .unwrap_or_else(|_| format!("killed by signal {signal}")),
            ),
            stdout,
        },
        (None, None) => ProcEnd::Exited {
            code: -1,
            signal: Some("ended without an exit code".into()),
            stdout,
        },
    })
}

/// Sends a pipe's bytes to the output as they come.
async fn forward(mut pipe: impl AsyncRead + Unpin, stream: Stream, out: OutputWriter) -> Vec<u8> {
    let mut buffer = vec![0u8; READ_SIZE];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return Vec::new(),
            Ok(n) => {
                out.write(stream, Bytes::copy_from_slice(&buffer[..n]))
                    .await
            }
        }
    }
}

/// Keeps a pipe's bytes.
async fn capture(mut pipe: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = pipe.read_to_end(&mut all).await;
    all
}

/// Stops every process left of an action: its process group and whatever
/// carries its marker, started after `since`. SIGTERM first, SIGKILL
/// after `grace`.
pub async fn end_leftovers(
    pgid: Option<i32>,
    since: Option<Since>,
    marker: String,
    grace: Duration,
) {
    let entry = format!("{MARKER_VAR}={marker}").into_bytes();
    let find = move || {
        let entry = entry.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                find_processes(pgid, since, |env| env == entry.as_slice())
            })
            .await
            .unwrap_or_default()
        }
    };
    end_processes(pgid, find, grace).await;
}

/// Stops processes left by an earlier run of this worker (it was killed
/// before it could): those whose marker starts with `prefix`.
pub async fn end_orphans(prefix: String, grace: Duration) -> usize {
    let entry = format!("{MARKER_VAR}={prefix}").into_bytes();
    let found = {
        let entry = entry.clone();
        tokio::task::spawn_blocking(move || {
            find_processes(None, None, |env| env.starts_with(&entry))
        })
        .await
        .unwrap_or_default()
    };
    if found.is_empty() {
        return 0;
    }
    let find = move || {
        let entry = entry.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                find_processes(None, None, |env| env.starts_with(&entry))
            })
            .await
            .unwrap_or_default()
        }
    };
    end_processes(None, find, grace).await;
    found.len()
}

async fn end_processes<F, Fut>(pgid: Option<i32>, find: F, grace: Duration)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<i32>>,
{
    let mut left = find().await;
    if left.is_empty() {
        return;
    }
    signal_all(pgid, &left, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = find().await;
        if left.is_empty() {
            return;
        }
    }
    tracing::warn!(
        processes = left.len(),
        "processes of the action ignored SIGTERM; killing them"
    );
    // Kill until none is left: one may fork while we look.
    for _ in 0..20 {
        signal_all(pgid, &left, Signal::SIGKILL);
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = find().await;
        if left.is_empty() {
            return;
        }
    }
    tracing::error!(pids = ?left, "processes of the action survived SIGKILL");
}

fn signal_all(pgid: Option<i32>, pids: &[i32], signal: Signal) {
    if let Some(pgid) = pgid {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), signal);
    }
}

/// A moment, as `/proc` tells what started after it: in clock ticks since
/// boot (start times are counted in ticks of 1/100 s for user space), and
/// the last process id given out (ids grow until they wrap around), so
/// that looking for an action's processes need not read every process's.
/// Reads `/proc/uptime` and `/proc/loadavg`, which do no I/O.
#[derive(Debug, Clone, Copy)]
pub struct Since {
    ticks: Option<u64>,
    last_pid: Option<i32>,
}

impl Since {
    /// Now.
    pub fn now() -> Since {
        Since {
            ticks: boot_ticks().map(|t| t.saturating_sub(1)),
            last_pid: last_pid(),
        }
    }
}

fn boot_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((seconds * 100.0) as u64)
}

/// The process id given out last (in this pid namespace).
fn last_pid() -> Option<i32> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().nth(4)?.parse().ok()
}

/// Live (not zombie) processes started after `since` (any, if `None`)
/// that are in process group `pgid` or have an environment entry that
/// `matches`. Blocking: it reads `/proc`.
pub fn find_processes(
    pgid: Option<i32>,
    since: Option<Since>,
    matches: impl Fn(&[u8]) -> bool,
) -> Vec<i32> {
    let me = std::process::id() as i32;
    // Without a wrap-around since, new processes have higher ids.
    let first_new = match since.and_then(|s| s.last_pid) {
        Some(then) if last_pid().is_some_and(|now| now >= then) => then + 1,
        _ => 0,
    };
    let since_ticks = since.and_then(|s| s.ticks);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me || pid < first_new {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let (Some(state), Some(ppid), Some(pgrp)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if state == "Z" || state == "X" || pid == 2 || ppid == "2" {
            continue; // dead, or a kernel thread
        }
        // starttime is the 22nd field; `fields` started at the 3rd and has
        // given three: skip to the 22nd.
        let started = fields.nth(16).and_then(|t| t.parse::<u64>().ok());
        if let (Some(since), Some(started)) = (since_ticks, started)
            && started < since
        {
            continue;
        }
        if pgid.is_some() && pgrp.parse::<i32>().ok() == pgid {
            found.push(pid);
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(&matches) {
            found.push(pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn processes_are_found_by_group_and_by_marker_but_only_if_young() {
        let before = Since::now();
        let marker = format!("test/{}", uuid::Uuid::new_v4());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(MARKER_VAR, &marker)
            .process_group(0)
            .spawn()
            .expect("sleep starts");
        let pid = child.id() as i32;
        let entry = format!("{MARKER_VAR}={marker}").into_bytes();
        let by_marker = find_processes(None, Some(before), |e| e == entry.as_slice());
        assert_eq!(by_marker, vec![pid]);
        let by_group = find_processes(Some(pid), Some(before), |_| false);
        assert_eq!(by_group, vec![pid]);
        let everything = find_processes(None, None, |e| e == entry.as_slice());
        assert_eq!(everything, vec![pid]);
        let after = Since::now();
        assert!(find_processes(Some(pid), Some(after), |e| e == entry.as_slice()).is_empty());
        let _ = child.kill();
        let _ = child.wait();
        assert!(find_processes(None, None, |e| e == entry.as_slice()).is_empty());
    }
}
