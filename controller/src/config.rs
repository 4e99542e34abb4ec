//! The controller's configuration file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ick_api::Secret;
use ick_api::auth::AuthConfig;
use ick_api::controller::Member;
use ick_api::server::HttpConfig;
use serde::Deserialize;

/// The environment variable that holds the SMTP password (it wins over
/// `mail.password_file` and `mail.password`).
pub const SMTP_PASSWORD_ENV: &str = "ICK_CONTROLLER_SMTP_PASSWORD";

/// The environment variable that holds the database URL (it wins over
/// `database_url_file` and `database_url`).
pub const DATABASE_URL_ENV: &str = "ICK_CONTROLLER_DATABASE_URL";

/// `ick-controller --config FILE`; see `deploy/config/controller.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen.
    pub http: HttpConfig,
    /// How tokens are checked.
    pub auth: AuthConfig,
    /// `postgres://…` (production; several controllers may share it) or
    /// `sqlite://FILE?mode=rwc` (one host). A URL with a password is a
    /// secret: prefer `database_url_file` or the environment variable
    /// `ICK_CONTROLLER_DATABASE_URL` (which wins).
    #[serde(default)]
    pub database_url: Option<Secret>,
    /// A file holding the database URL.
    #[serde(default)]
    pub database_url_file: Option<PathBuf>,
    /// Largest number of database connections (default 10; SQLite uses 4).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long a request waits for a database connection before it is
    /// answered 503 with `Retry-After` (default 5 s): with the database
    /// away, callers hear so instead of hanging.
    #[serde(default = "default_acquire_timeout", with = "humantime_serde")]
    pub database_acquire_timeout: Duration,
    /// The work queue.
    #[serde(default)]
    pub work: WorkConfig,
    /// Builds.
    #[serde(default)]
    pub builds: BuildsConfig,
    /// The controller's URL as people reach it (e.g. behind a proxy),
    /// for links in mail, e.g. `https://ick.example.org`. Needed with `mail`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Web hooks from git servers.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// Mail about how builds ended; without it, nothing is sent (the
    /// notifications wait in the outbox).
    #[serde(default)]
    pub mail: Option<MailConfig>,
    /// Members that are always global `admin`, e.g. `[client:ick-admin]`
    /// or `[group:ops]`: the first admins, who grant every other role.
    /// They cannot be revoked through the API (default none).
    #[serde(default)]
    pub admins: Vec<Member>,
}

/// `webhooks:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Largest web hook body, in bytes; larger ones are refused with 413
    /// (default 5 MiB: a push of many commits is a few hundred KiB).
    #[serde(default = "default_webhook_max_body")]
    pub max_body: usize,
    /// Requests with a wrong signature allowed from one peer address in
    /// `failure_window` (default 20); after that, 429 until it ends.
    #[serde(default = "default_max_failed_signatures")]
    pub max_failed_signatures: u32,
    /// The window of `max_failed_signatures` (default 1 minute).
    #[serde(default = "default_failure_window", with = "humantime_serde")]
    pub failure_window: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            max_body: default_webhook_max_body(),
            max_failed_signatures: default_max_failed_signatures(),
            failure_window: default_failure_window(),
        }
    }
}

