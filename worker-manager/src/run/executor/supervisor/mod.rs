//! A supervisor for action processes, so that nothing of an action
//! outlives a worker-manager that is killed (`kill -9`, a crash, the OOM
//! killer).
//!
//! The worker-manager's own binary, started once with [`SUPERVISE_ARG`],
//! starts every action process the worker-manager asks it to (see
//! `serve`). It is a child subreaper, so a descendant that detaches
//! (`setsid`, a double fork, a daemon) is reparented to it, not to init,
//! and stays findable as its child. Its standard input is a socket whose
//! other end the worker-manager holds: when that closes, because the
//! worker-manager died, the supervisor kills everything below it
//! (SIGKILL: no one is left to wait out a grace period) and exits. At an
//! action's end, releasing a process kills what is left of its tree.
//! `PR_SET_PDEATHSIG` alone would not do: it fires when the parent
//! *thread* ends, and reaches only direct children.
//!
//! One supervisor serves all of a worker-manager's actions: starting one
//! per process would cost an `exec` of this large binary per action
//! process. The output pipes are made here and passed to it
//! (`SCM_RIGHTS`), so output goes from the action straight to the
//! worker-manager.
//!
//! The supervisor runs with an empty environment: it runs as the worker,
//! and what an action's `env:` says (`LD_PRELOAD`, …) is for the action,
//! which may run as the sandbox user. It does not carry an action's
//! marker, so the sweeps by marker (see `leftovers`) never take it for a
//! leftover; what it starts does.

mod serve;
mod wire;

use std::collections::HashMap;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketFlags, SocketType,
};
use rustix::pipe::PipeFlags;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::process::Proc;
use wire::{FromSupervisor, Request, ToSupervisor};

/// The first argument that makes the worker-manager's binary a supervisor.
pub const SUPERVISE_ARG: &str = "--ick-supervise";

/// How long a supervisor may take to greet, or to release a process.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Runs the supervisor if this process was started as one; the binaries
/// that embed the worker-manager call this first thing in `main`.
pub fn run_if_asked() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(SUPERVISE_ARG.as_ref()) {
        return None;
    }
    Some(match serve::serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ick: the actions' supervisor failed: {e}");
            ExitCode::from(125)
        }
    })
}

/// Why a supervised process did not start.
#[derive(Debug)]
pub struct StartError {
    /// There is no such program.
    pub not_found: bool,
    /// What went wrong.
    pub message: String,
}

impl StartError {
    fn other(message: impl Into<String>) -> StartError {
        StartError {
            not_found: false,
            message: message.into(),
        }
    }
}

/// The supervisor of this worker-manager's actions; started again if it
/// went away.
pub struct Supervisor {
    program: PathBuf,
    link: tokio::sync::Mutex<Arc<Link>>,
}

impl Supervisor {
    /// Starts the supervisor: this process's own executable, if it
    /// answers as one (the worker-manager's binary and icktool do; a
    /// program that embeds the worker-manager without calling
    /// [`run_if_asked`] does not, and its actions run unsupervised).
    pub async fn start() -> Option<Arc<Supervisor>> {
        // The running image, even if its file was replaced since.
        let program = PathBuf::from("/proc/self/exe");
        match Link::start(&program).await {
            Ok(link) => Some(Arc::new(Supervisor {
                program,
                link: tokio::sync::Mutex::new(link),
            })),
            Err(e) => {
                tracing::debug!(error = %e, "this program does not supervise actions");
                None
            }
        }
    }

    /// Starts `proc` under the supervisor; its output comes through the
    /// returned pipes.
    pub async fn run(
        &self,
        proc: &Proc,
        marker: &str,
    ) -> Result<(Supervised, pipe::Receiver, pipe::Receiver), StartError> {
        let link = {
            let mut link = self.link.lock().await;
            if link.is_gone() {
                tracing::error!("the actions' supervisor went away; starting another");
                *link = Link::start(&self.program)
                    .await
                    .map_err(|e| StartError::other(format!("cannot start a supervisor: {e}")))?;
            }
            link.clone()
        };
        link.run(proc, marker).await
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // The worker-manager is done: the supervisor kills what is left
        // and ends.
        self.link.get_mut().close();
    }
}

/// What a process's requester waits for.
#[derive(Default)]
struct Waiting {
    started: Option<oneshot::Sender<Result<i32, StartError>>>,
    ended: Option<oneshot::Sender<ExitStatus>>,
    released: Option<oneshot::Sender<()>>,
}

