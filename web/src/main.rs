//! `ick-web`: run the web dashboard.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ick_api::server::{LogFormat, init_logging, shutdown_signal};
use ick_web::Config;

#[derive(Parser)]
#[command(name = "ick-web", version, about = "Ick's web dashboard")]
struct Args {
    /// The configuration file (YAML).
    #[arg(long, env = "ICK_WEB_CONFIG")]
    config: PathBuf,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ick-web: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let listener = std::net::TcpListener::bind(config.http.listen)
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let stop = shutdown_signal();
    let running = ick_web::start(config, listener).await?;
    println!("listening on {scheme}://{}", running.local_addr());
    tracing::info!(addr = %running.local_addr(), "ick-web started");
    stop.await;
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}
