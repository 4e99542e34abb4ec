//! The worker-manager's configuration file.

pub use ick_api::server::ByteSize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ick_api::Secret;
use ick_api::server::HttpConfig;
use serde::Deserialize;

/// The environment variable that may hold the client secret (it wins over
/// `client_secret_file` and `client_secret`).
pub const SECRET_ENV: &str = "ICK_WORKER_CLIENT_SECRET";

/// `ick-worker-manager --config FILE`; see `deploy/config/worker-manager.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The worker's unique name: the controller pins a pipeline's later
    /// actions to it. Letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// The controller's base URL.
    pub controller: String,
    /// The artifact store's base URL.
    pub artifact_store: String,
    /// How long `archive` and `populate` wait out an artifact store that
    /// is away (restarting, unreachable) before they fail (default 5
    /// minutes); a transfer resumes where the store stopped.
    #[serde(default = "default_store_outage", with = "humantime_serde")]
    pub artifact_store_outage: Duration,
    /// How the worker gets its tokens.
    pub idp: IdpConfig,
    /// Labels projects may ask for with `runs_on:`, e.g. `arch=amd64`.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Actions run at once (default 1).
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Where pipelines' workspaces live, one directory per pipeline of a
    /// build: `ROOT/PROJECT/BUILD-NUMBER/PIPELINE`.
    pub workspace_root: PathBuf,
    /// Where system trees for `where: container` are unpacked (default
    /// `WORKSPACE_ROOT/.systrees`).
    #[serde(default)]
    pub systree_root: Option<PathBuf>,
    /// Where plugins (`ick-action-KIND` executables) are looked for; none
    /// by default.
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    /// When the worker runs as root, `chroot` and `container` actions run
    /// as this user instead (a name or a number; default `nobody`).
    #[serde(default = "default_sandbox_user")]
    pub sandbox_user: String,
    /// ...and this group (a name or a number; default `nogroup`).
    #[serde(default = "default_sandbox_group")]
    pub sandbox_group: String,
    /// Serve `/healthz` and `/readyz` here; no HTTP by default.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// Serve `/metrics` (Prometheus text, no token) here; none by default.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// How long one claim waits for work (default 30 s, at most 30 s).
    #[serde(default = "default_claim_wait", with = "humantime_serde")]
    pub claim_wait: Duration,
    /// Heartbeats go every third of the lease, and at least this often
    /// (default 2 s): a cancelled build stops within about this long.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Time between SIGTERM and SIGKILL when an action is stopped
    /// (default 5 s).
    #[serde(default = "default_kill_grace", with = "humantime_serde")]
    pub kill_grace: Duration,
    /// On SIGTERM, how long running actions may go on before they are
    /// cancelled (default 5 minutes).
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How output is shipped.
    #[serde(default)]
    pub output: OutputConfig,
}

/// Where metrics are served: an address only the monitoring network
/// reaches, since they need no token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: std::net::SocketAddr,
}

/// Client credentials at the IDP.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpConfig {
    /// The token endpoint, e.g. `http://127.0.0.1:7421/token`.
    pub token_url: String,
    /// The worker's client id (scopes `work:run blobs:read blobs:write`).
    pub client_id: String,
    /// The secret, inline (prefer the file or the environment).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// A file holding the secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
}

impl fmt::Debug for IdpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdpConfig")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret_file", &self.client_secret_file)
            .finish_non_exhaustive()
    }
}

/// How output is chunked, buffered and sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Output waits at most this long before it is sent (default 100 ms).
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// The largest chunk (default 64 KiB).
    #[serde(default = "default_chunk_size")]
    pub chunk_size: ByteSize,
    /// Output not yet delivered is kept in memory up to this much per
    /// action, then in a file (default 16 MiB).
    #[serde(default = "default_memory_limit")]
    pub memory_limit: ByteSize,
    /// The largest request body of output (default 1 MB); the controller's
    /// `http.body_limit` must allow it (a 413 halves it).
    #[serde(default = "default_batch")]
    pub max_batch: ByteSize,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            flush_interval: default_flush(),
            chunk_size: default_chunk_size(),
            memory_limit: default_memory_limit(),
            max_batch: default_batch(),
        }
    }
}

