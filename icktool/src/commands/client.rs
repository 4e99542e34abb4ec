//! `icktool client …`: the IDP's admin API (scope `idp:admin`). A secret is
//! printed only by `create` and `rotate`, the two commands that make one.

use std::path::PathBuf;

use ick_api::ScopeSet;
use ick_api::oauth::{ClientInfo, ClientWithSecret, CreateClient, UpdateClient};
use reqwest::Method;

use crate::Exit;
use crate::config::ConfigFile;
use crate::connection::{Ick, Service, segment};
use crate::output::Out;

#[derive(clap::Subcommand)]
pub enum ClientCommand {
    /// Create a client; its secret is printed once.
    Create {
        /// A unique name.
        name: String,
        /// A scope it may ask for (repeat, or separate with spaces), e.g.
        /// `--scope "projects:read builds:read"`.
        #[arg(long = "scope", short = 's', required = true, value_parser = parse_scopes)]
        scopes: Vec<ScopeSet>,
        /// The audience of its tokens (default: the IDP's).
        #[arg(long)]
        audience: Option<String>,
        /// For a worker (scope work:run): the name it works under
        /// (default: the client's name).
        #[arg(long)]
        worker_name: Option<String>,
        /// For a worker: the labels it may claim work with, e.g.
        /// `trusted,arch=amd64` (default: none).
        #[arg(long, value_delimiter = ',')]
        labels: Option<Vec<String>>,
        /// Where people logging in through it may be sent back with a
        /// code (repeat); matched exactly.
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// A public client (a command line, a single-page app): no secret;
        /// it may only log people in, with PKCE.
        #[arg(long, conflicts_with = "write_config")]
        public: bool,
        /// Allow the device grant (RFC 8628), as `icktool login` uses:
        /// with --public, a client people log in through from a command line.
        #[arg(long)]
        device: bool,
        /// Also write an icktool config (mode 0600) for the new client,
        /// with this config's URLs.
        #[arg(long, value_name = "FILE")]
        write_config: Option<PathBuf>,
    },
    /// List clients.
    #[command(alias = "ls")]
    List,
    /// Show one client (by id or name).
    Show { client: String },
    /// Change the worker a client is (its tokens name it from the next one on).
    Update {
        client: String,
        /// The worker's new name.
        #[arg(long)]
        worker_name: Option<String>,
        /// The worker's labels, replacing the old ones (`--labels ''` for none).
        #[arg(long, value_delimiter = ',')]
        labels: Option<Vec<String>>,
        /// Its redirect URIs, replacing the old ones (repeat).
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Option<Vec<String>>,
    },
    /// Stop a client from getting tokens.
    Disable { client: String },
    /// Let a disabled client get tokens again.
    Enable { client: String },
    /// Give a client a new secret, printed once; the old one stops working.
    Rotate { client: String },
    /// Delete a client.
    #[command(alias = "rm")]
    Delete { client: String },
}

fn parse_scopes(text: &str) -> Result<ScopeSet, String> {
    text.parse::<ScopeSet>().map_err(|e| {
        let known: Vec<&str> = ick_api::Scope::ALL.iter().map(|s| s.as_str()).collect();
        format!("{e}; the scopes are {}", known.join(", "))
    })
}

