//! A supervisor per action process, so that nothing of an action outlives
//! a worker-manager that is killed (`kill -9`, a crash, the OOM killer).
//!
//! The worker-manager's own binary, started again with [`SUPERVISE_ARG`],
//! starts the action's process and waits. It is a child subreaper, so a
//! descendant that detaches (`setsid`, a double fork, a daemon) is
//! reparented to it, not to init, and stays findable as its child. Its
//! standard input is one end of a socket pair whose other end the
//! worker-manager holds: when that closes, because the worker-manager is
//! done with the action or because it died, the supervisor kills
//! everything left below it (SIGKILL: no one is left to wait out a grace
//! period) and exits. `PR_SET_PDEATHSIG` alone would not do: it fires when
//! the parent *thread* ends, and reaches only direct children.
//!
//! The supervisor does not carry the action's marker, so the sweeps by
//! marker (see `leftovers`) never take it for a leftover; what it starts
//! does.
//!
//! Messages, one line each, from the supervisor: `started PID` (the
//! process, also its process group), `failed NOTFOUND|OTHER MESSAGE` (it
//! could not be started), `exited CODE` or `signaled SIGNAL` (how it
//! ended). From the worker-manager: the process's environment, as
//! `LENGTH\n` and `NAME=VALUE` entries each ended by a NUL byte; with
//! `--stdin`, `LENGTH\n` and the bytes for the process's standard input;
//! then nothing until it closes. The supervisor itself runs with an empty
//! environment: it runs as the worker, and what an action's `env:` says
//! (`LD_PRELOAD`, …) is for the action, which may run as the sandbox user.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::oneshot;

use super::leftovers::children_of;
use super::process::{MARKER_VAR, Proc};

/// The first argument that makes the worker-manager's binary a supervisor.
pub const SUPERVISE_ARG: &str = "--ick-supervise";

/// What a supervisor answers to `--probe`.
const PROBE_ANSWER: &str = "ick-supervisor 1";

/// How long a supervisor may take to end once released.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// The program that supervises actions: this process's own executable,
/// if it answers as a supervisor (the worker-manager's binary and icktool
/// do; a program that embeds the worker-manager without calling
/// [`run_if_asked`] does not, and its actions run unsupervised).
#[derive(Debug, Clone)]
pub struct SupervisorProgram(PathBuf);

