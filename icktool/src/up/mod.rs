//! `icktool up`: the whole of Ick on this machine, on loopback, with all
//! its state in one folder: the IDP (SQLite), the controller (SQLite), the
//! artifact store (a local folder) and N worker-managers, each its own
//! binary (found beside icktool, else on PATH) run as a child of `up`.
//!
//! Ports: the controller on PORT (default 7420), the IDP on PORT+1, the
//! artifact store on PORT+2: the addresses of the example configs in
//! `deploy/config/`, so that a worker-manager started with
//! `deploy/config/worker-manager.yaml` on another terminal (or host, with
//! its URLs changed) joins in. `--port 0` lets each service take a free
//! port, which it prints (`listening on URL`) and `up` reads.
//!
//! State in DIR (default `.ick/`): `idp/` (keys and clients),
//! `controller.db`, `artifacts/`, `workers/NAME/` (workspaces), `config/`
//! (each service's config, written at each start, mode 0600), `logs/`
//! (each service's output), and `icktool.yaml`: the admin client's config
//! (mode 0600), created on first start and kept after; the controller
//! makes that client a global `admin`. A client per worker is made too;
//! its secret is renewed at each start and handed to the worker in its
//! environment, never written down.
//!
//! `--config FILE` ([`UpConfig`]) adds what a one-host user may need of
//! the services' settings: the controller's `mail:`.

mod clients;
mod services;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ick_api::{Scope, ScopeSet, Secret};
use serde_json::json;

use crate::Exit;
use crate::config::ConfigFile;
use crate::connection::Ick;
use crate::up_config::UpConfig;
use clients::IdpClients;
use services::{Binaries, Lifeline, Service, Spec, write_private};

/// The admin client `up` creates: every scope, and the controller's
/// global `admin` (its `admins:`).
const ADMIN_CLIENT: &str = "icktool-admin";
/// The workers' clients are this and `-N`; this alone, the client all
/// workers once shared, is deleted.
const WORKER_CLIENT: &str = "icktool-worker";
/// The public client people log in through with `icktool login`.
pub const LOGIN_CLIENT: &str = "icktool";
/// The web dashboard's client.
const WEB_CLIENT: &str = "ick-web";
/// The demo's definitions, built in so that `--demo` works from anywhere.
const HELLO: &str = include_str!("../../../examples/hello/hello.yaml");

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where all state lives.
    #[arg(long, default_value = ".ick", value_name = "DIR")]
    dir: PathBuf,
    /// How many worker-managers to run (each runs one action at a time).
    #[arg(long, default_value_t = 1)]
    workers: u32,
    /// The controller's port; the IDP listens on the next one, the artifact
    /// store on PORT+2, the web dashboard on PORT+5. 0 takes any free ports.
    #[arg(long, default_value_t = 7420)]
    port: u16,
    /// Also apply examples/hello, trigger it and follow it to the end.
    #[arg(long)]
    demo: bool,
}

/// The addresses the services are to listen on. A fixed port is held
/// (bound) by `up` from the start, so that one in use is refused before
/// anything is made, and let go just before its service binds it.
struct Ports {
    controller: Port,
    idp: Port,
    store: Port,
    web: Port,
}

struct Port {
    addr: SocketAddr,
    held: Option<TcpListener>,
}

impl Port {
    /// The address to give the service, free now.
    fn release(&mut self) -> SocketAddr {
        self.held = None;
        self.addr
    }
}

fn bind(port: u16) -> anyhow::Result<Ports> {
    let mut bound = Vec::new();
    for offset in [0u16, 1, 2, 5] {
        let wanted = if port == 0 {
            0
        } else {
            port.checked_add(offset)
                .with_context(|| format!("--port {port} leaves no room for PORT+{offset}"))?
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], wanted));
        // With port 0, the IDP and the store take their own; the
        // controller's and the dashboard's are taken here, since configs
        // name them (the links in mail; the login's return address).
        if wanted == 0 && offset != 0 && offset != 5 {
            bound.push(Port { addr, held: None });
            continue;
        }
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
        bound.push(Port {
            addr: listener.local_addr()?,
            held: Some(listener),
        });
    }
    let mut it = bound.into_iter();
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(controller), Some(idp), Some(store), Some(web)) => Ok(Ports {
            controller,
            idp,
            store,
            web,
        }),
        _ => bail!("could not bind the ports"),
    }
}

fn private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", path.display()))
}

