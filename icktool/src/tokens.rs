//! A person's login, kept between runs in `tokens.json` beside the default
//! config (mode 0600, written atomically): the tokens, and the IDP, client
//! and services they are for.

use std::path::{Path, PathBuf};

use anyhow::bail;
use ick_api::PersonTokens;
use serde::{Deserialize, Serialize};

/// `tokens.json` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The IDP that issued the tokens.
    pub idp: String,
    /// The public client they were issued to.
    pub client_id: String,
    /// The controller given at login, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The artifact store given at login, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_store: Option<String>,
    /// Access token, refresh token and expiry.
    #[serde(flatten)]
    pub tokens: PersonTokens,
}

/// `$XDG_CONFIG_HOME/icktool/tokens.json` (or `~/.config/icktool/`).
pub fn path() -> PathBuf {
    crate::config::config_dir().join("tokens.json")
}

/// The login kept at `path`, if there is one.
pub fn read(path: &Path) -> anyhow::Result<Option<Login>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    };
    match serde_json::from_slice(&bytes) {
        Ok(login) => Ok(Some(login)),
        Err(e) => bail!(
            "{} is not a login icktool wrote ({e}): run `icktool login` again",
            path.display()
        ),
    }
}

/// Keeps `login` at `path`, mode 0600, atomically.
pub fn write(path: &Path, login: &Login) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(login)?;
    text.push(b'\n');
    crate::config::write_private(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ick_api::Secret;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_login_is_private_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("icktool/tokens.json");
        assert!(read(&path).expect("no file is no login").is_none());
        let login = Login {
            idp: "http://127.0.0.1:7421".into(),
            client_id: "c".into(),
            controller: None,
            artifact_store: None,
            tokens: PersonTokens {
                access_token: Secret::new("a"),
                refresh_token: Secret::new("r"),
                expires_at: 42,
            },
        };
        write(&path, &login).expect("written");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = read(&path).expect("reads").expect("a login");
        assert_eq!(back.tokens, login.tokens);
        std::fs::write(&path, "{").expect("write");
        let e = read(&path).expect_err("garbage").to_string();
        assert!(e.contains("icktool login"), "{e}");
    }
}
