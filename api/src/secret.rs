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
/// `key` names the inline setting (the file's is `KEY_file`); both set is
/// refused, as which one is meant is unclear.
pub fn resolve(
    key: &str,
    value: Option<&Secret>,
    file: Option<&Path>,
    env: &str,
) -> anyhow::Result<Option<Secret>> {
    if value.is_some() && file.is_some() {
        anyhow::bail!("both {key} and {key}_file are set: keep one");
    }
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

/// `text` with the credentials of every URL in it (`scheme://user:token@host`,
/// and `https://token@host`) replaced by `***`: for log lines, mail and
/// views of parameters. A bare user name of another scheme
/// (`ssh://git@host`) is no secret and stays.
pub fn redact_urls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('@') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || "/?#'\"<>`".contains(c))
            .unwrap_or(after.len());
        let authority = &after[..end];
        let http = before.to_ascii_lowercase().ends_with("http://")
            || before.to_ascii_lowercase().ends_with("https://");
        match authority.rfind('@') {
            Some(userinfo) if http || authority[..userinfo].contains(':') => {
                out.push_str("***");
                out.push_str(&authority[userinfo..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Whether users other than the owner may read or write `path`.
pub fn open_to_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

/// Writes `bytes` to `path` with mode 0600 (it holds a secret), atomically:
/// a temporary file beside it, renamed over it, so that a reader never
/// sees half a file and a crash never loses the old one.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
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
    fn credentials_in_urls_are_redacted_and_the_rest_kept() {
        for (text, redacted) in [
            (
                "ick: fetching main of https://user:tok3n@git.example.org/a.git",
                "ick: fetching main of https://***@git.example.org/a.git",
            ),
            (
                "fatal: 'https://ghp_abc@github.com/o/r' and ssh://git@h:22/x",
                "fatal: 'https://***@github.com/o/r' and ssh://git@h:22/x",
            ),
            ("https://a:b@c", "https://***@c"),
            ("ssh://git:pw@h/x", "ssh://***@h/x"),
            ("no url, just me@example.org", "no url, just me@example.org"),
            (
                "https://host/path@v1 is fine",
                "https://host/path@v1 is fine",
            ),
            ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ] {
            assert_eq!(redact_urls(text), redacted, "{text}");
        }
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn the_file_is_read_trimmed_and_both_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("s");
        std::fs::write(&file, "from-file\n").expect("write");
        let env = "ICK_TEST_SECRET_UNSET_VARIABLE";
        let got = resolve("k", None, Some(&file), env).expect("resolves");
        assert_eq!(got.map(|s| s.0), Some("from-file".to_string()));
        let inline = Secret::new("inline");
        let got = resolve("k", Some(&inline), None, env).expect("resolves");
        assert_eq!(got.map(|s| s.0), Some("inline".to_string()));
        let both = resolve("k", Some(&inline), Some(&file), env).expect_err("both");
        assert_eq!(both.to_string(), "both k and k_file are set: keep one");
        std::fs::write(&file, "  \n").expect("write");
        assert!(resolve("k", None, Some(&file), env).is_err());
    }
}