/// One supervisor process and the socket to it.
struct Link {
    /// Blocking: a thread of its own reads it (see [`listen`]); sends do
    /// not wait (see [`Link::send`]).
    socket: OwnedFd,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiting>>,
    /// `None` once the supervisor is gone.
    child: Mutex<Option<tokio::process::Child>>,
}

impl Link {
    async fn start(program: &PathBuf) -> std::io::Result<Arc<Link>> {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        let child = tokio::process::Command::new(program)
            .arg(SUPERVISE_ARG)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own group: signals to an action's group, or to the
            // worker-manager's, miss it.
            .process_group(0)
            // Not killed when dropped: it must outlive us to kill what
            // it started. Our end of the socket closing ends it.
            .spawn()?;
        let link = Arc::new(Link {
            socket: ours,
            next_id: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            child: Mutex::new(Some(child)),
        });
        let (hello, greeted) = oneshot::channel();
        {
            let link = link.clone();
            std::thread::spawn(move || listen(&link, hello));
        }
        match tokio::time::timeout(ANSWER_WAIT, greeted).await {
            Ok(Ok(())) => Ok(link),
            _ => {
                link.gone();
                link.close();
                Err(std::io::Error::other(
                    "the program did not answer as a supervisor",
                ))
            }
        }
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_gone(&self) -> bool {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// The supervisor is gone, or is not one: whoever waits hears so.
    fn gone(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.start_kill();
        }
        self.waiting().clear();
    }

    /// Closes the socket both ways: the supervisor kills what is left
    /// and ends, and [`listen`] ends.
    fn close(&self) {
        let _ = rustix::net::shutdown(&self.socket, rustix::net::Shutdown::Both);
    }

    /// Sends `message` with `fds` attached. Messages are short and the
    /// supervisor reads them at once: the socket is full only if it is
    /// stuck, and then this waits for it a millisecond at a time.
    async fn send(&self, message: &ToSupervisor, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        let text = message.encode();
        loop {
            match send_now(self.socket.as_fd(), &text, fds) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(Duration::from_millis(1)).await
                }
                other => return other,
            }
        }
    }

    async fn run(
        self: &Arc<Self>,
        proc: &Proc,
        marker: &str,
    ) -> Result<(Supervised, pipe::Receiver, pipe::Receiver), StartError> {
        let pipes = |what: &str| {
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
                .map_err(|e| StartError::other(format!("cannot make a pipe for {what}: {e}")))
        };
        let (request_read, request_write) = pipes("the request")?;
        let (out_read, out_write) = pipes("standard output")?;
        let (err_read, err_write) = pipes("standard error")?;
        let input = match &proc.stdin {
            Some(bytes) => Some((pipes("standard input")?, bytes.clone())),
            None => None,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tell_started, started) = oneshot::channel();
        let (tell_ended, ended) = oneshot::channel();
        self.waiting().insert(
            id,
            Waiting {
                started: Some(tell_started),
                ended: Some(tell_ended),
                released: None,
            },
        );
        let mut fds = vec![request_read.as_fd(), out_write.as_fd(), err_write.as_fd()];
        if let Some(((read, _), _)) = &input {
            fds.push(read.as_fd());
        }
        let sent = self.send(&ToSupervisor::Run { id }, &fds).await;
        drop(fds);
        if let Err(e) = sent {
            self.waiting().remove(&id);
            return Err(StartError::other(format!(
                "cannot reach the actions' supervisor: {e}"
            )));
        }
        // Theirs now; held here, the pipes would never end for us.
        drop((request_read, out_write, err_write));
        let request = Request {
            marker: marker.into(),
            user: proc.user,
            cwd: proc.cwd.clone(),
            program: proc.program.clone(),
            args: proc.args.clone(),
            env: proc.env.iter().map(|(k, v)| (k.into(), v.into())).collect(),
        };
        let receiver = |fd: OwnedFd| {
            pipe::Receiver::from_owned_fd(fd)
                .map_err(|e| StartError::other(format!("cannot read a pipe: {e}")))
        };
        let (stdout, stderr) = (receiver(out_read)?, receiver(err_read)?);
        let writer = |fd: OwnedFd| {
            pipe::Sender::from_owned_fd(fd)
                .map_err(|e| StartError::other(format!("cannot write a pipe: {e}")))
        };
        let mut request_pipe = writer(request_write)?;
        let body = request.encode();
        // A supervisor that went away says so below.
        let _ = request_pipe.write_all(&body).await;
        drop(request_pipe);
        let pid = match started.await {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => {
                self.waiting().remove(&id);
                return Err(e);
            }
            Err(_) => {
                return Err(StartError::other(
                    "the actions' supervisor went away before it started the process",
                ));
            }
        };
        if let Some(((read, write), bytes)) = input {
            drop(read);
            let mut pipe = writer(write)?;
            tokio::spawn(async move {
                // A process that does not read its input is its business.
                let _ = pipe.write_all(&bytes).await;
            });
        }
        Ok((
            Supervised {
                link: self.clone(),
                id,
                pid,
                ended: Some(ended),
                status: None,
                released: false,
            },
            stdout,
            stderr,
        ))
    }
}