impl SupervisorProgram {
    /// This executable, if it supervises.
    pub async fn find() -> Option<SupervisorProgram> {
        // The running image, even if its file was replaced since.
        let exe = PathBuf::from("/proc/self/exe");
        let probe = tokio::process::Command::new(&exe)
            .args([SUPERVISE_ARG, "--probe"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(Duration::from_secs(10), probe).await {
            Ok(Ok(out))
                if out.status.success() && out.stdout.starts_with(PROBE_ANSWER.as_bytes()) =>
            {
                Some(SupervisorProgram(exe))
            }
            _ => None,
        }
    }
}

/// Why a supervised process did not start.
#[derive(Debug)]
pub struct StartError {
    /// There is no such program.
    pub not_found: bool,
    /// What went wrong.
    pub message: String,
}

/// A process started under a supervisor.
pub struct Supervised {
    /// The supervisor.
    child: tokio::process::Child,
    /// Closing it (or dying) tells the supervisor to kill what is left.
    control: OwnedWriteHalf,
    /// The supervised process; also its process group.
    pub pid: i32,
    /// How the process ended (`None`: the supervisor ended first), until
    /// it is known...
    ended: Option<oneshot::Receiver<Option<ExitStatus>>>,
    /// ...and then.
    status: Option<ExitStatus>,
}

impl Supervised {
    /// Starts `proc` under a supervisor run by `program`; its output goes
    /// to the pipes the returned child holds.
    pub async fn start(
        program: &SupervisorProgram,
        proc: &Proc,
        marker: &str,
    ) -> Result<
        (
            Supervised,
            tokio::process::ChildStdout,
            tokio::process::ChildStderr,
        ),
        StartError,
    > {
        let other = |message: String| StartError {
            not_found: false,
            message,
        };
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| other(format!("cannot make a socket pair: {e}")))?;
        let mut command = tokio::process::Command::new(&program.0);
        command.arg(SUPERVISE_ARG).arg("--marker").arg(marker);
        if let Some((uid, gid)) = proc.user {
            command.arg("--user").arg(format!("{uid}:{gid}"));
        }
        if proc.stdin.is_some() {
            command.arg("--stdin");
        }
        command
            .arg("--")
            .arg(&proc.program)
            .args(&proc.args)
            .current_dir(&proc.cwd)
            .env_clear()
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: signals to the action's group miss it.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| other(format!("cannot start the action's supervisor: {e}")))?;
        // Its end of the socket: held here, the supervisor's death would
        // not close the socket for us.
        drop(command);
        let (stdout, stderr) = match (child.stdout.take(), child.stderr.take()) {
            (Some(out), Some(err)) => (out, err),
            _ => return Err(other("the action's supervisor has no output pipes".into())),
        };
        ours.set_nonblocking(true)
            .map_err(|e| other(format!("cannot use the socket pair: {e}")))?;
        let stream = tokio::net::UnixStream::from_std(ours)
            .map_err(|e| other(format!("cannot use the socket pair: {e}")))?;
        let (read, mut control) = stream.into_split();
        let mut environment = Vec::new();
        for (name, value) in &proc.env {
            environment.extend_from_slice(format!("{name}={value}\0").as_bytes());
        }
        let blocks = [Some(&environment), proc.stdin.as_ref()];
        for block in blocks.into_iter().flatten() {
            // A supervisor that went away says so below.
            let _ = control
                .write_all(format!("{}\n", block.len()).as_bytes())
                .await;
            let _ = control.write_all(block).await;
        }
        let mut lines = tokio::io::BufReader::new(read).lines();
        let first = lines.next_line().await.ok().flatten().unwrap_or_default();
        let pid = match first.split_once(' ') {
            Some(("started", pid)) => pid.parse::<i32>().ok(),
            Some(("failed", why)) => {
                let (kind, message) = why.split_once(' ').unwrap_or((why, ""));
                let _ = child.wait().await;
                return Err(StartError {
                    not_found: kind == "NOTFOUND",
                    message: message.to_string(),
                });
            }
            _ => None,
        };
        let Some(pid) = pid else {
            let status = child.wait().await;
            return Err(other(format!(
                "the action's supervisor ended before it started the action ({status:?})"
            )));
        };
        let (tell, ended) = oneshot::channel();
        // Reads the end (cancel-safe for whoever waits for it).
        tokio::spawn(async move {
            let mut status = None;
            while let Ok(Some(line)) = lines.next_line().await {
                status = match line.split_once(' ') {
                    Some(("exited", code)) => code.parse::<i32>().ok().map(|c| (c & 0xff) << 8),
                    Some(("signaled", signal)) => signal.parse::<i32>().ok(),
                    _ => None,
                }
                .map(ExitStatus::from_raw);
                if status.is_some() {
                    break;
                }
            }
            let _ = tell.send(status);
        });
        Ok((
            Supervised {
                child,
                control,
                pid,
                ended: Some(ended),
                status: None,
            },
            stdout,
            stderr,
        ))
    }

    /// How the supervised process ended. Cancel-safe.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(ended) = &mut self.ended {
            self.status = ended.await.ok().flatten();
            self.ended = None;
        }
        match self.status {
            Some(status) => Ok(status),
            // The supervisor itself was killed: its own end is all we know.
            None => self.child.wait().await,
        }
    }

    /// Tells the supervisor to kill what is left of the process's tree,
    /// and waits for it to end.
    pub async fn release(mut self) {
        let _ = self.control.shutdown().await;
        drop(self.control);
        if tokio::time::timeout(RELEASE_WAIT, self.child.wait())
            .await
            .is_err()
        {
            tracing::error!(
                pid = self.pid,
                "the action's supervisor did not end; killing it"
            );
            let _ = self.child.kill().await;
        }
    }
}

/// Runs the supervisor if this process was started as one; the binaries
/// that embed the worker-manager call this first thing in `main`.
pub fn run_if_asked() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(SUPERVISE_ARG.as_ref()) {
        return None;
    }
    let args: Vec<OsString> = args.collect();
    if args.first().is_some_and(|a| a == "--probe") {
        println!("{PROBE_ANSWER}");
        return Some(ExitCode::SUCCESS);
    }
    Some(match supervise(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ick: the action's supervisor failed: {e}");
            ExitCode::from(125)
        }
    })
}

/// What the supervisor was asked to run.
struct Request {
    marker: OsString,
    user: Option<(u32, u32)>,
    stdin: bool,
    program: OsString,
    args: Vec<OsString>,
}

