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
    /// The controller's `mail:`, as in its own config: passed to it as
    /// written, and checked by `ick-controller --check` before `up` makes
    /// anything (icktool does not link the controller).
    #[serde(default)]
    pub mail: Option<serde_yaml::Mapping>,
    /// The controller's URL as people reach it, for the links in mail
    /// (default: its loopback URL).
    #[serde(default)]
    pub public_url: Option<String>,
}

impl UpConfig {
    /// Reads the file and checks its shape; the controller checks `mail:`.
    pub fn load(path: &Path) -> anyhow::Result<UpConfig> {
        let config: UpConfig = ick_api::server::load_yaml(path).with_context(|| {
            format!(
                "{} is not an `icktool up` config (a YAML with `mail:`, and \
                 optionally `public_url:`)",
                path.display()
            )
        })?;
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
