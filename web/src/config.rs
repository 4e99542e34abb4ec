//! `ick-web --config FILE`; see `deploy/config/web.yaml`.

use std::path::{Path, PathBuf};

use ick_api::Secret;
use ick_api::server::{HttpConfig, load_yaml};
use serde::Deserialize;

/// What people may do through the dashboard: their roles decide the rest.
const DEFAULT_SCOPES: &str = "openid projects:read builds:read builds:trigger builds:cancel";

/// Where the client secret may come from instead of a file.
pub const SECRET_ENV: &str = "ICK_WEB_CLIENT_SECRET";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen.
    pub http: HttpConfig,
    /// The URL browsers reach the dashboard at (links, and the login's
    /// return address `PUBLIC_URL/login/callback`); by default
    /// `http://LISTEN` (`https://` under TLS).
    #[serde(default)]
    pub public_url: Option<String>,
    /// The controller's base URL.
    pub controller: String,
    /// The IDP's base URL (its issuer).
    pub idp: String,
    /// The dashboard's client at the IDP, with the redirect URI
    /// `PUBLIC_URL/login/callback`.
    pub client_id: String,
    /// The client's secret, for a confidential client (recommended); a
    /// public client logs in with PKCE alone.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The key that seals session cookies: created (mode 0600) if missing.
    /// Several dashboards behind one address share it.
    pub session_key_file: PathBuf,
    /// The scopes asked for at login.
    #[serde(default = "default_scopes")]
    pub scopes: String,
}

fn default_scopes() -> String {
    DEFAULT_SCOPES.to_string()
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let config: Config = load_yaml(path)?;
        for (what, url) in [("controller", &config.controller), ("idp", &config.idp)] {
            url::Url::parse(url).map_err(|e| anyhow::anyhow!("{what} {url:?}: {e}"))?;
        }
        if let Some(public) = &config.public_url {
            url::Url::parse(public).map_err(|e| anyhow::anyhow!("public_url {public:?}: {e}"))?;
        }
        Ok(config)
    }

    /// The client secret, if the client is confidential.
    pub fn client_secret(&self) -> anyhow::Result<Option<Secret>> {
        ick_api::secret::resolve(
            "client_secret",
            None,
            self.client_secret_file.as_deref(),
            SECRET_ENV,
        )
    }
}
