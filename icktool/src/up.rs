//! `icktool up`: the whole of Ick in this one process, on loopback, with
//! all its state in one folder: the IDP (SQLite), the controller (SQLite),
//! the artifact store (a local folder) and N worker-managers.
//!
//! Ports: the controller on PORT (default 7420), the IDP on PORT+1, the
//! artifact store on PORT+2: the addresses of the example configs in
//! `deploy/config/`, so that a worker-manager started with
//! `deploy/config/worker-manager.yaml` on another terminal (or host, with
//! its URLs changed) joins in. `--port 0` takes any free ports.
//!
//! State in DIR (default `.ick/`): `idp/` (keys and clients),
//! `controller.db`, `artifacts/`, `workers/NAME/` (workspaces), `ick.log`
//! (every service's log), and `icktool.yaml`: the admin client's config
//! (mode 0600), created on first start and kept after; the controller
//! makes that client a global `admin`. A worker client is made too; its
//! secret is renewed at each start and never written down.
//!
//! `--config FILE` ([`UpConfig`]) adds what a one-host user may need of
//! the services' settings: the controller's `mail:`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};
use ick_api::oauth::WorkerIdentity;
use ick_api::server::Running;
use ick_api::{Scope, ScopeSet, Secret};
use ick_idp::bootstrap::Bootstrap;
use serde_json::json;

use crate::Exit;
use crate::config::ConfigFile;
use crate::connection::Ick;
use crate::up_config::UpConfig;

/// The admin client `up` creates: every scope, and the controller's
/// global `admin` (its `admins:`).
const ADMIN_CLIENT: &str = "icktool-admin";
/// The client the worker-managers share.
const WORKER_CLIENT: &str = "icktool-worker";
/// The public client people log in through with `icktool login`.
pub const LOGIN_CLIENT: &str = "icktool";
/// The demo's definitions, built in so that `--demo` works from anywhere.
const HELLO: &str = include_str!("../../examples/hello/hello.yaml");

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where all state lives.
    #[arg(long, default_value = ".ick", value_name = "DIR")]
    dir: PathBuf,
    /// How many worker-managers to run (each runs one action at a time).
    #[arg(long, default_value_t = 1)]
    workers: u32,
    /// The controller's port; the IDP listens on the next one, the artifact
    /// store on PORT+2. 0 takes any free ports.
    #[arg(long, default_value_t = 7420)]
    port: u16,
    /// Also apply examples/hello, trigger it and follow it to the end.
    #[arg(long)]
    demo: bool,
}

/// The bound, not yet serving, listeners.
struct Listeners {
    controller: TcpListener,
    idp: TcpListener,
    store: TcpListener,
}

fn bind(port: u16) -> anyhow::Result<Listeners> {
    let offsets = [0u16, 1, 2];
    let mut bound = Vec::new();
    for offset in offsets {
        let wanted = if port == 0 {
            0
        } else {
            port.checked_add(offset)
                .with_context(|| format!("--port {port} leaves no room for PORT+{offset}"))?
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], wanted));
        let listener = TcpListener::bind(addr).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow::anyhow!(
                    "port {wanted} is in use (is another `icktool up` running?): stop it, \
                     or choose other ports with --port"
                )
            } else {
                anyhow::anyhow!("cannot listen on {addr}: {e}")
            }
        })?;
        listener.set_nonblocking(true)?;
        bound.push(listener);
    }
    let mut it = bound.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(controller), Some(idp), Some(store)) => Ok(Listeners {
            controller,
            idp,
            store,
        }),
        _ => bail!("could not bind the ports"),
    }
}

fn url(listener: &TcpListener) -> anyhow::Result<String> {
    Ok(format!("http://{}", listener.local_addr()?))
}

/// Logs of every service go to DIR/ick.log; warnings also to stderr.
fn init_logging(dir: &Path) -> anyhow::Result<PathBuf> {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    use tracing_subscriber::prelude::*;
    let path = dir.join("ick.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let file_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let file_layer = tracing_subscriber::fmt::layer()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_filter(file_filter);
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ick_api::server::stderr_colours())
        .with_filter(LevelFilter::WARN);
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .try_init();
    Ok(path)
}

