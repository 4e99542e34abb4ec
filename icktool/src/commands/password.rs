//! Where a password comes from: a prompt without echo, a file (mode 0600)
//! or stdin; never an argument, which other users see in `ps` and shells
//! keep in their history.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ick_api::Secret;

/// `--password-file` and `--password-stdin`; with neither, a prompt.
#[derive(clap::Args, Debug, Clone)]
pub struct PasswordSource {
    /// Read the password from FILE (its first line; mode 0600 or stricter).
    #[arg(long, value_name = "FILE", conflicts_with = "password_stdin")]
    pub password_file: Option<PathBuf>,
    /// Read the password from standard input (its first line).
    #[arg(long)]
    pub password_stdin: bool,
}

/// The first line of `text`, without its line ending.
fn first_line(text: &str) -> &str {
    text.split('\n').next().unwrap_or("").trim_end_matches('\r')
}

fn from_file(path: &Path) -> anyhow::Result<Secret> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "the password file {} can be read by others (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    Ok(Secret::new(first_line(&text)))
}

impl PasswordSource {
    /// The password, from where it was said to come. A prompt asks twice
    /// when `confirm` (a new password must be typed right).
    pub fn read(&self, prompt: &str, confirm: bool) -> anyhow::Result<Secret> {
        let password = if let Some(path) = &self.password_file {
            from_file(path)?
        } else if self.password_stdin {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the password from stdin")?;
            Secret::new(first_line(&text))
        } else {
            let ask = |p: &str| {
                rpassword::prompt_password(p).context(
                    "no terminal to ask for the password on: use --password-file or --password-stdin",
                )
            };
            let first = ask(prompt)?;
            if confirm && ask("Again: ")? != first {
                bail!("the two passwords differ; nothing was changed");
            }
            Secret::new(first)
        };
        if password.expose().is_empty() {
            bail!("the password is empty");
        }
        Ok(password)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_line_is_the_password() {
        assert_eq!(first_line("s3cret pass\n"), "s3cret pass");
        assert_eq!(first_line("s3cret\r\nmore"), "s3cret");
        assert_eq!(first_line("  spaced  "), "  spaced  ");
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "correct horse\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = from_file(&path).expect_err("refused").to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(from_file(&path).expect("read").expose(), "correct horse");
    }
}