/// How to reach the mail server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// Plain SMTP (a relay on the same host or network).
    None,
    /// Plain SMTP upgraded with STARTTLS, which is required (submission, port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// `mail:` — the SMTP server that sends notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The SMTP server's host name.
    pub host: String,
    /// Its port (default 25 for `tls: none`, 587 for `starttls`, 465 for `tls`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `none`, `starttls` (default) or `tls`.
    #[serde(default)]
    pub tls: MailTls,
    /// The user to log in as; without it, no login.
    #[serde(default)]
    pub username: Option<String>,
    /// The password, inline (prefer `password_file` or the environment
    /// variable `ICK_CONTROLLER_SMTP_PASSWORD`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The sender, e.g. `Ick <ick@example.org>`.
    pub from: String,
    /// PEM certificates to trust besides the system's, for a mail server
    /// with a certificate of a private CA (`starttls` and `tls` only).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long one SMTP exchange may take (default 30 s).
    #[serde(default = "default_mail_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The wait after a first failed try; it doubles after each (default 30 s).
    #[serde(default = "default_mail_retry", with = "humantime_serde")]
    pub retry: Duration,
    /// The longest wait between tries (default 1 h).
    #[serde(default = "default_mail_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// Tries before a notification is kept as failed (default 10: about
    /// four hours with the defaults).
    #[serde(default = "default_mail_attempts")]
    pub max_attempts: u32,
    /// How often the outbox is looked at for notifications written by
    /// other controllers or due for another try (default 5 s).
    #[serde(default = "default_mail_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl MailConfig {
    /// The port, with the default of the TLS mode.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            MailTls::None => 25,
            MailTls::Starttls => 587,
            MailTls::Tls => 465,
        })
    }

    /// The password: the environment variable, else the file, else inline.
    pub fn password(&self) -> anyhow::Result<Option<Secret>> {
        ick_api::secret::resolve(
            "mail.password",
            self.password.as_ref(),
            self.password_file.as_deref(),
            SMTP_PASSWORD_ENV,
        )
    }

    /// How long a sender holds a claimed notification: longer than a send
    /// can take, so that no other sender takes it meanwhile.
    pub fn lease(&self) -> Duration {
        self.timeout * 4
    }

    /// Refuses a half-configured mail section (`public_url` is the
    /// controller's, which links in mail need).
    pub fn check(&self, public_url: Option<&str>) -> anyhow::Result<()> {
        if self.host.trim().is_empty() {
            anyhow::bail!("mail.host is empty");
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            anyhow::bail!(
                "mail.from {:?} is not an email address (e.g. \"Ick <ick@example.org>\")",
                self.from
            );
        }
        let has_password = self.password.is_some()
            || self.password_file.is_some()
            || std::env::var(SMTP_PASSWORD_ENV).is_ok_and(|v| !v.is_empty());
        match (&self.username, has_password) {
            (Some(_), false) => anyhow::bail!(
                "mail.username is set but no password: give mail.password_file (or {SMTP_PASSWORD_ENV})"
            ),
            (None, true) => anyhow::bail!("a mail password is set but no mail.username"),
            (Some(_), true) if self.tls == MailTls::None => anyhow::bail!(
                "mail.tls is none: the password would cross the network in clear; use starttls or tls"
            ),
            _ => {}
        }
        self.password()?;
        if let Some(ca) = &self.ca_file {
            if self.tls == MailTls::None {
                anyhow::bail!("mail.ca_file is for a TLS connection, but mail.tls is none");
            }
            let pem = std::fs::read_to_string(ca)
                .map_err(|e| anyhow::anyhow!("cannot read mail.ca_file {}: {e}", ca.display()))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                anyhow::bail!("mail.ca_file {} holds no PEM certificate", ca.display());
            }
        }
        if public_url.is_none() {
            anyhow::bail!(
                "mail needs public_url, the controller's URL as people reach it, for the links in mail"
            );
        }
        if self.timeout < Duration::from_millis(100) {
            anyhow::bail!("mail.timeout must be at least 100ms");
        }
        if self.retry < Duration::from_millis(10) || self.retry_max < self.retry {
            anyhow::bail!(
                "mail.retry must be at least 10ms, and mail.retry_max at least mail.retry"
            );
        }
        if self.max_attempts == 0 {
            anyhow::bail!("mail.max_attempts must be at least 1");
        }
        if self.poll_interval < Duration::from_millis(10) {
            anyhow::bail!("mail.poll_interval must be at least 10ms");
        }
        Ok(())
    }
}

/// `work:` — leases and workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkConfig {
    /// A claimed action's lease; workers renew it every third of it, and
    /// at least every 2 s (default 15 s). A worker that dies outright is
    /// found sooner, by its dropped presence connection.
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
    /// A worker whose presence connection dropped (its process died, or
    /// the network between) has this long to open it again before its
    /// running actions start over elsewhere (default 5 s); one that said it
    /// left has as long to come back to the pipelines waiting for it.
    #[serde(default = "default_reconnect_grace", with = "humantime_serde")]
    pub reconnect_grace: Duration,
}

impl Default for WorkConfig {
    fn default() -> Self {
        WorkConfig {
            lease: default_lease(),
            max_attempts: default_max_attempts(),
            worker_timeout: default_worker_timeout(),
            reap_interval: default_reap_interval(),
            reconnect_grace: default_reconnect_grace(),
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
fn default_acquire_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_lease() -> Duration {
    Duration::from_secs(15)
}
fn default_reconnect_grace() -> Duration {
    Duration::from_secs(5)
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
fn default_webhook_max_body() -> usize {
    5 * 1024 * 1024
}
fn default_max_failed_signatures() -> u32 {
    20
}
fn default_failure_window() -> Duration {
    Duration::from_secs(60)
}
fn default_mail_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_mail_retry() -> Duration {
    Duration::from_secs(30)
}
fn default_mail_retry_max() -> Duration {
    Duration::from_secs(3600)
}
fn default_mail_attempts() -> u32 {
    10
}
fn default_mail_poll() -> Duration {
    Duration::from_secs(5)
}

impl Config {
    /// Reads the file, applies environment overrides and checks the values.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let config: Config = ick_api::server::load_yaml(path)?;
        config.check()?;
        Ok(config)
    }

    /// The database URL: the environment variable, else the file, else
    /// inline.
    pub fn database_url(&self) -> anyhow::Result<Secret> {
        ick_api::secret::resolve(
            "database_url",
            self.database_url.as_ref(),
            self.database_url_file.as_deref(),
            DATABASE_URL_ENV,
        )?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no database: set database_url, database_url_file or {DATABASE_URL_ENV}"
            )
        })
    }

    /// Refuses values that cannot work.
    pub fn check(&self) -> anyhow::Result<()> {
        let url = self.database_url()?;
        let url = url.expose();
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
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            anyhow::bail!("public_url must start with http:// or https://");
        }
        if self.webhooks.max_body < 1024 {
            anyhow::bail!("webhooks.max_body must be at least 1024 bytes");
        }
        if self.webhooks.max_failed_signatures == 0 || self.webhooks.failure_window.is_zero() {
            anyhow::bail!(
                "webhooks.max_failed_signatures and webhooks.failure_window must be above 0"
            );
        }
        if let Some(mail) = &self.mail {
            mail.check(self.public_url.as_deref())?;
        }
        Ok(())
    }
}
