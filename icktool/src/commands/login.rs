//! `icktool login`, `icktool logout`: a person's login by the device
//! authorization grant (RFC 8628). The person opens a URL in any browser,
//! on any machine, types the code shown, logs in and approves; the tokens
//! are kept in `tokens.json` (mode 0600) and renewed as needed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ick_api::oauth::{
    DEVICE_CODE_GRANT, DISCOVERY_PATH, DeviceAuthorizationResponse, DiscoveryDocument,
    OAuthErrorResponse, REVOKE_PATH,
};
use ick_api::{PersonTokens, TokenError, post_token_form};

use crate::Exit;
use crate::config::{ConfigFile, default_path};
use crate::connection::{chain, read_json};
use crate::tokens::{self, Login};

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The IDP's URL [default: the config's `idp`].
    #[arg(long, value_name = "URL")]
    idp: Option<String>,
    /// The controller's URL, kept with the login [default: the config's].
    #[arg(long, value_name = "URL")]
    controller: Option<String>,
    /// The public client with the device grant to log in through
    /// [default: the config's `login_client_id`].
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
}

/// The config file, if there is one: an explicit one must exist.
fn config_file(config: Option<&Path>) -> anyhow::Result<ConfigFile> {
    match config {
        Some(path) => ConfigFile::read(path),
        None if default_path().exists() => ConfigFile::read(&default_path()),
        None => Ok(ConfigFile::default()),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

pub async fn login(config: Option<&Path>, args: LoginArgs) -> anyhow::Result<Exit> {
    let file = config_file(config)?;
    let Some(idp) = args.idp.or_else(|| env("ICKTOOL_IDP")).or(file.idp) else {
        bail!("which IDP? pass --idp URL, or set `idp` in the config");
    };
    let controller = args
        .controller
        .or_else(|| env("ICKTOOL_CONTROLLER"))
        .or(file.controller);
    let Some(client_id) = args.client_id.or(file.login_client_id) else {
        bail!(
            "which client to log in through? pass --client-id ID (a public client with the \
             device grant: `icktool up` makes one named icktool; an admin makes one with \
             `icktool client create icktool --public --device --scope …`), or set \
             `login_client_id` in the config"
        );
    };
    let http = ick_api::http::client();
    let discovery_url = ick_api::http::join(&idp, DISCOVERY_PATH);
    let discovery: DiscoveryDocument = read_json(
        http.get(&discovery_url)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the IDP at {idp}: {}", chain(&e)))?
            .error_for_status()
            .map_err(|e| anyhow::anyhow!("no discovery document at {discovery_url}: {e}"))?,
    )
    .await?;
    let Some(device_endpoint) = discovery.device_authorization_endpoint else {
        bail!("the IDP at {idp} does not offer the device grant (RFC 8628)");
    };
    let response = http
        .post(&device_endpoint)
        .form(&[("client_id", client_id.as_str())])
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the IDP at {device_endpoint}: {}", chain(&e)))?;
    if !response.status().is_success() {
        let status = response.status();
        let refusal: Option<OAuthErrorResponse> = response.json().await.ok();
        let why = refusal
            .map(|r| format!("{} ({})", r.error, r.error_description.unwrap_or_default()))
            .unwrap_or_else(|| format!("HTTP {status}"));
        bail!("the IDP refused to start a login through client {client_id}: {why}");
    }
    let started: DeviceAuthorizationResponse = read_json(response).await?;
    eprintln!(
        "Open {} and enter the code {}",
        started.verification_uri, started.user_code
    );
    if let Some(complete) = &started.verification_uri_complete {
        eprintln!("(or open {complete})");
    }
    let machine = file.client_id.is_some() || env("ICKTOOL_CLIENT_ID").is_some();
    let tokens = poll(&http, &discovery.token_endpoint, &client_id, &started).await?;
    let login = Login {
        idp,
        client_id,
        controller,
        artifact_store: file.artifact_store,
        tokens,
    };
    let path = tokens::path();
    tokens::write(&path, &login)?;
    eprintln!("Logged in; the tokens are kept in {}", path.display());
    if machine {
        eprintln!(
            "Note: a client_id is configured, so commands keep acting as that client; \
             remove it (or use another config) to act as yourself."
        );
    }
    Ok(Exit::Ok)
}

/// Polls the token endpoint at the interval (5 s longer after each
/// `slow_down`) until the person approves or denies, or the code expires.
async fn poll(
    http: &reqwest::Client,
    token_url: &str,
    client_id: &str,
    started: &DeviceAuthorizationResponse,
) -> anyhow::Result<PersonTokens> {
    let mut interval = Duration::from_secs(started.interval.max(1));
    let deadline = Instant::now() + Duration::from_secs(started.expires_in) + interval;
    let form = [
        ("grant_type", DEVICE_CODE_GRANT),
        ("device_code", started.device_code.as_str()),
        ("client_id", client_id),
    ];
    loop {
        tokio::time::sleep(interval).await;
        match post_token_form(http, token_url, &form).await {
            Ok(response) => {
                return PersonTokens::from_response(&response)
                    .context("the IDP answered no refresh token");
            }
            Err(TokenError::Refused { error, .. }) if error == "authorization_pending" => {}
            Err(TokenError::Refused { error, .. }) if error == "slow_down" => {
                interval += Duration::from_secs(5);
            }
            Err(TokenError::Refused { error, .. }) if error == "access_denied" => {
                bail!("the login was denied in the browser");
            }
            Err(TokenError::Refused { error, .. }) if error == "expired_token" => {
                bail!("the code expired before anyone approved it: run icktool login again");
            }
            Err(e) => bail!("the login failed: {e}"),
        }
        if Instant::now() > deadline {
            bail!("the code expired before anyone approved it: run icktool login again");
        }
    }
}

pub async fn logout() -> anyhow::Result<Exit> {
    let path = tokens::path();
    let Some(login) = tokens::read(&path)? else {
        eprintln!("Not logged in.");
        return Ok(Exit::Ok);
    };
    let http = ick_api::http::client();
    let url = ick_api::http::join(&login.idp, REVOKE_PATH);
    let revoked = http
        .post(&url)
        .form(&[
            ("token", login.tokens.refresh_token.expose()),
            ("token_type_hint", "refresh_token"),
            ("client_id", login.client_id.as_str()),
        ])
        .send()
        .await;
    match revoked {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => bail!(
            "the IDP at {} refused to revoke the login ({}); the tokens stay in {}",
            login.idp,
            r.status(),
            path.display()
        ),
        Err(e) => bail!(
            "cannot reach the IDP at {url}: {}; the tokens stay in {}",
            chain(&e),
            path.display()
        ),
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    eprintln!("Logged out.");
    Ok(Exit::Ok)
}
