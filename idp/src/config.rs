//! The IDP's configuration file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ick_api::Secret;
use ick_api::server::HttpConfig;
use serde::Deserialize;

/// `ick-idp --config FILE`; see `deploy/config/idp.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen.
    pub http: HttpConfig,
    /// The issuer URL put in tokens and discovery; by default the URL of
    /// the listening address. Set it when clients reach the IDP by another
    /// name (a proxy, a DNS name, TLS).
    #[serde(default)]
    pub issuer: Option<String>,
    /// State: signing keys (`keys/`) and, by default, the SQLite database.
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; default `sqlite://DATA_DIR/idp.db`.
    /// A URL with a password is a secret: prefer `database_url_file` or
    /// the environment variable `ICK_IDP_DATABASE_URL` (which wins).
    #[serde(default)]
    pub database_url: Option<Secret>,
    /// A file holding the database URL.
    #[serde(default)]
    pub database_url_file: Option<PathBuf>,
    /// How long a request waits for a database connection before it is
    /// answered 503 with `Retry-After` (default 5 s).
    #[serde(default = "default_acquire_timeout", with = "humantime_serde")]
    pub database_acquire_timeout: Duration,
    /// Lifetime of access tokens (default 15 minutes).
    #[serde(default = "default_token_lifetime", with = "humantime_serde")]
    pub token_lifetime: Duration,
    /// Lifetime of a person's refresh token (default 14 days): each refresh
    /// answers a new one, valid this long from then; one unused this long
    /// means logging in again.
    #[serde(default = "default_refresh_token_lifetime", with = "humantime_serde")]
    pub refresh_token_lifetime: Duration,
    /// The audience of tokens for clients created without one (default `ick`).
    #[serde(default = "default_audience")]
    pub default_audience: String,
    /// Failed client authentications allowed per client id and per peer
    /// address in one window before answers become 429.
    #[serde(default)]
    pub auth_failures: FailureLimit,
    /// OpenID providers people may log in through instead of a password
    /// ("Sign in with NAME" on the login page).
    #[serde(default)]
    pub upstream: Vec<UpstreamConfig>,
    /// The device authorization grant (`icktool login`).
    #[serde(default)]
    pub device: DeviceSettings,
}

/// One upstream OpenID provider, as configured; checked by
/// [`crate::upstream::Upstream::from_config`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Shown as "Sign in with NAME"; lowercased, it is the slug in
    /// `/upstream/SLUG/…` and what identities are stored under.
    pub name: String,
    /// The provider's issuer URL (its discovery document is beneath it).
    pub issuer: String,
    /// Our client at the provider; its redirect URI there must be
    /// `OUR-ISSUER/upstream/SLUG/callback`.
    pub client_id: String,
    /// A file (mode 0600) holding the client's secret.
    pub client_secret_file: PathBuf,
    /// The ID-token claim that names the Ick user (default
    /// `preferred_username`).
    #[serde(default = "default_upstream_claim")]
    pub claim: String,
    /// The scopes asked for (default `openid profile email`).
    #[serde(default = "default_upstream_scopes")]
    pub scopes: String,
}

fn default_upstream_claim() -> String {
    "preferred_username".to_string()
}

fn default_upstream_scopes() -> String {
    "openid profile email".to_string()
}

/// The device authorization grant (RFC 8628).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSettings {
    /// How long a person has to type the code and approve (default 10 minutes).
    #[serde(default = "default_device_code_lifetime", with = "humantime_serde")]
    pub code_lifetime: Duration,
    /// How long a device waits between polls at first (default 5 s;
    /// whole seconds, at least 1).
    #[serde(default = "default_device_interval", with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            code_lifetime: default_device_code_lifetime(),
            interval: default_device_interval(),
        }
    }
}

fn default_device_code_lifetime() -> Duration {
    Duration::from_secs(10 * 60)
}

fn default_device_interval() -> Duration {
    Duration::from_secs(5)
}

/// Limits on failed client authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureLimit {
    /// Failures allowed in a window (default 10) per client id and peer
    /// address, and per client id from all the addresses it never
    /// authenticated from.
    pub max_failures: u32,
    /// Failures allowed per peer address in a window, whatever the client
    /// (default 100): higher, so that one misconfigured client does not
    /// lock out the others behind the same address (a proxy, one host).
    #[serde(default = "default_max_failures_per_peer")]
    pub max_failures_per_peer: u32,
    /// The window (default 1 minute).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for FailureLimit {
    fn default() -> Self {
        FailureLimit {
            max_failures: 10,
            max_failures_per_peer: default_max_failures_per_peer(),
            window: Duration::from_secs(60),
        }
    }
}

