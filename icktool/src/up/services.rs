//! The service binaries `up` runs as its children: where they are, how
//! each is started, watched and stopped.
//!
//! Each child reads its stdin from a pipe whose only writer is `up`, with
//! `ICK_STOP_WITH_STDIN=1`: when `up` ends, however it ends (kill -9
//! too), the kernel closes the pipe and every service stops as on
//! SIGTERM. PR_SET_PDEATHSIG would need `pre_exec` (unsafe, which the
//! workspace forbids) or each service setting it on itself (racing with
//! `up` dying first), and it fires when the *thread* that spawned the
//! child ends, not the process: with a runtime's threads, too early or
//! never. A pipe has no such edge: its end is its writer's end.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::process::{Child, Command};

/// How long a service may take from its start to answering `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a service may take to stop after SIGTERM before SIGKILL: a
/// worker gets 5 s for its actions, then 2 s to kill them.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a service's log is looked at for what it added.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(20);

/// The four service binaries, found before anything starts.
pub struct Binaries {
    pub idp: PathBuf,
    pub controller: PathBuf,
    pub artifact_store: PathBuf,
    pub worker_manager: PathBuf,
    pub web: PathBuf,
}

impl Binaries {
    /// Each beside icktool's own executable (how they ship, and how
    /// `target/debug` holds them), else on PATH.
    pub fn find() -> anyhow::Result<Binaries> {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|me| me.parent().map(Path::to_path_buf));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let find = |name: &str| -> anyhow::Result<PathBuf> {
            beside
                .iter()
                .cloned()
                .chain(std::env::split_paths(&path))
                .map(|dir| dir.join(name))
                .find(|candidate| is_executable(candidate))
                .with_context(|| {
                    format!(
                        "cannot find {name}: looked in {} (beside icktool) and on PATH; \
                         `icktool up` runs the service binaries, installed beside icktool \
                         (`cargo build --release --workspace --bins` makes them all)",
                        beside
                            .as_deref()
                            .map_or("(unknown)".into(), |d| d.display().to_string())
                    )
                })
        };
        Ok(Binaries {
            idp: find("ick-idp")?,
            controller: find("ick-controller")?,
            artifact_store: find("ick-artifact-store")?,
            worker_manager: find("ick-worker-manager")?,
            web: find("ick-web")?,
        })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Writes a config file with mode 0600 (some hold secrets; none is for
/// others to read).
pub fn write_private(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_yaml::to_string(value)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An older file keeps its mode through `open`.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(b"# Written by `icktool up` at each start: changes are lost.\n")?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A service to start: its binary, config and log file.
pub struct Spec<'a> {
    /// As `up` names it in what it prints.
    pub name: String,
    pub binary: &'a Path,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Variables besides `up`'s own environment.
    pub env: Vec<(&'static str, String)>,
}

/// A started service, ready.
pub struct Service {
    pub name: String,
    /// Its base URL, as it printed it (`listening on URL`).
    pub url: String,
    pub log: PathBuf,
    child: Child,
    /// Reads its log as it grows.
    follower: tokio::task::JoinHandle<()>,
}

/// The pipe the children's stdin comes from; dropping it (or `up`
/// ending) stops them all.
pub struct Lifeline {
    reader: std::io::PipeReader,
    _writer: std::io::PipeWriter,
}

impl Lifeline {
    pub fn new() -> anyhow::Result<Lifeline> {
        // Both ends are close-on-exec: no child holds the writer.
        let (reader, writer) = std::io::pipe().context("cannot make a pipe")?;
        Ok(Lifeline {
            reader,
            _writer: writer,
        })
    }
}

impl Service {
    /// Starts `spec` and waits until it answers `/readyz`; a service that
    /// ends first is an error naming it and its log.
    pub async fn start(
        spec: Spec<'_>,
        lifeline: &Lifeline,
        http: &reqwest::Client,
    ) -> anyhow::Result<Service> {
        let Spec {
            name,
            binary,
            config,
            log,
            env,
        } = spec;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot write {}", log.display()))?;
        let start = file.metadata()?.len();
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(&config)
            .env(ick_api::server::STOP_WITH_STDIN_ENV, "1")
            .envs(env)
            .stdin(Stdio::from(lifeline.reader.try_clone()?))
            // Straight to the file, not through `up`: a service must
            // outlive `up` long enough to stop, and one whose stderr
            // is a broken pipe panics at its next log line.
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            // Its own process group: Ctrl-C in the terminal reaches `up`
            // alone, which stops the services in order.
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let (url_tx, mut url_rx) = tokio::sync::oneshot::channel();
        let follower = tokio::spawn(follow(log.clone(), start, name.clone(), url_tx));
        let mut service = Service {
            name,
            url: String::new(),
            log,
            child,
            follower,
        };
        let ready = async {
            let url = (&mut url_rx).await.ok()?;
            let readyz = ick_api::http::join(&url, "/readyz");
            loop {
                if http
                    .get(&readyz)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    return Some(url);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let outcome = tokio::select! {
            url = ready => url,
            _ = service.child.wait() => None,
            _ = tokio::time::sleep(READY_TIMEOUT) => None,
        };
        if let Some(url) = outcome {
            service.url = url;
            return Ok(service);
        }
        // Its output may end a moment before it does.
        let what = match tokio::time::timeout(Duration::from_secs(1), service.child.wait()).await {
            Ok(Ok(status)) => format!("ended ({status}) before it was ready"),
            _ => format!("was not ready within {READY_TIMEOUT:?}"),
        };
        let error = service.died(&what);
        service.stop().await;
        Err(error)
    }

    /// The error for a service that ended or failed: its name, its log
    /// and the log's last lines.
    pub fn died(&self, what: &str) -> anyhow::Error {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n  ");
        anyhow::anyhow!(
            "the {} {what}; its log is {}:\n  {tail}",
            self.name,
            self.log.display()
        )
    }

    /// Waits until it ends.
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        self.child.wait().await.ok()
    }

    fn terminate(&self) {
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    async fn reap(&mut self) {
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            eprintln!("warning: the {} did not stop in time: killed", self.name);
            let _ = self.child.kill().await;
        }
        // What it said last, said.
        tokio::time::sleep(FOLLOW_INTERVAL * 2).await;
        self.follower.abort();
    }

    /// SIGTERM, and waits for it to end (SIGKILL after a while).
    pub async fn stop(mut self) {
        self.terminate();
        self.reap().await;
    }

    /// Stops several at once.
    pub async fn stop_all(services: Vec<Service>) {
        for service in &services {
            service.terminate();
        }
        futures::future::join_all(
            services
                .into_iter()
                .map(|mut s| async move { s.reap().await }),
        )
        .await;
    }
}

/// Follows a service's log from `start`: the first `listening on URL`
/// line answers `url`; warnings and errors also go to `up`'s stderr,
/// named after the service.
async fn follow(
    path: PathBuf,
    start: u64,
    name: String,
    url: tokio::sync::oneshot::Sender<String>,
) {
    let Ok(file) = tokio::fs::File::open(&path).await else {
        return;
    };
    let mut reader = BufReader::new(file);
    if reader.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return;
    }
    let mut url = Some(url);
    let mut line = Vec::new();
    loop {
        match reader.read_until(b'\n', &mut line).await {
            Ok(_) if line.ends_with(b"\n") => {}
            // The end of what it wrote so far (maybe within a line).
            Ok(_) => {
                tokio::time::sleep(FOLLOW_INTERVAL).await;
                continue;
            }
            Err(_) => return,
        }
        let text = String::from_utf8_lossy(&line);
        if matches!(text.split_whitespace().nth(1), Some("WARN" | "ERROR"))
            // `up`'s own polls of /readyz, answered 503 until ready, are no news.
            && !text.contains("path=/readyz")
        {
            eprint!("{name}: {text}");
        }
        if let Some(found) = text.trim().strip_prefix("listening on ")
            && let Some(tx) = url.take()
        {
            let _ = tx.send(found.to_string());
        }
        line.clear();
    }
}
