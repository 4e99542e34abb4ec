//! Running an action's process: in a process group of its own, its output
//! streamed, stopped on cancel or timeout (SIGTERM to the whole group,
//! SIGKILL after a grace period), and nothing it started left behind.
//!
//! Every process of an action carries a marker in its environment
//! ([`MARKER_VAR`]), so that one that left the group (`setsid`, a daemon)
//! is still found, in `/proc`, and stopped with the rest. Each runs under
//! a supervisor (see `supervisor`) that kills what is left of it if the
//! worker-manager dies.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use ick_api::work::Stream;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use super::leftovers::{Guards, Since, end_leftovers};
use super::supervisor::{Supervised, Supervisor};
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
    /// Run it as this uid and gid (with no supplementary groups) rather
    /// than as the worker.
    pub user: Option<(u32, u32)>,
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
            user: None,
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
    /// What starts processes under supervision (none: this program cannot).
    pub supervisor: Option<&'a Supervisor>,
    /// Where supervised processes wait for the action's end.
    pub guards: &'a Guards,
}

/// Runs `proc` to its end, or until it must stop.
pub async fn run(proc: Proc, limits: &Limits<'_>) -> Result<ProcEnd, ActionError> {
    let since = Since::now();
    let (mut child, stdout, stderr) = start(&proc, limits).await?;
    let pgid = child.pgid();
    let captured = proc.capture_stdout;
    let stdout = stdout.map(|pipe| {
        if captured {
            tokio::spawn(capture(pipe))
        } else {
            tokio::spawn(forward(pipe, Stream::Stdout, limits.out.clone()))
        }
    });
    let stderr = stderr.map(|pipe| tokio::spawn(forward(pipe, Stream::Stderr, limits.out.clone())));

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
    // The supervisor stays until the action's end: see `Guards`.
    child.keep(limits.guards);
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

/// One of a process's output pipes.
type Pipe = Box<dyn AsyncRead + Send + Unpin>;

/// A started process: on its own, or under a supervisor.
enum Running {
    Direct(Child),
    Supervised(Supervised),
}

impl Running {
    /// Its process group (its pid).
    fn pgid(&self) -> Option<i32> {
        match self {
            Running::Direct(child) => child.id().map(|id| id as i32),
            Running::Supervised(s) => Some(s.pid),
        }
    }

    /// Its end. Cancel-safe.
    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Running::Direct(child) => child.wait().await,
            Running::Supervised(s) => s.wait().await,
        }
    }

    /// Hands a supervisor to the action's guards.
    fn keep(self, guards: &Guards) {
        if let Running::Supervised(s) = self {
            guards.keep(s);
        }
    }
}

/// Starts `proc`: under a supervisor when this program can run one.
async fn start(
    proc: &Proc,
    limits: &Limits<'_>,
) -> Result<(Running, Option<Pipe>, Option<Pipe>), ActionError> {
    let program = proc.program.to_string_lossy();
    let refused = |not_found: bool, e: &dyn std::fmt::Display| {
        ActionError::new(match not_found {
            true => format!(
                "cannot run {program}: there is no such program (or interpreter) on this worker"
            ),
            false => format!("cannot run {program}: {e}"),
        })
    };
    if let Some(supervisor) = limits.supervisor {
        return match supervisor.run(proc, limits.marker).await {
            Ok((s, out, err)) => Ok((
                Running::Supervised(s),
                Some(Box::new(out)),
                Some(Box::new(err)),
            )),
            Err(e) => Err(refused(e.not_found, &e.message)),
        };
    }
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
    if let Some((uid, gid)) = proc.user {
        // As root, the standard library also drops the supplementary groups.
        command.uid(uid).gid(gid);
    }
    let mut child = command
        .spawn()
        .map_err(|e| refused(e.kind() == std::io::ErrorKind::NotFound, &e))?;
    if let (Some(mut stdin), Some(bytes)) = (child.stdin.take(), proc.stdin.clone()) {
        tokio::spawn(async move {
            // A process that does not read its input is its business.
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let out = child.stdout.take().map(|p| Box::new(p) as Pipe);
    let err = child.stderr.take().map(|p| Box::new(p) as Pipe);
    Ok((Running::Direct(child), out, err))
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
