//! Finding and stopping what an action left running: its process group,
//! and processes that left the group (`setsid`, daemons) but carry the
//! action's marker ([`MARKER_VAR`]) in their environment, found in `/proc`;
//! and, last, whatever is still below its supervised processes.

use std::collections::HashMap;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::process::MARKER_VAR;
use super::supervisor::Supervised;

/// An action's supervised processes, kept until the action's end: then
/// whatever is left of their trees, that the sweeps did not stop, is
/// killed.
#[derive(Default)]
pub struct Guards(std::sync::Mutex<Vec<Supervised>>);

impl Guards {
    /// Keeps `supervised` until [`Guards::release`].
    pub fn keep(&self, supervised: Supervised) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(supervised);
    }

    /// Releases every process, killing what is left of its tree.
    pub async fn release(&self) {
        let all = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        futures::future::join_all(all.into_iter().map(Supervised::release)).await;
    }
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
        if pid == me || pid == 2 || pid < first_new {
            continue;
        }
        let Some(stat) = Stat::of(pid) else {
            continue;
        };
        if !stat.is_user_process() {
            continue;
        }
        if let (Some(since), Some(started)) = (since_ticks, stat.started)
            && started < since
        {
            continue;
        }
        if pgid.is_some() && Some(stat.pgrp) == pgid {
            found.push(pid);
            continue;
        }
        let Some(environ) = environment(pid) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(&matches) {
            found.push(pid);
        }
    }
    found
}

/// Every live user process: its parent and its process group, by pid.
/// Blocking: it reads `/proc`.
pub fn process_table() -> HashMap<i32, (i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = Stat::of(pid)?;
            stat.is_user_process()
                .then_some((pid, (stat.ppid, stat.pgrp)))
        })
        .collect()
}

/// What `/proc/PID/stat` tells of a process.
struct Stat {
    state: char,
    ppid: i32,
    pgrp: i32,
    /// In clock ticks since boot.
    started: Option<u64>,
}

impl Stat {
    fn of(pid: i32) -> Option<Stat> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
        let after = &stat[stat.rfind(')')? + 1..];
        let mut fields = after.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        let pgrp = fields.next()?.parse().ok()?;
        // starttime is the 22nd field; `fields` started at the 3rd and has
        // given three: skip to the 22nd.
        let started = fields.nth(16).and_then(|t| t.parse::<u64>().ok());
        Some(Stat {
            state,
            ppid,
            pgrp,
            started,
        })
    }

    /// Alive, and not a kernel thread.
    fn is_user_process(&self) -> bool {
        !matches!(self.state, 'Z' | 'X') && self.ppid != 2
    }
}

/// A process's environment. A process in the middle of `exec` shows an
/// empty one for a moment (its parent may already run again): look twice.
pub fn environment(pid: i32) -> Option<Vec<u8>> {
    let path = format!("/proc/{pid}/environ");
    let environ = std::fs::read(&path).ok()?;
    if !environ.is_empty() {
        return Some(environ);
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    std::fs::read(&path).ok()
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
