//! icktool's config file: where the services are and who we are.
//!
//! ```yaml
//! controller: http://127.0.0.1:7420
//! idp: http://127.0.0.1:7421
//! artifact_store: http://127.0.0.1:7422
//! client_id: 0b6c…
//! client_secret: zZ3…            # or client_secret_file: /path/to/secret
//! login_client_id: 5f1e…         # the public client `icktool login` uses
//! ```
//!
//! Without `client_id`, a person's login (`icktool login`, kept in
//! `tokens.json` beside the default config) is used instead; without a
//! config file at the default place, that login's URLs too.
//!
//! Found at `--config`, `ICKTOOL_CONFIG`, or
//! `$XDG_CONFIG_HOME/icktool/config.yaml` (`~/.config/icktool/config.yaml`).
//! The environment wins over the file: `ICKTOOL_CONTROLLER`, `ICKTOOL_IDP`,
//! `ICKTOOL_ARTIFACT_STORE`, `ICKTOOL_CLIENT_ID`, `ICKTOOL_CLIENT_SECRET`.

use std::path::{Path, PathBuf};

use anyhow::bail;
use ick_api::Secret;
use serde::{Deserialize, Serialize};

use crate::tokens::Login;

/// Environment variable holding the client secret (wins over the file).
pub const SECRET_ENV: &str = "ICKTOOL_CLIENT_SECRET";

/// The file as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The controller's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The IDP's base URL (its token endpoint is `/token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    /// The artifact store's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_store: Option<String>,
    /// The OAuth2 client to get tokens as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Its secret, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// Its secret, in a file (relative to the config file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// The public client (with the device grant) `icktool login` logs
    /// people in through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_client_id: Option<String>,
}

/// Who the commands act as.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A machine: a client and its secret (wins over a person's login).
    Client { id: String, secret: Secret },
    /// A person who ran `icktool login`: their tokens, kept in `file`.
    Person { file: PathBuf, login: Login },
}

/// A config with every value resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where it was read from.
    pub path: PathBuf,
    pub controller: Option<String>,
    pub idp: String,
    pub artifact_store: Option<String>,
    pub identity: Identity,
}

impl Settings {
    /// The client the tokens are got through.
    pub fn client_id(&self) -> &str {
        match &self.identity {
            Identity::Client { id, .. } => id,
            Identity::Person { login, .. } => &login.client_id,
        }
    }
}

/// `$XDG_CONFIG_HOME/icktool`, or `~/.config/icktool`.
pub fn config_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("icktool")
}

/// `$XDG_CONFIG_HOME/icktool/config.yaml`, or `~/.config/icktool/config.yaml`.
pub fn default_path() -> PathBuf {
    config_dir().join("config.yaml")
}

pub use ick_api::secret::write_private;

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl ConfigFile {
    /// Reads a config file; errors name the file, and the line and column
    /// of a YAML mistake.
    pub fn read(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no icktool config at {}: pass --config FILE or set ICKTOOL_CONFIG \
                 (`icktool up` writes one to .ick/icktool.yaml)",
                path.display()
            ),
            Err(e) => bail!("cannot read the config file {}: {e}", path.display()),
        };
        if text.trim().is_empty() {
            return Ok(ConfigFile::default());
        }
        serde_yaml::from_str(&text).map_err(|e| match e.location() {
            Some(at) => anyhow::anyhow!("{}:{}:{}: {e}", path.display(), at.line(), at.column()),
            None => anyhow::anyhow!("{}: {e}", path.display()),
        })
    }

    /// Writes the file with mode 0600 (it may hold a secret), atomically:
    /// a temporary file beside it, renamed over it.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = String::from(
            "# icktool's config: service URLs and a client that gets tokens.\n\
             # It holds a secret: keep it mode 0600.\n",
        );
        text.push_str(&serde_yaml::to_string(self)?);
        write_private(path, text.as_bytes())
    }

    /// Resolves the file (read from `path`) with the environment.
    pub fn resolve(self, path: &Path) -> anyhow::Result<Settings> {
        self.resolve_with(path, None)
    }

    /// The same, with a person's `login` (from `file`) to fall back on
    /// when no client is configured: its URLs fill in those not given.
    pub fn resolve_with(
        self,
        path: &Path,
        person: Option<(PathBuf, Login)>,
    ) -> anyhow::Result<Settings> {
        let from_env = |name: &str, value: Option<String>| env(name).or(value);
        let client_id = from_env("ICKTOOL_CLIENT_ID", self.client_id);
        let person = person.filter(|_| client_id.is_none());
        let (login_controller, login_store, login_idp) = match &person {
            Some((_, login)) => (
                login.controller.clone(),
                login.artifact_store.clone(),
                Some(login.idp.clone()),
            ),
            None => (None, None, None),
        };
        let controller = from_env("ICKTOOL_CONTROLLER", self.controller.or(login_controller));
        let artifact_store = from_env(
            "ICKTOOL_ARTIFACT_STORE",
            self.artifact_store.or(login_store),
        );
        let Some(idp) = from_env("ICKTOOL_IDP", self.idp.or(login_idp)) else {
            bail!(
                "{} names no `idp` (the IDP's URL, e.g. http://127.0.0.1:7421)",
                path.display()
            );
        };
        if let Some((file, login)) = person {
            return Ok(Settings {
                path: path.to_path_buf(),
                controller,
                idp,
                artifact_store,
                identity: Identity::Person { file, login },
            });
        }
        let Some(client_id) = client_id else {
            bail!(
                "{} names no `client_id`, and no one is logged in: run `icktool login`",
                path.display()
            );
        };
        let secret_file = self.client_secret_file.map(|file| beside(path, &file));
        let secret = ick_api::secret::resolve(
            "client_secret",
            self.client_secret.as_ref(),
            secret_file.as_deref(),
            SECRET_ENV,
        )?;
        let Some(client_secret) = secret else {
            bail!(
                "{} has no `client_secret` (nor `client_secret_file`), and {SECRET_ENV} is not set",
                path.display()
            );
        };
        Ok(Settings {
            path: path.to_path_buf(),
            controller,
            idp,
            artifact_store,
            identity: Identity::Client {
                id: client_id,
                secret: client_secret,
            },
        })
    }
}

