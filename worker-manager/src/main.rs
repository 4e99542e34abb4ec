//! `ick-worker-manager`: runs Ick's actions on this build host.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ick_api::server::{LogFormat, init_logging, shutdown_signal};
use ick_worker_manager::Config;

#[derive(Parser)]
#[command(
    name = "ick-worker-manager",
    version,
    about = "Runs Ick's actions on this build host"
)]
struct Args {
    /// The configuration file (YAML).
    #[arg(long, env = "ICK_WORKER_MANAGER_CONFIG")]
    config: PathBuf,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    // Before anything else: a supervisor needs no runtime, no logging.
    if let Some(code) = ick_worker_manager::supervise_if_asked() {
        return code;
    }
    let args = Args::parse();
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ick-worker-manager: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ick-worker-manager: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let listener = match &config.http {
        Some(http) => Some(
            std::net::TcpListener::bind(http.listen)
                .with_context(|| format!("cannot listen on {}", http.listen))?,
        ),
        None => None,
    };
    let scheme = match config.http.as_ref().and_then(|h| h.tls.as_ref()) {
        Some(_) => "https",
        None => "http",
    };
    let stop = shutdown_signal();
    let worker = ick_worker_manager::start(config, listener).await?;
    if let Some(addr) = worker.metrics_addr() {
        println!("metrics on http://{addr}/metrics");
    }
    if let Some(addr) = worker.local_addr() {
        println!("listening on {scheme}://{addr}");
    }
    let drain = worker.shutdown_token();
    tokio::spawn(async move {
        stop.await;
        tracing::info!("stopping: no more claims; running actions may finish");
        drain.cancel();
    });
    worker.wait().await;
    Ok(())
}
