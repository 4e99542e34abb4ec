//! What the icktool end-to-end tests share: the five real binaries, each a
//! separate process on loopback (IDP and controller on fresh Postgres
//! databases, the artifact store on a local folder, worker-managers), and
//! the real `icktool` binary, which is the only thing the tests drive them
//! with.

#![allow(dead_code)] // each test binary uses its own part of this

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ick_tests::controller::TestController;
use ick_tests::idp::Storage;
use ick_tests::store::{Backend, TestStore};
use ick_tests::worker::TestWorker;
use ick_tests::{TestIdp, bin_path, repo_root};
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use tempfile::TempDir;

/// How long any one icktool command may take in these tests.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The suite, and an icktool config for its admin client.
pub struct Ick {
    pub idp: TestIdp,
    pub controller: TestController,
    pub store: TestStore,
    pub workers: Vec<TestWorker>,
    pub dir: TempDir,
    /// The icktool config: every URL and the admin client (every scope).
    pub config: PathBuf,
}

impl Ick {
    /// The suite with `workers` worker-managers.
    pub fn start(workers: usize) -> Ick {
        Self::start_with(workers, |_| {})
    }

    /// The same, with `edit` applied to the controller's config.
    pub fn start_with(workers: usize, edit: impl FnOnce(&mut Value)) -> Ick {
        Self::start_with_idp(workers, |_| {}, edit)
    }

    /// The same, with `edit_idp` applied to the IDP's config too.
    pub fn start_with_idp(
        workers: usize,
        edit_idp: impl FnOnce(&mut Value),
        edit: impl FnOnce(&mut Value),
    ) -> Ick {
        Self::start_on(Storage::Postgres, workers, edit_idp, edit)
    }

    /// The same, with the IDP and the controller on `storage`.
    pub fn start_on(
        storage: Storage,
        workers: usize,
        edit_idp: impl FnOnce(&mut Value),
        edit: impl FnOnce(&mut Value),
    ) -> Ick {
        let idp = TestIdp::start_with(storage, edit_idp);
        let controller = TestController::start_with(&idp, storage, edit);
        let store = TestStore::start(&idp, Backend::Local);
        let mut ick = Ick {
            workers: Vec::new(),
            dir: tempfile::tempdir().expect("tempdir"),
            config: PathBuf::new(),
            idp,
            controller,
            store,
        };
        ick.config = ick.write_config("icktool.yaml", |_| {});
        for _ in 0..workers {
            ick.add_worker();
        }
        ick
    }

    /// Starts one more worker-manager (one slot).
    pub fn add_worker(&mut self) -> &TestWorker {
        let worker = TestWorker::start(&self.idp, self.controller.url(), self.store.url());
        self.workers.push(worker);
        self.workers.last().expect("just pushed")
    }

    /// Writes an icktool config for the admin client into the test's
    /// folder, with `edit` applied.
    pub fn write_config(&self, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let mut config: Value = serde_yaml::from_str("{}").expect("yaml");
        config["controller"] = self.controller.url().into();
        config["idp"] = self.idp.url().into();
        config["artifact_store"] = self.store.url().into();
        config["client_id"] = self.idp.admin.id.as_str().into();
        config["client_secret"] = self.idp.admin.secret.as_str().into();
        edit(&mut config);
        let path = self.dir.path().join(name);
        std::fs::write(&path, serde_yaml::to_string(&config).expect("yaml")).expect("write config");
        set_mode(&path, 0o600);
        path
    }

    /// Writes a file into the test's folder.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// Runs `icktool --config CONFIG ARGS…` to its end.
    pub fn icktool(&self, args: &[&str]) -> Run {
        icktool(&self.config, args, &[])
    }