/// `file` as named in the config at `config`: relative to its directory.
fn beside(config: &Path, file: &Path) -> PathBuf {
    config.parent().unwrap_or(Path::new(".")).join(file)
}

/// Loads the settings from `explicit` (or the default path), warning on
/// stderr when a file holding a secret is readable by others.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<Settings> {
    let path = explicit.map(Path::to_path_buf).unwrap_or_else(default_path);
    let tokens = crate::tokens::path();
    let person = crate::tokens::read(&tokens)?.map(|login| (tokens, login));
    // A person logged in needs no config file at the default place.
    if explicit.is_none() && person.is_some() && !path.exists() {
        return ConfigFile::default().resolve_with(&path, person);
    }
    let file = ConfigFile::read(&path)?;
    let holder = match &file.client_secret_file {
        Some(secret_file) => Some(beside(&path, secret_file)),
        None => file.client_secret.is_some().then(|| path.clone()),
    };
    if let Some(holder) = holder.filter(|h| ick_api::secret::open_to_others(h)) {
        eprintln!(
            "warning: {} holds a secret and others may read it: chmod 600 {}",
            holder.display(),
            holder.display()
        );
    }
    file.resolve_with(&path, person)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_config_is_private_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/icktool.yaml");
        let file = ConfigFile {
            controller: Some("http://127.0.0.1:7420".into()),
            idp: Some("http://127.0.0.1:7421".into()),
            artifact_store: None,
            client_id: Some("abc".into()),
            client_secret: Some(Secret::new("s3cret")),
            client_secret_file: None,
            login_client_id: None,
        };
        file.write(&path).expect("written");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(ConfigFile::read(&path).expect("reads"), file);
    }

    #[test]
    fn yaml_mistakes_name_file_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "idp: http://x\ncontroler: http://y\n").expect("write");
        let err = ConfigFile::read(&path).expect_err("refused").to_string();
        assert!(err.contains("c.yaml:2:1"), "{err}");
        assert!(err.contains("controler"), "{err}");
        let missing = ConfigFile::read(&dir.path().join("none.yaml")).expect_err("missing");
        assert!(missing.to_string().contains("ICKTOOL_CONFIG"), "{missing}");
    }

    #[test]
    fn secret_file_is_relative_to_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("secret"), "from-file\n").expect("write");
        let file = ConfigFile {
            idp: Some("http://i".into()),
            client_id: Some("c".into()),
            client_secret_file: Some("secret".into()),
            ..ConfigFile::default()
        };
        let settings = file
            .resolve(&dir.path().join("icktool.yaml"))
            .expect("resolves");
        match settings.identity {
            Identity::Client { secret, .. } => assert_eq!(secret.expose(), "from-file"),
            other => panic!("not a client: {other:?}"),
        }
    }
}