fn private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", path.display()))
}

/// A service config from JSON: their structs are made to be read from
/// files, and JSON is the shortest way to write one here.
fn config<T: serde::de::DeserializeOwned>(
    what: &str,
    value: serde_json::Value,
) -> anyhow::Result<T> {
    serde_json::from_value(value).with_context(|| format!("the {what} config `up` made"))
}

/// The admin client of the existing `icktool.yaml` if the IDP still knows
/// it with that secret; else a new one (or the old one with a new secret).
async fn admin_client(
    clients: &Bootstrap,
    config_path: &Path,
) -> anyhow::Result<(String, Secret, bool)> {
    if let Ok(existing) = ConfigFile::read(config_path)
        && let (Some(id), Some(secret)) = (existing.client_id, existing.client_secret)
        && clients.still_valid(&id, &secret).await?
    {
        return Ok((id, secret, false));
    }
    let (id, secret) = clients.issue(ADMIN_CLIENT, ScopeSet::all(), None).await?;
    Ok((id, secret, true))
}

/// A worker `up` starts, with its IDP client.
struct WorkerClient {
    name: String,
    id: String,
    secret: Secret,
}

/// The services, started; stopped workers first, then the others in the
/// reverse order of their start.
struct Suite {
    services: Vec<(&'static str, Running)>,
    workers: Vec<ick_worker_manager::WorkerManager>,
}

impl Suite {
    async fn stop(self) {
        futures::future::join_all(self.workers.into_iter().map(|w| w.stop())).await;
        for (name, running) in self.services.into_iter().rev() {
            tracing::info!(service = name, "stopping");
            running.stop().await;
        }
    }
}

pub async fn run(args: UpArgs, config_file: Option<&Path>) -> anyhow::Result<Exit> {
    if args.workers == 0 {
        bail!("--workers must be at least 1: nothing would run the builds");
    }
    let up_config = match config_file {
        Some(path) => UpConfig::load(path)?,
        None => UpConfig::default(),
    };
    let stop = ick_api::server::shutdown_signal();
    let listeners = bind(args.port)?;
    private_dir(&args.dir)?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot find {}", args.dir.display()))?;
    // One `up` per state folder: two would share SQLite files and the
    // artifact store's folder. The lock goes with the process.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(dir.join("up.lock"))
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by another `icktool up`: stop that one, or give another --dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            bail!("cannot lock {}: {e}", dir.join("up.lock").display())
        }
    }
    let log = init_logging(&dir)?;
    let idp_url = url(&listeners.idp)?;
    let controller_url = url(&listeners.controller)?;
    let store_url = url(&listeners.store)?;
    let config_path = dir.join("icktool.yaml");

    let idp_config: ick_idp::Config = config(
        "IDP",
        json!({
            "http": {"listen": listeners.idp.local_addr()?.to_string()},
            "issuer": idp_url,
            "data_dir": dir.join("idp"),
        }),
    )?;
    let (admin_id, admin_secret, login_id, workers, created) = {
        let clients = Bootstrap::open(&idp_config).await?;
        let (admin_id, admin_secret, created) = admin_client(&clients, &config_path).await?;
        // A person's tokens get what their roles allow at the controller;
        // never the IDP's admin API, nor a worker's.
        let people: ScopeSet = Scope::ALL
            .into_iter()
            .filter(|s| !matches!(s, Scope::IdpAdmin | Scope::WorkRun))
            .collect();
        let login_id = clients.device_client(LOGIN_CLIENT, people).await?;
        let worker_scopes: ScopeSet = [Scope::WorkRun, Scope::BlobsRead, Scope::BlobsWrite]
            .into_iter()
            .collect();
        // A client per worker, naming it (the one all workers shared
        // before is gone).
        clients.remove(WORKER_CLIENT).await?;
        let mut workers = Vec::new();
        for i in 1..=args.workers {
            let name = worker_name(&dir, i);
            let worker = WorkerIdentity {
                name: name.clone(),
                labels: Vec::new(),
            };
            let client = format!("{WORKER_CLIENT}-{i}");
            let (id, secret) = clients
                .issue(&client, worker_scopes.clone(), Some(worker))
                .await?;
            workers.push(WorkerClient { name, id, secret });
        }
        (admin_id, admin_secret, login_id, workers, created)
    };

    let mut suite = Suite {
        services: Vec::new(),
        workers: Vec::new(),
    };
    let started = start_all(
        &mut suite,
        listeners,
        &dir,
        idp_config,
        (&idp_url, &controller_url, &store_url),
        &workers,
        up_config.clone(),
    )
    .await;
    if let Err(e) = started {
        suite.stop().await;
        return Err(e);
    }

    let file = ConfigFile {
        controller: Some(controller_url.clone()),
        idp: Some(idp_url.clone()),
        artifact_store: Some(store_url.clone()),
        client_id: Some(admin_id),
        client_secret: Some(admin_secret),
        client_secret_file: None,
        login_client_id: Some(login_id),
    };
    file.write(&config_path)?;

    let config_shown = shell_path(&config_path);
    println!(
        "Ick is up. State in {dir}{first}.\n\n  \
         controller      {controller_url}\n  \
         IDP             {idp_url}\n  \
         artifact store  {store_url}\n  \
         workers         {workers}\n  \
         mail            {mail}\n\n\
         In another terminal:{path_note}\n\n  \
         export ICKTOOL_CONFIG={config_shown}\n  \
         icktool status\n  \
         icktool apply -f examples/hello\n  \
         icktool trigger hello --follow\n\n\
         Logs go to {log}. Stop with Ctrl-C.",
        dir = dir.display(),
        first = if created {
            " (first start: an admin client was created)"
        } else {
            ""
        },
        workers = (1..=args.workers)
            .map(|i| worker_name(&dir, i))
            .collect::<Vec<_>>()
            .join(", "),
        log = log.display(),
        path_note = path_note(),
        mail = match &up_config.mail {
            Some(mail) => format!("through {}:{}", mail.host, mail.port()),
            None =>
                "none: `notify:` waits in the outbox (give --config FILE with `mail:`)".to_string(),
        },
    );

    let settings = file.resolve(&config_path)?;
    let mut stop = std::pin::pin!(stop);
    let outcome = tokio::select! {
        _ = &mut stop => None,
        demo = demo(settings, &config_shown), if args.demo => Some(demo),
    };
    if let Some(result) = outcome {
        if let Err(e) = result {
            eprintln!("error: the demo failed: {e:#}");
        }
        stop.await;
    }
    println!("Stopping… (Ctrl-C again to stop at once)");
    tokio::spawn(async {
        ick_api::server::shutdown_signal().await;
        eprintln!("Stopped at once: running actions may have been left behind.");
        std::process::exit(130);
    });
    suite.stop().await;
    println!("Stopped. Start again with the same --dir to find everything as it was.");
    drop(lock);
    Ok(Exit::Ok)
}