fn default_sandbox_user() -> String {
    "nobody".into()
}
fn default_sandbox_group() -> String {
    "nogroup".into()
}
fn default_slots() -> u32 {
    1
}
fn default_claim_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(2)
}
fn default_kill_grace() -> Duration {
    Duration::from_secs(5)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_store_outage() -> Duration {
    Duration::from_secs(300)
}
fn default_flush() -> Duration {
    Duration::from_millis(100)
}
fn default_chunk_size() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_memory_limit() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_batch() -> ByteSize {
    ByteSize(1_000_000)
}

impl Config {
    /// Reads the file, applies the environment and checks the result.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let config: Config = ick_api::server::load_yaml(path)?;
        config.check()?;
        Ok(config)
    }

    /// Refuses a configuration that cannot work, saying why.
    pub fn check(&self) -> anyhow::Result<()> {
        ick_api::work::check_worker(&self.name, &self.labels).map_err(anyhow::Error::msg)?;
        if self.slots == 0 {
            anyhow::bail!("slots must be at least 1");
        }
        for (what, url) in [
            ("controller", &self.controller),
            ("artifact_store", &self.artifact_store),
            ("idp.token_url", &self.idp.token_url),
        ] {
            let parsed = url::Url::parse(url).with_context(|| format!("{what} {url:?}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!("{what} {url:?} is not an http(s) URL");
            }
        }
        if !self.workspace_root.is_absolute() {
            anyhow::bail!(
                "workspace_root {} must be an absolute path",
                self.workspace_root.display()
            );
        }
        if self.workspace_root.parent().is_none() {
            anyhow::bail!("workspace_root must not be /");
        }
        if self.output.chunk_size.0 < 16 || self.output.chunk_size.0 > 1 << 20 {
            anyhow::bail!("output.chunk_size must be between 16 bytes and 1 MiB");
        }
        if self.output.max_batch.0 < 4 * self.output.chunk_size.0 + 1024 {
            anyhow::bail!(
                "output.max_batch must hold at least four chunks of output.chunk_size (JSON escapes can grow a chunk)"
            );
        }
        if self.heartbeat_interval < Duration::from_millis(100) {
            anyhow::bail!("heartbeat_interval must be at least 100ms");
        }
        if self.artifact_store_outage.is_zero() {
            anyhow::bail!("artifact_store_outage must be more than 0s");
        }
        if self.claim_wait > Duration::from_secs(ick_api::work::MAX_WAIT_SECONDS) {
            anyhow::bail!(
                "claim_wait must be at most {}s",
                ick_api::work::MAX_WAIT_SECONDS
            );
        }
        if self.idp.client_secret.is_none()
            && self.idp.client_secret_file.is_none()
            && std::env::var_os(SECRET_ENV).is_none()
        {
            anyhow::bail!(
                "no client secret: set idp.client_secret_file, idp.client_secret or {SECRET_ENV}"
            );
        }
        Ok(())
    }

    /// The client secret: the environment, then the file, then the config.
    pub fn client_secret(&self) -> anyhow::Result<Secret> {
        ick_api::secret::resolve(
            "idp.client_secret",
            self.idp.client_secret.as_ref(),
            self.idp.client_secret_file.as_deref(),
            SECRET_ENV,
        )?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no client secret: set idp.client_secret_file, idp.client_secret or {SECRET_ENV}"
            )
        })
    }

    /// Where system trees go.
    pub fn systree_root(&self) -> PathBuf {
        self.systree_root
            .clone()
            .unwrap_or_else(|| self.workspace_root.join(".systrees"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads_and_bad_names_are_refused() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/worker-manager.yaml");
        let config = Config::load(&path).expect("the example config loads");
        assert_eq!(config.output.chunk_size, ByteSize(64 * 1024));
        assert_eq!(config.artifact_store_outage, Duration::from_secs(300));
        let mut bad = config.clone();
        bad.name = "has space".into();
        assert!(
            bad.check()
                .expect_err("refused")
                .to_string()
                .contains("not valid")
        );
        let mut bad = config.clone();
        bad.artifact_store_outage = Duration::ZERO;
        assert!(
            bad.check()
                .expect_err("refused")
                .to_string()
                .contains("artifact_store_outage")
        );
        let mut bad = config;
        bad.workspace_root = "relative".into();
        assert!(
            bad.check()
                .expect_err("refused")
                .to_string()
                .contains("absolute")
        );
    }
}
