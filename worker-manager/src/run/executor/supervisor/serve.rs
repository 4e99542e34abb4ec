//! The supervisor's side: one process per worker-manager, started once,
//! that starts every action process it is asked to and is the parent (a
//! child subreaper) of all of them and of whatever they leave behind.
//!
//! Three kinds of work, in threads of their own so that none waits for
//! another: the main thread reads the worker-manager's messages and starts
//! processes; a reaper waits for every child (started ones and those
//! reparented here) and says how the started ones ended; a release kills
//! what is left of one process's tree. When the socket closes, the
//! worker-manager is gone (done, or killed): everything below is killed,
//! and the supervisor exits.
//!
//! Which process belongs to which request, once it has left its parent
//! (`setsid`, a double fork): below a live process that was started here;
//! else in the process group of one (each is its group's leader); else
//! carrying its marker. One that says none of these (it cleared its
//! environment and left its group) is killed once no request is left, or
//! when the worker-manager goes.

use std::collections::HashMap;
use std::io::{IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

use super::super::leftovers::{environment, process_table};
use super::super::process::MARKER_VAR;
use super::wire::{FromSupervisor, MAX_FDS, Request, ToSupervisor};

/// How long killing a tree may take before the supervisor gives up on it.
const KILL_FOR: Duration = Duration::from_secs(2);

/// A process started here, until it is released.
struct Started {
    root: i32,
    /// Until it is reaped: after, its pid may be given to another.
    alive: bool,
    /// `ICK_ACTION_RUN=MARKER`.
    marker: Vec<u8>,
}

#[derive(Default)]
struct Table {
    started: HashMap<u64, Started>,
    /// Counts starts, so that the reaper, with no child to wait for, can
    /// wait for the next one without missing it.
    starts: u64,
}

struct Supervisor {
    control: OwnedFd,
    table: Mutex<Table>,
    /// A child was started.
    started: Condvar,
    /// Held while a process starts: the standard library reaps a child
    /// whose `exec` failed, and the reaper must not take it first.
    starting: Mutex<()>,
}

impl Supervisor {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn say(&self, message: FromSupervisor) {
        // No one left to tell is found by the main thread (end of file).
        let _ = rustix::net::send(
            &self.control,
            message.encode().as_bytes(),
            SendFlags::NOSIGNAL,
        );
    }
}

/// Serves the worker-manager on standard input until it goes.
pub fn serve() -> Result<(), String> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("cannot become a subreaper: {e}"))?;
    // Signals meant for the worker-manager (a `pkill`, a service manager
    // stopping its group) must not end the supervisor before its
    // processes: it ends when the worker-manager does. They are caught
    // and dropped, not blocked or ignored, which what it starts would
    // inherit; `exec` resets a handler.
    let caught = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT, SIGHUP, SIGQUIT] {
        signal_hook::flag::register(signal, caught.clone())
            .map_err(|e| format!("cannot catch signal {signal}: {e}"))?;
    }
    let control = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("no control socket: {e}"))?;
    // Nothing else of the worker-manager's is held here.
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("cannot open /dev/null: {e}"))?;
    nix::unistd::dup2_stdin(&null).map_err(|e| e.to_string())?;
    nix::unistd::dup2_stdout(&null).map_err(|e| e.to_string())?;
    let supervisor = Arc::new(Supervisor {
        control,
        table: Mutex::new(Table::default()),
        started: Condvar::new(),
        starting: Mutex::new(()),
    });
    {
        let supervisor = supervisor.clone();
        std::thread::spawn(move || reap(&supervisor));
    }
    supervisor.say(FromSupervisor::Hello);
    loop {
        let mut bytes = [0u8; 128];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut ancillary = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            &supervisor.control,
            &mut [IoSliceMut::new(&mut bytes)],
            &mut ancillary,
            RecvFlags::CMSG_CLOEXEC,
        );
        let received = match received {
            Ok(r) => r.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => 0,
        };
        let fds: Vec<OwnedFd> = ancillary
            .drain()
            .filter_map(|m| match m {
                RecvAncillaryMessage::ScmRights(fds) => Some(fds.collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        if received == 0 {
            // The worker-manager is gone.
            kill_below(&supervisor, None);
            std::process::exit(0);
        }
        let text = String::from_utf8_lossy(&bytes[..received]);
        match ToSupervisor::decode(&text) {
            Some(ToSupervisor::Run { id }) => start(&supervisor, id, fds),
            Some(ToSupervisor::Release { id }) => {
                let supervisor = supervisor.clone();
                std::thread::spawn(move || release(&supervisor, id));
            }
            None => eprintln!("ick: the action's supervisor got a message it does not know"),
        }
    }
}

/// Starts the process of request `id` with the pipes the worker-manager
/// sent, and says so.
fn start(supervisor: &Supervisor, id: u64, fds: Vec<OwnedFd>) {
    let failed = |message: String| {
        supervisor.say(FromSupervisor::Failed {
            id,
            not_found: false,
            message,
        })
    };
    let mut fds = fds.into_iter();
    let (Some(request), Some(stdout), Some(stderr)) = (fds.next(), fds.next(), fds.next()) else {
        return failed("the request came without its pipes".into());
    };
    let stdin = fds.next();
    let mut bytes = Vec::new();
    if let Err(e) = std::fs::File::from(request).read_to_end(&mut bytes) {
        return failed(format!("cannot read the request: {e}"));
    }
    let request = match Request::decode(&bytes) {
        Ok(request) => request,
        Err(e) => return failed(e),
    };
    let mut command = std::process::Command::new(&request.program);
    command
        .args(&request.args)
        .current_dir(&request.cwd)
        .env_clear()
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .env(MARKER_VAR, &request.marker)
        .stdin(stdin.map(Stdio::from).unwrap_or_else(Stdio::null))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0);
    if let Some((uid, gid)) = request.user {
        // As root, the standard library also drops the supplementary groups.
        command.uid(uid).gid(gid);
    }
    let mut marker = format!("{MARKER_VAR}=").into_bytes();
    marker.extend_from_slice(request.marker.as_encoded_bytes());
    let spawned = {
        let _starting = supervisor
            .starting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let spawned = command.spawn();
        if let Ok(child) = &spawned {
            let mut table = supervisor.table();
            table.started.insert(
                id,
                Started {
                    root: child.id() as i32,
                    alive: true,
                    marker,
                },
            );
            table.starts += 1;
            supervisor.started.notify_all();
        }
        spawned
    };
    // The pipes' ends are the process's now: dropped here with `command`.
    drop(command);
    match spawned {
        // Reaped by `reap`, not through `Child`.
        Ok(child) => supervisor.say(FromSupervisor::Started {
            id,
            pid: child.id() as i32,
        }),
        Err(e) => supervisor.say(FromSupervisor::Failed {
            id,
            not_found: e.kind() == std::io::ErrorKind::NotFound,
            message: e.to_string(),
        }),
    }
}