fn default_max_failures_per_peer() -> u32 {
    100
}

fn default_acquire_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_token_lifetime() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_refresh_token_lifetime() -> Duration {
    Duration::from_secs(14 * 24 * 3600)
}

fn default_audience() -> String {
    "ick".to_string()
}

impl Config {
    /// Reads the file and applies environment overrides.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let config: Config = ick_api::server::load_yaml(path)?;
        config.database_url()?;
        if config.token_lifetime < Duration::from_secs(10) {
            anyhow::bail!("token_lifetime must be at least 10s");
        }
        if config.refresh_token_lifetime <= config.token_lifetime {
            anyhow::bail!("refresh_token_lifetime must be longer than token_lifetime");
        }
        let device = &config.device;
        if device.interval < Duration::from_secs(1)
            || device.interval.subsec_nanos() != 0
            || device.code_lifetime <= device.interval
        {
            anyhow::bail!(
                "device: interval must be whole seconds, at least 1s, and code_lifetime longer"
            );
        }
        let limits = &config.auth_failures;
        if limits.max_failures == 0 || limits.max_failures_per_peer < limits.max_failures {
            anyhow::bail!(
                "auth_failures: max_failures must be at least 1, and max_failures_per_peer \
                 at least max_failures (one client's mistakes must not block its neighbours first)"
            );
        }
        config.upstreams()?;
        Ok(config)
    }

    /// The upstream providers, checked, with their secrets read.
    pub fn upstreams(&self) -> anyhow::Result<Vec<crate::upstream::Upstream>> {
        let mut upstreams: Vec<crate::upstream::Upstream> = Vec::new();
        for given in &self.upstream {
            let upstream = crate::upstream::Upstream::from_config(given)?;
            if upstreams.iter().any(|u| u.slug == upstream.slug) {
                anyhow::bail!("upstream {:?} is listed twice", upstream.slug);
            }
            upstreams.push(upstream);
        }
        Ok(upstreams)
    }

    /// The database URL: the environment variable, else the file, else
    /// inline, else SQLite in the data directory.
    pub fn database_url(&self) -> anyhow::Result<Secret> {
        let given = ick_api::secret::resolve(
            "database_url",
            self.database_url.as_ref(),
            self.database_url_file.as_deref(),
            "ICK_IDP_DATABASE_URL",
        )?;
        Ok(given.unwrap_or_else(|| {
            Secret::new(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("idp.db").display()
            ))
        }))
    }

    /// Creates the data directory (mode 0700) if needed and opens the store.
    pub async fn open_store(&self) -> anyhow::Result<crate::store::Store> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data_dir {}: {e}", self.data_dir.display())
        })?;
        std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700))?;
        crate::store::Store::connect(self.database_url()?.expose(), self.database_acquire_timeout)
            .await
    }

    /// Where signing keys live.
    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(limits: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("idp.yaml");
        std::fs::write(
            &path,
            format!("http: {{listen: 127.0.0.1:0}}\ndata_dir: /tmp/x\nauth_failures: {limits}\n"),
        )
        .expect("write");
        Config::load(&path)
    }

    #[test]
    fn a_database_password_is_not_in_debug_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("idp.yaml");
        let url = "postgres://ick:hunter2@db.example.org/ick_idp";
        std::fs::write(
            &path,
            format!("http: {{listen: 127.0.0.1:0}}\ndata_dir: /tmp/x\ndatabase_url: {url}\n"),
        )
        .expect("write");
        let config = Config::load(&path).expect("loads");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(config.database_url().expect("url").expose(), url);
    }

    #[test]
    fn failure_limits_that_would_lock_out_neighbours_are_refused() {
        let ok = load("{max_failures: 3, window: 1m}").expect("loads");
        assert_eq!(ok.auth_failures.max_failures_per_peer, 100);
        for bad in [
            "{max_failures: 0, window: 1m}",
            "{max_failures: 10, max_failures_per_peer: 5, window: 1m}",
        ] {
            let e = load(bad).expect_err(bad).to_string();
            assert!(e.contains("auth_failures"), "{e}");
        }
    }
}
