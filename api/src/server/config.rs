use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The `http:` section of every service's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Serve HTTPS with these files instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Largest request body accepted, in bytes (default 1 MiB); streaming
    /// endpoints (blobs) have their own limit.
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
}

fn default_body_limit() -> usize {
    1024 * 1024
}

impl HttpConfig {
    /// Plain HTTP on `listen` with the default body limit.
    pub fn plain(listen: SocketAddr) -> Self {
        HttpConfig {
            listen,
            tls: None,
            body_limit: default_body_limit(),
        }
    }
}

/// PEM files for TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Reads a YAML config file into `T`; errors name the file, line and column.
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| match e.location() {
        Some(at) => anyhow::anyhow!("{}:{}:{}: {e}", path.display(), at.line(), at.column()),
        None => anyhow::anyhow!("{}: {e}", path.display()),
    })
}