/// The controller's settings from `--config`, checked by the controller's
/// own binary before `up` makes anything; answers where mail goes, as it
/// says.
async fn check_mail(
    binaries: &Binaries,
    up_config: &UpConfig,
    file: &Path,
) -> anyhow::Result<Option<String>> {
    let Some(mail) = &up_config.mail else {
        return Ok(None);
    };
    // A private file of its own (it may hold a password), gone after.
    let candidate = tempfile::Builder::new()
        .prefix("icktool-up-check")
        .suffix(".yaml")
        .tempfile()
        .context("cannot write a temporary file")?;
    write_private(
        candidate.path(),
        &json!({
            "http": {"listen": "127.0.0.1:0"},
            "auth": {"issuer": "http://127.0.0.1"},
            "database_url": "sqlite://check.db",
            "public_url": up_config.public_url.as_deref().unwrap_or("http://127.0.0.1"),
            "mail": mail,
        }),
    )?;
    let out = tokio::process::Command::new(&binaries.controller)
        .arg("--config")
        .arg(candidate.path())
        .arg("--check")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot start {}", binaries.controller.display()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.trim().trim_start_matches("ick-controller: ");
        // Where in the temporary file is no help: the user's is to fix.
        let said = said
            .strip_prefix(&candidate.path().display().to_string())
            .and_then(|rest| rest.splitn(4, ':').nth(3))
            .unwrap_or(said)
            .trim();
        let said = said
            .rsplit_once(" at line ")
            .filter(|(_, at)| at.split(" column ").all(|n| n.parse::<u32>().is_ok()))
            .map_or(said, |(message, _)| message);
        bail!(
            "{}: the controller refuses its `mail:`: {said}",
            file.display()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("mail: "))
        .map(str::to_string))
}

/// The admin client of the existing `icktool.yaml` if the IDP still has it
/// with that secret; else a new one (or the old one with a new secret).
async fn admin_client(
    clients: &IdpClients<'_>,
    config_path: &Path,
) -> anyhow::Result<(String, Secret, bool)> {
    let kept = ConfigFile::read(config_path)
        .ok()
        .and_then(|existing| existing.client_secret);
    let (id, secret) = clients
        .issue(ADMIN_CLIENT, &ScopeSet::all(), None, kept.as_ref())
        .await?;
    match (secret, kept) {
        (Some(new), _) => Ok((id, new, true)),
        (None, Some(kept)) => Ok((id, kept, false)),
        (None, None) => bail!("`ick-idp client issue` printed no client_secret"),
    }
}

/// A worker `up` starts, with its IDP client.
struct WorkerClient {
    name: String,
    id: String,
    secret: Secret,
}

/// The services, started, in the order of their start; workers last.
#[derive(Default)]
struct Suite {
    services: Vec<Service>,
    workers: Vec<Service>,
}

impl Suite {
    /// Stops the workers (at once), then the others in the reverse order
    /// of their start, each waited for.
    async fn stop(self) {
        Service::stop_all(self.workers).await;
        for service in self.services.into_iter().rev() {
            service.stop().await;
        }
    }

    /// Waits until one of them ends; answers the error naming it.
    async fn first_to_end(&mut self) -> anyhow::Error {
        let all = self.services.iter_mut().chain(self.workers.iter_mut());
        let waits = all.map(|s| {
            Box::pin(async move {
                let status = s.wait().await;
                let what = match status {
                    Some(status) => format!("ended ({status})"),
                    None => "ended".to_string(),
                };
                s.died(&what)
            })
        });
        let (error, _, _) = futures::future::select_all(waits).await;
        error
    }
}

/// What `up` made and started, for what it prints.
struct Started {
    controller: String,
    idp: String,
    store: String,
    /// The web dashboard.
    web: String,
    /// The public client people log in through (`icktool login`).
    login_client_id: String,
}

