//! `ick-idp`: run the IDP, or manage its clients and keys offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ick_api::Secret;
use ick_api::audit::Actor;
use ick_api::oauth::WorkerIdentity;
use ick_api::server::{LogFormat, init_logging, shutdown_signal};
use ick_idp::bootstrap::Bootstrap;
use ick_idp::{Config, clients, keys};

#[derive(Parser)]
#[command(name = "ick-idp", version, about = "Ick's OAuth2 identity provider")]
struct Args {
    /// The configuration file (YAML).
    #[arg(long, env = "ICK_IDP_CONFIG")]
    config: PathBuf,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Manage clients directly in the database (e.g. the first admin).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage signing keys; send SIGHUP to a running IDP to reload them.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Create a client and print its id and secret, once.
    Create {
        /// A unique name.
        name: String,
        /// Scopes it may ask for (repeat, or separate with spaces).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Audience of its tokens (default: the config's default_audience).
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
        /// Where people logging in through it may be sent back (repeat).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A public client: no secret, it may only log people in (PKCE,
        /// or the device grant).
        #[arg(long)]
        public: bool,
        /// Allow the device grant (RFC 8628): a command line such as
        /// `icktool login` shows a code that the person types into any browser.
        #[arg(long)]
        device: bool,
    },
    /// Create client NAME, or give the one of that name these scopes (and
    /// worker name), enable it and a new secret; print its id and secret
    /// as `create` does. For scripts: running it again is safe.
    Issue {
        name: String,
        /// Scopes it may ask for (repeat, or separate with spaces).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// For a worker (scope work:run): the name it works under.
        #[arg(long)]
        worker_name: Option<String>,
        /// Read a secret from stdin: if the client is enabled and has it,
        /// change nothing and print only its id.
        #[arg(long)]
        keep_secret_stdin: bool,
        /// A public client with the device grant (`icktool login`), no
        /// secret: print only its id.
        #[arg(long, conflicts_with_all = ["worker_name", "keep_secret_stdin"])]
        device: bool,
        /// For a browser login (the web dashboard): where the IDP may send
        /// people back to (repeat for several).
        #[arg(long = "redirect-uri", conflicts_with_all = ["worker_name", "device"])]
        redirect_uris: Vec<String>,
    },
    /// Delete client NAME, if there is one.
    Delete { name: String },
    /// List clients.
    List,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the keys; the last one signs.
    List,
    /// Generate a new key; after a reload it signs, and the old ones stay published.
    Generate,
    /// Remove a key by id: tokens it signed stop verifying.
    Remove {
        /// Key ids are base64url thumbprints and may start with '-'.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let result = match Config::load(&args.config) {
        Ok(config) => match args.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Client(command) => client(config, command).await,
            Command::Keys(command) => keys_command(&config, command),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ick-idp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(config.http.listen)
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let stop = shutdown_signal();
    let running = ick_idp::start(config, listener).await?;
    println!("listening on {scheme}://{}", running.local_addr());
    tracing::info!(addr = %running.local_addr(), "ick-idp started");
    stop.await;
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}

async fn client(config: Config, command: ClientCommand) -> anyhow::Result<()> {
    let store = config.open_store().await?;
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
        } => {
            let scopes = clients::parse_scopes(&scopes)?;
            let audience = audience.unwrap_or_else(|| config.default_audience.clone());
            let worker = clients::WorkerAttributes {
                name: worker_name,
                labels,
            };
            let login = clients::LoginSettings {
                redirect_uris,
                public,
                device,
            };
            let created = clients::create(
                &store,
                &Actor::local("ick-idp"),
                &name,
                scopes,
                &audience,
                worker,
                login,
            )
            .await?;
            println!("client_id: {}", created.client.id);
            if let Some(secret) = &created.client_secret {
                println!("client_secret: {secret}");
            }
            println!("scopes: {}", created.client.scopes);
            if let Some(w) = &created.client.worker {
                println!("worker: {} labels: {}", w.name, w.labels.join(","));
            }
            if created.client_secret.is_some() {
                eprintln!("The secret is shown only now; keep it somewhere safe.");
            }
        }
        ClientCommand::Issue {
            name,
            scopes,
            worker_name,
            keep_secret_stdin,
            device,
            redirect_uris,
        } => {
            let clients = Bootstrap::open(&config).await?;
            if device {
                let scopes = clients::parse_scopes(&scopes)?;
                println!("client_id: {}", clients.device_client(&name, scopes).await?);
                return Ok(());
            }
            if keep_secret_stdin {
                let mut secret = String::new();
                std::io::stdin()
                    .read_line(&mut secret)
                    .context("cannot read the secret from stdin")?;
                let secret = Secret::new(secret.trim_end().to_string());
                if let Some(id) = clients.holds(&name, &secret).await? {
                    println!("client_id: {id}");
                    return Ok(());
                }
            }
            let scopes = clients::parse_scopes(&scopes)?;
            let worker = worker_name.map(|name| WorkerIdentity {
                name,
                labels: Vec::new(),
            });
            let (id, secret) = clients.issue(&name, scopes, worker, redirect_uris).await?;
            println!("client_id: {id}");
            println!("client_secret: {}", secret.expose());
        }
        ClientCommand::Delete { name } => Bootstrap::open(&config).await?.remove(&name).await?,
        ClientCommand::List => {
            for c in store.list().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    c.id,
                    c.name,
                    if c.enabled { "enabled" } else { "disabled" },
                    c.scopes
                );
            }
        }
    }
    Ok(())
}

fn keys_command(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let dir = config.keys_dir();
    match command {
        KeysCommand::List => {
            let ring = keys::KeyRing::load(&dir)?;
            let signing = ring.signing().map(|k| k.kid.clone());
            for key in ring.keys() {
                let mark = if Some(&key.kid) == signing.as_ref() {
                    "signing"
                } else {
                    "published"
                };
                println!("{}\t{}\t{}", key.kid, mark, key.path.display());
            }
        }
        KeysCommand::Generate => {
            let path = keys::generate(&dir)?;
            println!("{}", path.display());
        }
        KeysCommand::Remove { kid } => {
            let path = keys::remove(&dir, &kid)?;
            println!("removed {}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_id_starting_with_a_hyphen_is_a_value_not_a_flag() {
        let args = Args::try_parse_from([
            "ick-idp",
            "--config",
            "c.yaml",
            "keys",
            "remove",
            "-Iq3x_abc",
        ])
        .expect("parses");
        match args.command {
            Some(Command::Keys(KeysCommand::Remove { kid })) => assert_eq!(kid, "-Iq3x_abc"),
            _ => panic!("not keys remove"),
        }
    }
}