pub async fn run(ick: &Ick, command: ClientCommand, out: &Out) -> anyhow::Result<Exit> {
    match command {
        ClientCommand::Create {
            name,
            scopes,
            audience,
            worker_name,
            labels,
            redirect_uris,
            public,
            device,
            write_config,
        } => {
            // Checked first: a refusal must not leave a client behind.
            if let Some(path) = &write_config
                && path.exists()
            {
                anyhow::bail!(
                    "{} exists; not overwriting it (it may hold another client's secret): \
                     remove it or name another file",
                    path.display()
                );
            }
            let body = CreateClient {
                name,
                scopes: scopes.iter().flat_map(|s| s.iter()).collect(),
                audience,
                worker_name,
                labels,
                redirect_uris,
                public,
                device,
            };
            let created: ClientWithSecret = ick
                .call(Service::Idp, Method::POST, "/clients", Some(&body))
                .await?;
            if let (Some(path), Some(secret)) = (&write_config, &created.client_secret) {
                let file = ConfigFile {
                    controller: ick.settings.controller.clone(),
                    idp: Some(ick.settings.idp.clone()),
                    artifact_store: ick.settings.artifact_store.clone(),
                    client_id: Some(created.client.id.clone()),
                    client_secret: Some(ick_api::Secret::new(secret.clone())),
                    client_secret_file: None,
                    login_client_id: None,
                };
                file.write(path)?;
            }
            out.print(&created, || {
                let mut text = secret_text(&created);
                if let Some(path) = &write_config {
                    text.push_str(&format!("config written to {}\n", path.display()));
                }
                text
            })?;
        }
        ClientCommand::List => {
            let clients: Vec<ClientInfo> = ick.get(Service::Idp, "/clients").await?;
            let rows = clients
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        c.id.clone(),
                        if c.enabled { "yes" } else { "no" }.to_string(),
                        c.scopes.to_string(),
                    ]
                })
                .collect();
            out.list(
                &clients,
                &["name", "id", "enabled", "scopes"],
                rows,
                "no clients",
            )?;
        }
        ClientCommand::Show { client } => {
            let c: ClientInfo = ick
                .get(Service::Idp, &format!("/clients/{}", segment(&client)))
                .await?;
            out.print(&c, || info_text(&c))?;
        }
        ClientCommand::Update {
            client,
            worker_name,
            labels,
            redirect_uris,
        } => {
            let body = UpdateClient {
                redirect_uris,
                worker_name,
                labels: labels.map(|l| l.into_iter().filter(|l| !l.is_empty()).collect()),
                ..UpdateClient::default()
            };
            let path = format!("/clients/{}", segment(&client));
            let c: ClientInfo = ick
                .call(Service::Idp, Method::PATCH, &path, Some(&body))
                .await?;
            out.print(&c, || info_text(&c))?;
        }
        ClientCommand::Disable { client } => set_enabled(ick, out, &client, false).await?,
        ClientCommand::Enable { client } => set_enabled(ick, out, &client, true).await?,
        ClientCommand::Rotate { client } => {
            let path = format!("/clients/{}/rotate-secret", segment(&client));
            let rotated: ClientWithSecret = ick
                .call(Service::Idp, Method::POST, &path, None::<&()>)
                .await?;
            out.print(&rotated, || secret_text(&rotated))?;
        }
        ClientCommand::Delete { client } => {
            ick.delete(Service::Idp, &format!("/clients/{}", segment(&client)))
                .await?;
            out.print(
                &serde_json::json!({"client": client, "deleted": true}),
                || format!("client {client} deleted\n"),
            )?;
        }
    }
    Ok(Exit::Ok)
}

async fn set_enabled(ick: &Ick, out: &Out, client: &str, enabled: bool) -> anyhow::Result<()> {
    let body = UpdateClient {
        enabled: Some(enabled),
        ..UpdateClient::default()
    };
    let path = format!("/clients/{}", segment(client));
    let c: ClientInfo = ick
        .call(Service::Idp, Method::PATCH, &path, Some(&body))
        .await?;
    out.print(&c, || {
        format!(
            "client {} ({}) {}\n",
            c.name,
            c.id,
            if enabled { "enabled" } else { "disabled" }
        )
    })
}

fn secret_text(c: &ClientWithSecret) -> String {
    match &c.client_secret {
        Some(secret) => format!(
            "{}client_secret: {secret}\n(the secret is shown this once: keep it now)\n",
            info_text(&c.client),
        ),
        None => format!(
            "{}(a public client: it has no secret)\n",
            info_text(&c.client)
        ),
    }
}

fn info_text(c: &ClientInfo) -> String {
    let mut text = format!(
        "name:          {}\nclient_id:     {}\nenabled:       {}\nscopes:        {}\naudience:      {}\n",
        c.name,
        c.id,
        if c.enabled { "yes" } else { "no" },
        c.scopes,
        c.audience
    );
    if c.public {
        text.push_str("public:        yes (no secret; people log in through it)\n");
    }
    if c.device {
        text.push_str("device grant:  yes (icktool login)\n");
    }
    for uri in &c.redirect_uris {
        text.push_str(&format!("redirect_uri:  {uri}\n"));
    }
    if let Some(w) = &c.worker {
        let labels = if w.labels.is_empty() {
            "(none)".to_string()
        } else {
            w.labels.join(",")
        };
        text.push_str(&format!(
            "worker:        {}\nlabels:        {labels}\n",
            w.name
        ));
    }
    text
}