pub async fn run(args: UpArgs, config_file: Option<&Path>) -> anyhow::Result<Exit> {
    if args.workers == 0 {
        bail!("--workers must be at least 1: nothing would run the builds");
    }
    let up_config = match config_file {
        Some(path) => UpConfig::load(path)?,
        None => UpConfig::default(),
    };
    let binaries = Binaries::find()?;
    let mail = match config_file {
        Some(path) => check_mail(&binaries, &up_config, path).await?,
        None => None,
    };
    let stop = ick_api::server::shutdown_signal();
    let ports = bind(args.port)?;
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
    let logs = dir.join("logs");
    private_dir(&logs)?;
    private_dir(&dir.join("config"))?;
    let config_path = dir.join("icktool.yaml");

    let mut suite = Suite::default();
    let lifeline = Lifeline::new()?;
    let started = start_all(
        &mut suite,
        &lifeline,
        ports,
        &dir,
        &binaries,
        &args,
        &up_config,
        &config_path,
    )
    .await;
    let (started, admin_id, admin_secret, created) = match started {
        Ok(started) => started,
        Err(e) => {
            suite.stop().await;
            return Err(e);
        }
    };

    let file = ConfigFile {
        controller: Some(started.controller.clone()),
        idp: Some(started.idp.clone()),
        artifact_store: Some(started.store.clone()),
        client_id: Some(admin_id),
        client_secret: Some(admin_secret),
        client_secret_file: None,
        login_client_id: Some(started.login_client_id.clone()),
    };
    file.write(&config_path)?;

    let config_shown = shell_path(&config_path);
    println!(
        "Ick is up. State in {dir}{first}.\n\n  \
         dashboard       {web_url}\n  \
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
         Logs go to {log}/ (one file per service). Stop with Ctrl-C.",
        dir = dir.display(),
        first = if created {
            " (first start: an admin client was created)"
        } else {
            ""
        },
        web_url = started.web,
        controller_url = started.controller,
        idp_url = started.idp,
        store_url = started.store,
        workers = (1..=args.workers)
            .map(|i| worker_name(&dir, i))
            .collect::<Vec<_>>()
            .join(", "),
        log = logs.display(),
        path_note = path_note(),
        mail = match &mail {
            Some(to) => format!("through {to}"),
            None =>
                "none: `notify:` waits in the outbox (give --config FILE with `mail:`)".to_string(),
        },
    );

    let settings = file.resolve(&config_path)?;
    let mut stop = std::pin::pin!(stop);
    let ended = {
        let mut demo_done = !args.demo;
        let demo = demo(settings, &config_shown);
        let mut demo = std::pin::pin!(demo);
        let ended = suite.first_to_end();
        let mut ended = std::pin::pin!(ended);
        loop {
            tokio::select! {
                _ = &mut stop => break None,
                error = &mut ended => break Some(error),
                result = &mut demo, if !demo_done => {
                    demo_done = true;
                    if let Err(e) = result {
                        eprintln!("error: the demo failed: {e:#}");
                    }
                }
            }
        }
    };
    if let Some(error) = ended {
        eprintln!("Stopping the other services…");
        suite.stop().await;
        return Err(error);
    }
    println!("Stopping… (Ctrl-C again to stop at once)");
    tokio::spawn(async {
        ick_api::server::shutdown_signal().await;
        // The services see `up`'s pipe close, and stop on their own.
        eprintln!("Stopped at once: running actions may have been left behind.");
        std::process::exit(130);
    });
    suite.stop().await;
    drop(lifeline);
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

/// Makes the clients, writes each service's config and starts them in
/// turn, each once the one before is ready. Answers the URLs and the admin
/// client (and whether it is new).
#[allow(clippy::too_many_arguments)]
async fn start_all(
    suite: &mut Suite,
    lifeline: &Lifeline,
    mut ports: Ports,
    dir: &Path,
    binaries: &Binaries,
    args: &UpArgs,
    settings: &UpConfig,
    config_path: &Path,
) -> anyhow::Result<(Started, String, Secret, bool)> {
    let http = reqwest::Client::new();
    let configs = dir.join("config");
    let logs = dir.join("logs");
    let spec = |name: String, binary, file: &str, log: &str| Spec {
        name,
        binary,
        config: configs.join(file),
        log: logs.join(log),
        env: Vec::new(),
    };

    // The IDP: its clients first, made on its store before it serves.
    let idp_config = configs.join("idp.yaml");
    let idp_addr = ports.idp.addr;
    write_private(
        &idp_config,
        &json!({
            "http": {"listen": idp_addr.to_string()},
            // With a fixed port the issuer is known now; with port 0 the
            // IDP takes its own listening URL.
            "issuer": (idp_addr.port() != 0).then(|| format!("http://{idp_addr}")),
            "data_dir": dir.join("idp"),
        }),
    )?;
    let clients = IdpClients {
        binary: &binaries.idp,
        config: &idp_config,
    };
    let (admin_id, admin_secret, created) = admin_client(&clients, config_path).await?;
    // A person's tokens get what their roles allow at the controller;
    // never the IDP's admin API, nor a worker's.
    let people: ScopeSet = Scope::ALL
        .into_iter()
        .filter(|s| !matches!(s, Scope::IdpAdmin | Scope::WorkRun))
        .collect();
    let login_client_id = clients.device(LOGIN_CLIENT, &people).await?;
    let worker_scopes: ScopeSet = [Scope::WorkRun, Scope::BlobsRead, Scope::BlobsWrite]
        .into_iter()
        .collect();
    // A client per worker, naming it (the one all workers shared before
    // is gone).
    clients.delete(WORKER_CLIENT).await?;
    let mut workers = Vec::new();
    for i in 1..=args.workers {
        let name = worker_name(dir, i);
        let client = format!("{WORKER_CLIENT}-{i}");
        let (id, secret) = clients
            .issue(&client, &worker_scopes, Some(&name), None)
            .await?;
        let secret = secret.context("`ick-idp client issue` printed no client_secret")?;
        workers.push(WorkerClient { name, id, secret });
    }
    // The dashboard's client: people's browser logins come back to it.
    let web_addr = ports.web.addr;
    let web_url = format!("http://{web_addr}");
    let (web_id, web_secret) = clients
        .issue_with_redirect(WEB_CLIENT, &people, &format!("{web_url}/login/callback"))
        .await?;
    ports.idp.release();
    let idp = Service::start(
        spec("IDP".into(), &binaries.idp, "idp.yaml", "idp.log"),
        lifeline,
        &http,
    )
    .await?;
    let idp_url = idp.url.clone();
    suite.services.push(idp);

    let controller_addr = ports.controller.release();
    let mut controller = json!({
        "http": {"listen": controller_addr.to_string()},
        "auth": {"issuer": idp_url},
        "database_url": format!("sqlite://{}?mode=rwc", dir.join("controller.db").display()),
        // Its admin client may do everything; the workers' clients
        // have work:run only, and no role.
        "admins": [format!("client:{ADMIN_CLIENT}")],
    });
    if let Some(mail) = &settings.mail {
        // Its loopback URL stands in for a missing public_url.
        let public_url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{controller_addr}"));
        controller["public_url"] = json!(public_url);
        controller["mail"] = json!(mail);
    }
    write_private(&configs.join("controller.yaml"), &controller)?;
    let started = Service::start(
        spec(
            "controller".into(),
            &binaries.controller,
            "controller.yaml",
            "controller.log",
        ),
        lifeline,
        &http,
    )
    .await?;
    let controller_url = started.url.clone();
    suite.services.push(started);

    let store_addr = ports.store.release();
    write_private(
        &configs.join("artifact-store.yaml"),
        &json!({
            "http": {"listen": store_addr.to_string()},
            "auth": {"issuer": idp_url},
            "storage": {"local": {"path": dir.join("artifacts")}},
        }),
    )?;
    let started = Service::start(
        spec(
            "artifact store".into(),
            &binaries.artifact_store,
            "artifact-store.yaml",
            "artifact-store.log",
        ),
        lifeline,
        &http,
    )
    .await?;
    let store_url = started.url.clone();
    suite.services.push(started);

    let web_secret_file = configs.join("web-secret");
    ick_api::secret::write_private(&web_secret_file, web_secret.expose().as_bytes())?;
    write_private(
        &configs.join("web.yaml"),
        &json!({
            "http": {"listen": ports.web.release().to_string()},
            "public_url": web_url,
            "controller": controller_url,
            "idp": idp_url,
            "client_id": web_id,
            "client_secret_file": web_secret_file,
            "session_key_file": dir.join("web").join("session.key"),
        }),
    )?;
    let started = Service::start(
        spec("dashboard".into(), &binaries.web, "web.yaml", "web.log"),
        lifeline,
        &http,
    )
    .await?;
    suite.services.push(started);

    for WorkerClient { name, id, secret } in workers {
        let file = format!("worker-{name}.yaml");
        write_private(
            &configs.join(&file),
            &json!({
                "name": name,
                "controller": controller_url,
                "artifact_store": store_url,
                "idp": {
                    "token_url": ick_api::http::join(&idp_url, ick_api::oauth::TOKEN_PATH),
                    "client_id": id,
                },
                "workspace_root": dir.join("workers").join(&name),
                // Its /readyz, for `up` to wait on.
                "http": {"listen": "127.0.0.1:0"},
                // Ctrl-C should not wait long for running actions.
                "drain_timeout": "5s",
                "kill_grace": "2s",
            }),
        )?;
        let mut spec = spec(
            format!("worker {name}"),
            &binaries.worker_manager,
            &file,
            &format!("worker-{name}.log"),
        );
        // In its environment, not in a file: renewed at each start.
        spec.env
            .push(("ICK_WORKER_CLIENT_SECRET", secret.expose().to_string()));
        suite
            .workers
            .push(Service::start(spec, lifeline, &http).await?);
    }
    Ok((
        Started {
            controller: controller_url,
            idp: idp_url,
            store: store_url,
            web: web_url,
            login_client_id,
        },
        admin_id,
        admin_secret,
        created,
    ))
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
            "The demo build did not succeed: see its log above, and the services' logs in logs/."
        },
    );
    Ok(())
}
