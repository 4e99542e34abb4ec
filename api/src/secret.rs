//! Secrets that must never reach a log line.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A secret string whose `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send or hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Finds a secret: the environment variable `env` wins, then `file` (its
/// content with surrounding whitespace trimmed), then the inline `value`.
pub fn resolve(
    value: Option<&Secret>,
    file: Option<&Path>,
    env: &str,
) -> anyhow::Result<Option<Secret>> {
    if let Ok(from_env) = std::env::var(env)
        && !from_env.is_empty()
    {
        return Ok(Some(Secret(from_env)));
    }
    if let Some(file) = file {
        if open_to_others(file) {
            tracing::warn!(file = %file.display(), "secret file is readable by others: chmod 600 it");
        }
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read secret file {}: {e}", file.display()))?;
        let text = text.trim();
        if text.is_empty() {
            anyhow::bail!("secret file {} is empty", file.display());
        }
        return Ok(Some(Secret(text.to_string())));
    }
    Ok(value.cloned())
}

/// Whether users other than the owner may read or write `path`.
pub fn open_to_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_others_may_read_is_open_to_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "s").expect("write");
        for (mode, open) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            assert_eq!(open_to_others(&path), open, "mode {mode:o}");
        }
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn file_wins_over_inline_value_and_is_trimmed() {
        let dir = std::env::temp_dir().join(format!("ick-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("s");
        std::fs::write(&file, "from-file\n").expect("write");
        let inline = Secret::new("inline");
        let got = resolve(Some(&inline), Some(&file), "ICK_TEST_SECRET_UNSET_VARIABLE")
            .expect("resolves");
        assert_eq!(got.map(|s| s.0), Some("from-file".to_string()));
        std::fs::write(&file, "  \n").expect("write");
        assert!(resolve(None, Some(&file), "ICK_TEST_SECRET_UNSET_VARIABLE").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
