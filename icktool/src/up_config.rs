//! `icktool up --config FILE`: the settings of the services `up` runs that
//! a one-host user may want, in the keys of the services' own configs.
//! Everything else `up` decides (ports, folders, clients).

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// The file `up --config` reads, e.g.
///
/// ```yaml
/// mail: {host: smtp.example.org, from: "Ick <ick@example.org>"}
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpConfig {
    /// The controller's `mail:`, as in its own config.
    #[serde(default)]
    pub mail: Option<ick_controller::config::MailConfig>,
    /// The controller's URL as people reach it, for the links in mail
    /// (default: its loopback URL).
    #[serde(default)]
    pub public_url: Option<String>,
}

impl UpConfig {
    /// Reads and checks the file, so that a mistake is refused before
    /// `up` makes anything.
    pub fn load(path: &Path) -> anyhow::Result<UpConfig> {
        let config: UpConfig = ick_api::server::load_yaml(path).with_context(|| {
            format!(
                "{} is not an `icktool up` config (a YAML with `mail:`, and \
                 optionally `public_url:`)",
                path.display()
            )
        })?;
        if let Some(mail) = &config.mail {
            // The loopback URL stands in for a missing public_url.
            let public_url = config.public_url.as_deref().unwrap_or("http://127.0.0.1");
            mail.check(Some(public_url))
                .with_context(|| format!("in {}", path.display()))?;
        }
        if let Some(url) = &config.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            anyhow::bail!(
                "{}: public_url must start with http:// or https://",
                path.display()
            );
        }
        Ok(config)
    }
}
