//! The clients `up` makes at the IDP before it serves: no token exists yet
//! to ask its API with, so through `ick-idp client issue` (the IDP's own
//! binary, on its own store).

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};
use ick_api::{ScopeSet, Secret};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The IDP's binary and config, for its client commands.
pub struct IdpClients<'a> {
    pub binary: &'a Path,
    pub config: &'a Path,
}

impl IdpClients<'_> {
    /// Runs `ick-idp --config FILE client ARGS…` with `stdin`; answers its
    /// stdout.
    async fn run(&self, args: &[&str], stdin: Option<&Secret>) -> anyhow::Result<String> {
        let mut child = Command::new(self.binary)
            .arg("--config")
            .arg(self.config)
            .arg("client")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        if let (Some(secret), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(format!("{}\n", secret.expose()).as_bytes())
                .await?;
        }
        let output = child.wait_with_output().await?;
        if !output.status.success() {
            bail!(
                "`ick-idp client {}` failed ({}): {}",
                args.first().copied().unwrap_or_default(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Client `name` with `scopes` (and a worker name): the one with
    /// `keep`'s secret if it still has it (then `None` for the secret),
    /// else with a new secret.
    pub async fn issue(
        &self,
        name: &str,
        scopes: &ScopeSet,
        worker_name: Option<&str>,
        keep: Option<&Secret>,
    ) -> anyhow::Result<(String, Option<Secret>)> {
        let scopes = scopes.to_string();
        let mut args = vec!["issue", name, "--scope", &scopes];
        if let Some(worker) = worker_name {
            args.extend(["--worker-name", worker]);
        }
        if keep.is_some() {
            args.push("--keep-secret-stdin");
        }
        let out = self.run(&args, keep).await?;
        let field = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        let id = field("client_id:").context("`ick-idp client issue` printed no client_id")?;
        Ok((id, field("client_secret:").map(Secret::new)))
    }

    /// Client `name` with `scopes` for a browser login coming back to
    /// `redirect_uri`, with a new secret.
    pub async fn issue_with_redirect(
        &self,
        name: &str,
        scopes: &ScopeSet,
        redirect_uri: &str,
    ) -> anyhow::Result<(String, Secret)> {
        let scopes = scopes.to_string();
        let out = self
            .run(
                &[
                    "issue",
                    name,
                    "--scope",
                    &scopes,
                    "--redirect-uri",
                    redirect_uri,
                ],
                None,
            )
            .await?;
        let field = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        let id = field("client_id:").context("`ick-idp client issue` printed no client_id")?;
        let secret = field("client_secret:").context("`ick-idp client issue` printed no secret")?;
        Ok((id, Secret::new(secret)))
    }

    /// The public client `name` with the device grant and `scopes` (made,
    /// or kept with these scopes); answers its id.
    pub async fn device(&self, name: &str, scopes: &ScopeSet) -> anyhow::Result<String> {
        let scopes = scopes.to_string();
        let out = self
            .run(&["issue", name, "--scope", &scopes, "--device"], None)
            .await?;
        out.lines()
            .find_map(|l| l.strip_prefix("client_id:"))
            .map(|v| v.trim().to_string())
            .context("`ick-idp client issue --device` printed no client_id")
    }

    /// Deletes client `name`, if there is one.
    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.run(&["delete", name], None).await.map(|_| ())
    }
}