/// Sends `text` with `fds` attached, without waiting.
fn send_now(socket: BorrowedFd<'_>, text: &str, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(wire::MAX_FDS))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !ancillary.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other(
            "too many descriptors for one message",
        ));
    }
    rustix::net::sendmsg(
        socket,
        &[IoSlice::new(text.as_bytes())],
        &mut ancillary,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    )?;
    Ok(())
}

/// Hands the supervisor's messages to whoever waits for them, until it
/// goes or the socket is closed. Runs in a thread of its own.
fn listen(link: &Link, hello: oneshot::Sender<()>) {
    let mut hello = Some(hello);
    loop {
        let mut bytes = [0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut ancillary = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            &link.socket,
            &mut [std::io::IoSliceMut::new(&mut bytes)],
            &mut ancillary,
            RecvFlags::CMSG_CLOEXEC,
        );
        let text = match received {
            Ok(r) if r.bytes > 0 => String::from_utf8_lossy(&bytes[..r.bytes]).into_owned(),
            Err(rustix::io::Errno::INTR) => continue,
            _ => {
                link.gone();
                return;
            }
        };
        let Some(message) = FromSupervisor::decode(&text) else {
            tracing::warn!(%text, "a message from the supervisor not understood");
            continue;
        };
        let mut waiting = link.waiting();
        match message {
            FromSupervisor::Hello => {
                if let Some(hello) = hello.take() {
                    let _ = hello.send(());
                }
            }
            FromSupervisor::Started { id, pid } => {
                if let Some(tell) = waiting.get_mut(&id).and_then(|w| w.started.take()) {
                    let _ = tell.send(Ok(pid));
                }
            }
            FromSupervisor::Failed {
                id,
                not_found,
                message,
            } => {
                if let Some(tell) = waiting.remove(&id).and_then(|w| w.started) {
                    let _ = tell.send(Err(StartError { not_found, message }));
                }
            }
            FromSupervisor::Ended { id, status } => {
                if let Some(tell) = waiting.get_mut(&id).and_then(|w| w.ended.take()) {
                    let _ = tell.send(ExitStatus::from_raw(status));
                }
            }
            FromSupervisor::Released { id } => {
                if let Some(tell) = waiting.remove(&id).and_then(|w| w.released) {
                    let _ = tell.send(());
                }
            }
        }
    }
}

/// A process started under the supervisor.
pub struct Supervised {
    link: Arc<Link>,
    id: u64,
    /// The process; also its process group.
    pub pid: i32,
    /// How the process ended, until it is known...
    ended: Option<oneshot::Receiver<ExitStatus>>,
    /// ...and then.
    status: Option<ExitStatus>,
    released: bool,
}

impl Supervised {
    /// How the process ended. Cancel-safe.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(ended) = &mut self.ended {
            let status = ended.await;
            self.ended = None;
            self.status = status.ok();
        }
        self.status.ok_or_else(|| {
            std::io::Error::other("the actions' supervisor went away before the process ended")
        })
    }

    /// Has the supervisor kill what is left of the process's tree, and
    /// waits until it has.
    pub async fn release(mut self) {
        self.released = true;
        let (tell, released) = oneshot::channel();
        match self.link.waiting().get_mut(&self.id) {
            Some(waiting) => waiting.released = Some(tell),
            None => return,
        }
        let id = self.id;
        if self
            .link
            .send(&ToSupervisor::Release { id }, &[])
            .await
            .is_err()
        {
            return;
        }
        if tokio::time::timeout(ANSWER_WAIT, released).await.is_err() {
            tracing::error!(
                pid = self.pid,
                "the actions' supervisor did not release a process in time"
            );
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if !self.released {
            // Dropped without `release` (its action was abandoned): the
            // supervisor still kills what is left.
            self.link.waiting().remove(&self.id);
            let message = ToSupervisor::Release { id: self.id }.encode();
            let _ = send_now(self.link.socket.as_fd(), &message, &[]);
        }
    }
}