fn parse(args: Vec<OsString>) -> Result<Request, String> {
    let mut args = args.into_iter();
    let (mut marker, mut user, mut stdin) = (None, None, false);
    loop {
        let arg = args.next().ok_or("no program to run")?;
        match arg.to_str() {
            Some("--marker") => marker = args.next(),
            Some("--user") => {
                let value = args.next().and_then(|v| v.into_string().ok());
                let (uid, gid) = value
                    .as_deref()
                    .and_then(|v| v.split_once(':'))
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
                    .ok_or("--user needs UID:GID")?;
                user = Some((uid, gid));
            }
            Some("--stdin") => stdin = true,
            Some("--") => break,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Request {
        marker: marker.ok_or("no --marker")?,
        user,
        stdin,
        program: args.next().ok_or("no program to run")?,
        args: args.collect(),
    })
}

fn supervise(args: Vec<OsString>) -> Result<(), String> {
    let request = parse(args)?;
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("cannot become a subreaper: {e}"))?;
    let control = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(UnixStream::from)
        .map_err(|e| format!("no control socket: {e}"))?;
    let mut reader = BufReader::new(control.try_clone().map_err(|e| e.to_string())?);
    let mut writer = control;
    let environment = read_block(&mut reader).map_err(|e| format!("the environment: {e}"))?;
    let input = match request.stdin {
        true => Some(read_block(&mut reader).map_err(|e| format!("the input: {e}"))?),
        false => None,
    };
    let mut command = std::process::Command::new(&request.program);
    command
        .args(&request.args)
        .env_clear()
        .envs(
            environment
                .split(|b| *b == 0)
                .filter_map(|entry| {
                    entry
                        .iter()
                        .position(|b| *b == b'=')
                        .map(|i| entry.split_at(i))
                })
                .map(|(name, value)| {
                    (
                        OsString::from_vec(name.to_vec()),
                        OsString::from_vec(value[1..].to_vec()),
                    )
                }),
        )
        .env(MARKER_VAR, &request.marker)
        .stdin(match input {
            Some(_) => Stdio::piped(),
            None => Stdio::null(),
        })
        .process_group(0);
    if let Some((uid, gid)) = request.user {
        // As root, the standard library also drops the supplementary groups.
        command.uid(uid).gid(gid);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => "NOTFOUND",
                _ => "OTHER",
            };
            let _ = writeln!(writer, "failed {kind} {e}");
            return Ok(());
        }
    };
    let pid = child.id() as i32;
    // Signals meant for the worker-manager (a `pkill`, a service manager
    // stopping its group) must not end the supervisor before its
    // processes: it ends when told, or when they have. Blocked once the
    // process has started (it would inherit the mask), in this thread and
    // the ones started below.
    let mut stops = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        stops.add(signal);
    }
    if let Err(e) = stops.thread_block() {
        kill_tree(pid);
        return Err(format!("cannot block signals: {e}"));
    }
    if let Err(e) = writeln!(writer, "started {pid}") {
        // No one to report to: the process must not run unwatched.
        kill_tree(pid);
        return Err(format!("cannot tell the worker-manager: {e}"));
    }
    if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), input) {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    // The output pipes are the action's: held here, they would never
    // close for the worker-manager.
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("cannot open /dev/null: {e}"))?;
    nix::unistd::dup2_stdout(&null).map_err(|e| e.to_string())?;
    nix::unistd::dup2_stderr(&null).map_err(|e| e.to_string())?;
    nix::unistd::dup2_stdin(&null).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        // Nothing more is sent: any read that returns is the end.
        let _ = reader.read(&mut [0u8; 1]);
        kill_tree(pid);
        std::process::exit(0);
    });
    // Reap every child (the process, and whatever was reparented here)
    // until none is left.
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => {
                let _ = writeln!(writer, "exited {code}");
            }
            Ok(WaitStatus::Signaled(p, signal, _)) if p.as_raw() == pid => {
                let _ = writeln!(writer, "signaled {}", signal as i32);
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return Ok(()),
        }
    }
}

/// Reads `LENGTH\n` and that many bytes.
fn read_block(reader: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut length = String::new();
    reader
        .read_line(&mut length)
        .map_err(|e| format!("cannot read its length: {e}"))?;
    let length: usize = length.trim().parse().map_err(|_| "a bad length")?;
    let mut bytes = vec![0; length];
    reader
        .read_exact(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    Ok(bytes)
}

/// Kills every process below this one: the group of the process, then its
/// children (what was reparented here included) until none is left; a
/// killed parent's children come here in turn.
fn kill_tree(group: i32) {
    let me = std::process::id() as i32;
    let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    for _ in 0..1000 {
        let children = children_of(me);
        if children.is_empty() {
            return;
        }
        for pid in children {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_and_bad_ones_refused() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let r = parse(args(&[
            "--marker",
            "w/1",
            "--user",
            "65534:65534",
            "--stdin",
            "--",
            "bash",
            "-c",
            "true",
        ]))
        .expect("parses");
        assert_eq!(r.marker, "w/1");
        assert_eq!(r.user, Some((65534, 65534)));
        assert!(r.stdin);
        assert_eq!(r.program, "bash");
        assert_eq!(r.args, args(&["-c", "true"]));
        assert!(parse(args(&["--marker", "m", "--"])).is_err());
        assert!(parse(args(&["--user", "x", "--", "true"])).is_err());
        assert!(parse(args(&["--", "true"])).is_err(), "a marker is needed");
        assert!(parse(args(&["--what", "--", "true"])).is_err());
    }
}