/// A note saying where icktool is when `icktool` on the PATH is not this
/// program (e.g. after `cargo run`), so that the commands shown work.
fn path_note() -> String {
    let Ok(me) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return String::new();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .filter_map(|dir| dir.join("icktool").canonicalize().ok())
            .any(|found| found == me)
    });
    if on_path {
        String::new()
    } else {
        format!(
            " (icktool is {}; `cargo install --path icktool` puts it on your PATH)",
            shell_path(&me)
        )
    }
}

/// `local-N-XXXXXX`, XXXXXX from the state folder's path: a worker-manager
/// ends, at its start, the processes an earlier run of the same name left,
/// so two `icktool up` in two folders on one host must not share names;
/// one folder keeps its names across restarts.
fn worker_name(dir: &Path, i: u32) -> String {
    let digest = ick_api::blobs::Digest::of(dir.as_os_str().as_encoded_bytes());
    format!("local-{i}-{}", &digest.hex()[..6])
}

/// A path as a shell would take it (quoted if it must be).
fn shell_path(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

async fn start_all(
    suite: &mut Suite,
    listeners: Listeners,
    dir: &Path,
    idp_config: ick_idp::Config,
    (idp_url, controller_url, store_url): (&str, &str, &str),
    workers: &[WorkerClient],
    settings: UpConfig,
) -> anyhow::Result<()> {
    suite
        .services
        .push(("IDP", ick_idp::start(idp_config, listeners.idp).await?));

    let mut controller: ick_controller::Config = config(
        "controller",
        json!({
            "http": {"listen": listeners.controller.local_addr()?.to_string()},
            "auth": {"issuer": idp_url},
            "database_url": format!("sqlite://{}?mode=rwc", dir.join("controller.db").display()),
            // Its admin client may do everything; the workers' clients
            // have work:run only, and no role.
            "admins": [format!("client:{ADMIN_CLIENT}")],
        }),
    )?;
    if settings.mail.is_some() {
        controller.public_url = Some(settings.public_url.unwrap_or(controller_url.to_string()));
        controller.mail = settings.mail;
    }
    suite.services.push((
        "controller",
        ick_controller::start(controller, listeners.controller).await?,
    ));

    let store: ick_artifact_store::Config = config(
        "artifact store",
        json!({
            "http": {"listen": listeners.store.local_addr()?.to_string()},
            "auth": {"issuer": idp_url},
            "storage": {"local": {"path": dir.join("artifacts")}},
        }),
    )?;
    suite.services.push((
        "artifact store",
        ick_artifact_store::start(store, listeners.store).await?,
    ));

    for WorkerClient { name, id, secret } in workers {
        let worker: ick_worker_manager::Config = config(
            "worker-manager",
            json!({
                "name": name,
                "controller": controller_url,
                "artifact_store": store_url,
                "idp": {
                    "token_url": ick_api::http::join(idp_url, ick_api::oauth::TOKEN_PATH),
                    "client_id": id,
                    "client_secret": secret.expose(),
                },
                "workspace_root": dir.join("workers").join(name),
                // Ctrl-C should not wait long for running actions.
                "drain_timeout": "5s",
                "kill_grace": "2s",
            }),
        )?;
        let manager = ick_worker_manager::start(worker, None).await?;
        suite.workers.push(manager);
    }
    Ok(())
}

/// `--demo`: apply examples/hello, trigger it, follow it, say what next.
async fn demo(settings: crate::config::Settings, config_shown: &str) -> anyhow::Result<()> {
    let ick = Ick::from_settings(settings);
    println!("\nDemo: applying examples/hello");
    let hello = crate::definitions::SourceFile {
        name: "examples/hello/hello.yaml".into(),
        text: HELLO.into(),
    };
    crate::commands::apply::apply(&ick, vec![hello], true).await?;
    let build = crate::commands::trigger::trigger(&ick, "hello", Vec::new()).await?;
    println!(
        "Demo: triggered build hello #{}; following its log\n",
        build.number
    );
    let end = crate::follow::follow(&ick, &build.id, None).await?;
    let (text, exit) = crate::follow::ended(&end);
    println!("\nDemo: {text}.");
    let n = end.number;
    let pad = " ".repeat(n.to_string().len());
    println!(
        "{}\nLook around (with ICKTOOL_CONFIG={config_shown}):\n  \
         icktool build show hello/{n}   # each action, its worker and exit code\n  \
         icktool log hello/{n}          # the whole output\n  \
         icktool ref list{pad}            # what the build archived\n  \
         icktool project show hello{pad}  # the definition, as applied\n\
         Ick keeps running until Ctrl-C.",
        if exit == Exit::Ok {
            "The demo build succeeded."
        } else {
            "The demo build did not succeed: see its log above, and the services' log in ick.log."
        },
    );
    Ok(())
}
