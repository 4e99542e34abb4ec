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
/// A config that holds a secret inline and that others may read is
/// warned about (naming the settings, never their values).
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let config = serde_yaml::from_str(&text).map_err(|e| match e.location() {
        Some(at) => anyhow::anyhow!("{}:{}:{}: {e}", path.display(), at.line(), at.column()),
        None => anyhow::anyhow!("{}: {e}", path.display()),
    })?;
    if crate::secret::open_to_others(path)
        && let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(&text)
    {
        let found = inline_secrets(&value, "");
        if !found.is_empty() {
            tracing::warn!(
                file = %path.display(),
                settings = %found.join(", "),
                "the config holds secrets and others may read it: chmod 600 it, or move them to *_file settings"
            );
        }
    }
    Ok(config)
}

/// The settings (dotted paths) holding a secret inline: a non-empty
/// `*secret`, `*secret_access_key` or `password` value, or a URL with a
/// password in it.
fn inline_secrets(value: &serde_yaml::Value, at: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Some(map) = value.as_mapping() else {
        return found;
    };
    for (key, value) in map {
        let Some(key) = key.as_str() else { continue };
        let path = if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        };
        match value {
            serde_yaml::Value::Mapping(_) => found.extend(inline_secrets(value, &path)),
            serde_yaml::Value::String(text) if !text.is_empty() => {
                let secret_key = key.ends_with("secret")
                    || key.ends_with("secret_access_key")
                    || key == "password";
                if secret_key || url_with_password(text) {
                    found.push(path);
                }
            }
            _ => {}
        }
    }
    found
}

fn url_with_password(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| u.password().is_some_and(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_secrets_are_found_by_setting_not_value() {
        let value: serde_yaml::Value = serde_yaml::from_str(
            "idp: {client_id: c, client_secret: s3cret, client_secret_file: null}\n\
             mail: {password: hunter2, password_file: /etc/pw}\n\
             storage: {s3: {secret_access_key: k}}\n\
             database_url: postgres://ick:pw@db/ick\n\
             other_url: postgres://ick@db/ick\n\
             name: w1\n",
        )
        .expect("yaml");
        assert_eq!(
            inline_secrets(&value, ""),
            [
                "idp.client_secret",
                "mail.password",
                "storage.s3.secret_access_key",
                "database_url"
            ]
        );
        let clean: serde_yaml::Value =
            serde_yaml::from_str("idp: {client_secret_file: /etc/s}\nname: w1\n").expect("yaml");
        assert!(inline_secrets(&clean, "").is_empty());
    }
}