/// Reaps every child, and says how the started ones ended.
fn reap(supervisor: &Supervisor) {
    loop {
        let starts = supervisor.table().starts;
        match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                let _starting = supervisor
                    .starting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let raw = match waitpid(pid, None) {
                    Ok(WaitStatus::Exited(_, code)) => (code & 0xff) << 8,
                    Ok(WaitStatus::Signaled(_, signal, _)) => signal as i32,
                    // Reaped by the start that failed.
                    _ => continue,
                };
                let mut table = supervisor.table();
                let ended = table
                    .started
                    .iter_mut()
                    .find(|(_, s)| s.alive && s.root == pid.as_raw());
                if let Some((id, started)) = ended {
                    started.alive = false;
                    let id = *id;
                    drop(table);
                    supervisor.say(FromSupervisor::Ended { id, status: raw });
                }
            }
            Err(Errno::ECHILD) => {
                let table = supervisor.table();
                if table.starts == starts {
                    drop(
                        supervisor
                            .started
                            .wait_while(table, |t| t.starts == starts)
                            .unwrap_or_else(|e| e.into_inner()),
                    );
                }
            }
            Err(_) => {}
        }
    }
}

/// Kills what is left of request `id`'s tree, forgets it, and says so.
fn release(supervisor: &Supervisor, id: u64) {
    kill_below(supervisor, Some(id));
    supervisor.table().started.remove(&id);
    supervisor.say(FromSupervisor::Released { id });
}

/// Kills the processes below the supervisor: those of request `id`, and
/// those of no one if no other request is held (`None`: all of them),
/// until none is left (a killed parent's children come here in turn).
fn kill_below(supervisor: &Supervisor, id: Option<u64>) {
    let me = std::process::id() as i32;
    let deadline = std::time::Instant::now() + KILL_FOR;
    loop {
        let table = process_table();
        let victims: Vec<i32> = {
            let held = supervisor.table();
            let others = held.started.keys().any(|other| Some(*other) != id);
            descendants(me, &table)
                .into_iter()
                .filter(|pid| match (id, owner(*pid, me, &table, &held)) {
                    (None, _) => true,
                    (_, None) => !others,
                    (Some(id), Some(owner)) => owner == id,
                })
                .collect()
        };
        if victims.is_empty() || std::time::Instant::now() > deadline {
            return;
        }
        for pid in victims {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The processes below `me` in `table` (pid: parent, group).
fn descendants(me: i32, table: &HashMap<i32, (i32, i32)>) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, (ppid, _)) in table {
        children.entry(*ppid).or_default().push(*pid);
    }
    let mut found = Vec::new();
    let mut next = vec![me];
    while let Some(parent) = next.pop() {
        for child in children.get(&parent).into_iter().flatten() {
            found.push(*child);
            next.push(*child);
        }
    }
    found
}

/// The request process `pid` (below `me`) belongs to, if one can be told
/// (see the module's comment).
fn owner(pid: i32, me: i32, table: &HashMap<i32, (i32, i32)>, held: &Table) -> Option<u64> {
    let mut at = pid;
    while at != me {
        let root = held.started.iter().find(|(_, s)| s.alive && s.root == at);
        if let Some((id, _)) = root {
            return Some(*id);
        }
        match table.get(&at) {
            Some((ppid, _)) => at = *ppid,
            None => break,
        }
    }
    let group = table.get(&pid).map(|(_, pgrp)| *pgrp);
    if let Some((id, _)) = held.started.iter().find(|(_, s)| Some(s.root) == group) {
        return Some(*id);
    }
    let environ = environment(pid).unwrap_or_default();
    let entries: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    held.started
        .iter()
        .find(|(_, s)| entries.contains(&s.marker.as_slice()))
        .map(|(id, _)| *id)
}