    /// The same, with environment variables.
    pub fn icktool_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        icktool(&self.config, args, env)
    }

    /// Starts `icktool --config CONFIG ARGS…` without waiting for it.
    pub fn spawn(&self, args: &[&str]) -> Running {
        Running::start(command(&self.config, args, &[]))
    }

    /// The logs of every service, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for (name, log) in [
            ("idp", self.idp.process.log_text()),
            ("controller", self.controller.process.log_text()),
            ("store", self.store.process.log_text()),
        ] {
            text.push_str(&format!("--- {name}\n{}\n", tail(&log, 30)));
        }
        for w in &self.workers {
            text.push_str(&format!("--- worker {}\n{}\n", w.name, tail(&w.log(), 30)));
        }
        text
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn command(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(bin_path("icktool"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("ICKTOOL_CONFIG")
        .env_remove("ICKTOOL_CLIENT_SECRET")
        .env_remove("ICKTOOL_CONTROLLER")
        .env_remove("ICKTOOL_IDP")
        .env_remove("ICKTOOL_ARTIFACT_STORE")
        .env_remove("ICKTOOL_CLIENT_ID")
        .env_remove("RUST_BACKTRACE")
        .current_dir(repo_root());
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// Runs icktool with `config` and waits for it (at most [`COMMAND_TIMEOUT`]).
pub fn icktool(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    Running::start(command(config, args, env)).wait(COMMAND_TIMEOUT)
}

/// Runs icktool with no `--config` at all.
pub fn icktool_bare(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Run {
    let mut command = Command::new(bin_path("icktool"));
    command
        .args(args)
        .env_remove("ICKTOOL_CONFIG")
        .env_remove("ICKTOOL_CLIENT_SECRET")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RUST_BACKTRACE")
        .current_dir(cwd);
    for (k, v) in env {
        command.env(k, v);
    }
    Running::start(command).wait(COMMAND_TIMEOUT)
}

/// An icktool process still running; its output is collected as it goes.
pub struct Running {
    pub pid: u32,
    done: mpsc::Receiver<Run>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    label: String,
}

impl Running {
    pub fn start(mut command: Command) -> Running {
        let label = format!("{command:?}");
        let mut child: Child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start icktool: {e}"));
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        let stderr_so_far = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let shared = stderr_so_far.clone();
        std::thread::spawn(move || {
            let stderr = child.stderr.take().expect("piped");
            let err_reader = std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut text = shared.lock().unwrap_or_else(|e| e.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
                shared.lock().unwrap_or_else(|e| e.into_inner()).clone()
            });
            let mut bytes = Vec::new();
            if let Some(mut out) = child.stdout.take() {
                let _ = out.read_to_end(&mut bytes);
            }
            let stdout = String::from_utf8_lossy(&bytes).into_owned();
            let status = child.wait().expect("wait for icktool");
            let stderr = err_reader.join().unwrap_or_default();
            let _ = tx.send(Run {
                status,
                stdout,
                bytes,
                stderr,
            });
        });
        Running {
            pid,
            done: rx,
            stderr: stderr_so_far,
            label,
        }
    }

    /// What it has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for it to end; kills it and panics after `timeout`.
    pub fn wait(self, timeout: Duration) -> Run {
        match self.done.recv_timeout(timeout) {
            Ok(run) => run,
            Err(_) => {
                self.signal(nix::sys::signal::Signal::SIGKILL);
                let partial = self.done.recv_timeout(Duration::from_secs(10)).ok();
                panic!(
                    "icktool did not end within {timeout:?}: {}\n{}",
                    self.label,
                    partial.map(|r| r.to_string()).unwrap_or_default()
                );
            }
        }
    }

    /// Whether it has ended (without waiting).
    pub fn try_finish(&self) -> Option<Run> {
        self.done.try_recv().ok()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), signal);
    }
}

/// How an icktool command ended.
pub struct Run {
    pub status: ExitStatus,
    /// Stdout as text (lossy).
    pub stdout: String,
    /// Stdout as it came.
    pub bytes: Vec<u8>,
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status.code(),
            self.stdout,
            self.stderr
        )
    }
}

impl Run {
    /// The exit code (-1 if a signal ended it).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Asserts it exited 0.
    pub fn ok(self) -> Run {
        assert_eq!(self.code(), 0, "icktool failed:\n{self}");
        self
    }

    /// Asserts it exited `code` and said `text` on stderr.
    pub fn fails(self, code: i32, text: &str) -> Run {
        assert_eq!(self.code(), code, "unexpected exit code:\n{self}");
        assert!(
            self.stderr.contains(text),
            "stderr does not say {text:?}:\n{self}"
        );
        self
    }

    /// Stdout as JSON (of `--output json`).
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not the expected JSON ({e}):\n{self}"))
    }
}

/// Writes `text` to a definition file in a fresh folder under `ick`'s.
pub fn definitions(ick: &Ick, name: &str, text: &str) -> PathBuf {
    ick.file(&format!("defs/{name}"), text)
}

/// The path as a `&str` (test paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Polls `check` until it yields `Some`, or panics after `timeout` naming
/// `what` (the sync twin of `ick_tests::eventually`, for tests that run
/// icktool as a process).
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `build show BUILD --output json`.
pub fn build(ick: &Ick, reference: &str) -> ick_api::controller::BuildView {
    ick.icktool(&["build", "show", reference, "--output", "json"])
        .ok()
        .json()
}

/// The same, or `None` while there is no such build (e.g. before a
/// spawned `trigger` has triggered it).
pub fn try_build(ick: &Ick, reference: &str) -> Option<ick_api::controller::BuildView> {
    let run = ick.icktool(&["build", "show", reference, "--output", "json"]);
    (run.code() == 0).then(|| run.json())
}

/// Whether a process whose command line contains `marker` runs.
pub fn process_running(marker: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(marker)
            })
            .unwrap_or(false)
    })
}
