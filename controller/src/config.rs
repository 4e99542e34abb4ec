//! The controller's configuration file.

use std::path::Path;
use std::time::Duration;

use ick_api::auth::AuthConfig;
use ick_api::server::HttpConfig;
use serde::Deserialize;

/// `ick-controller --config FILE`; see `deploy/config/controller.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen.
    pub http: HttpConfig,
    /// How tokens are checked.
    pub auth: AuthConfig,
    /// `postgres://…` (production; several controllers may share it) or
    /// `sqlite://FILE?mode=rwc` (one host). The environment variable
    /// `ICK_CONTROLLER_DATABASE_URL` overrides it.
    pub database_url: String,
    /// Largest number of database connections (default 10; SQLite uses 4).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// The work queue.
    #[serde(default)]
    pub work: WorkConfig,
    /// Builds.
    #[serde(default)]
    pub builds: BuildsConfig,
}

/// `work:` — leases and workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkConfig {
    /// A claimed action's lease; workers renew it every third of it
    /// (default 30 s).
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// How many times a pipeline is started over after its worker was lost
    /// before the node fails with "worker lost" (default 3).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// A worker not heard from for this long is not connected (default 60 s).
    #[serde(default = "default_worker_timeout", with = "humantime_serde")]
    pub worker_timeout: Duration,
    /// How often expired leases are looked for (default 1 s).
    #[serde(default = "default_reap_interval", with = "humantime_serde")]
    pub reap_interval: Duration,
}

impl Default for WorkConfig {
    fn default() -> Self {
        WorkConfig {
            lease: default_lease(),
            max_attempts: default_max_attempts(),
            worker_timeout: default_worker_timeout(),
            reap_interval: default_reap_interval(),
        }
    }
}

/// `builds:` — defaults for projects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildsConfig {
    /// Builds of one project that may run at once unless the project says
    /// otherwise (default 1).
    #[serde(default = "default_concurrency")]
    pub default_concurrency: u32,
}

impl Default for BuildsConfig {
    fn default() -> Self {
        BuildsConfig {
            default_concurrency: default_concurrency(),
        }
    }
}

fn default_max_connections() -> u32 {
    10
}
fn default_lease() -> Duration {
    Duration::from_secs(30)
}
fn default_max_attempts() -> u32 {
    3
}
fn default_worker_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_reap_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_concurrency() -> u32 {
    1
}

impl Config {
    /// Reads the file, applies environment overrides and checks the values.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let mut config: Config = ick_api::server::load_yaml(path)?;
        if let Ok(url) = std::env::var("ICK_CONTROLLER_DATABASE_URL")
            && !url.is_empty()
        {
            config.database_url = url;
        }
        config.check()?;
        Ok(config)
    }

    /// Refuses values that cannot work.
    pub fn check(&self) -> anyhow::Result<()> {
        let url = &self.database_url;
        if !(url.starts_with("postgres:")
            || url.starts_with("postgresql:")
            || url.starts_with("sqlite:"))
        {
            anyhow::bail!("database_url must start with postgres:// or sqlite://");
        }
        if self.work.lease < Duration::from_secs(1) {
            anyhow::bail!("work.lease must be at least 1s");
        }
        if self.work.max_attempts == 0 {
            anyhow::bail!("work.max_attempts must be at least 1");
        }
        if self.work.reap_interval < Duration::from_millis(10) {
            anyhow::bail!("work.reap_interval must be at least 10ms");
        }
        if self.builds.default_concurrency == 0 {
            anyhow::bail!("builds.default_concurrency must be at least 1");
        }
        if self.max_connections < 2 {
            anyhow::bail!("max_connections must be at least 2");
        }
        Ok(())
    }
}
