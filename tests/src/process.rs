//! A real Ick binary running as a child process.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A started service: it printed `listening on URL` on stdout. Its stdout
/// and stderr go to a log file, whose tail is printed if the test panics.
pub struct ServiceProcess {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Where its output goes.
    pub log: PathBuf,
    name: String,
    /// Once killed, its port, bound but not listening (connections are
    /// refused), so that no other test binds it before the restart.
    held: Option<tokio::net::TcpSocket>,
}

impl ServiceProcess {
    /// Starts `bin` with `args` and waits (up to 60 s) for it to listen.
    pub fn start<I, S>(bin: &Path, args: I, env: &[(&str, &str)], log: PathBuf) -> ServiceProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut command = Command::new(bin);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file.try_clone().expect("log file"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("RUST_BACKTRACE");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log_file = log_file;
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log_file, "{line}");
                if let Some(url) = line.strip_prefix("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(url) => break url,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "{name} exited with {status} before listening:\n{}",
                            tail(&log, 40)
                        );
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("{name} did not start listening:\n{}", tail(&log, 40));
                }
            }
        };
        let addr = url
            .split("://")
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name} printed an odd address: {url}"));
        ServiceProcess {
            child,
            url,
            addr,
            log,
            name,
            held: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. SIGHUP to reload, SIGTERM to stop).
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it.
    /// Its port stays taken until [`ServiceProcess::release_port`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.held.is_none() {
            self.held = hold_port(self.addr);
        }
    }

    /// Frees the port a kill held, for the service started again on it.
    pub fn release_port(&mut self) {
        self.held = None;
    }

    /// Sends SIGTERM and waits up to `timeout` for it to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Binds `addr` without listening; `None` if it cannot (a restart then
/// simply races as before).
pub fn hold_port(addr: SocketAddr) -> Option<tokio::net::TcpSocket> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .ok()?;
    socket.set_reuseaddr(true).ok()?;
    socket.bind(addr).ok()?;
    Some(socket)
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ({}) ---",
                self.name,
                self.log.display()
            );
            eprintln!("{}", tail(&self.log, 60));
        }
    }
}
