//! `ick-controller`: run the controller.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ick_api::server::{LogFormat, init_logging, shutdown_signal};
use ick_controller::Config;

#[derive(Parser)]
#[command(
    name = "ick-controller",
    version,
    about = "Ick's controller: definitions, builds, the work queue"
)]
struct Args {
    /// The configuration file (YAML).
    #[arg(long, env = "ICK_CONTROLLER_CONFIG")]
    config: PathBuf,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
    /// Read and check the config, print where mail goes (`mail: HOST:PORT`
    /// or `mail: none`), and exit: nothing is opened or bound.
    #[arg(long)]
    check: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ick-controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    if args.check {
        match &config.mail {
            Some(mail) => println!("mail: {}:{}", mail.host, mail.port()),
            None => println!("mail: none"),
        }
        return Ok(());
    }
    let listener = std::net::TcpListener::bind(config.http.listen)
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let stop = shutdown_signal();
    let running = ick_controller::start(config, listener).await?;
    println!("listening on {scheme}://{}", running.local_addr());
    tracing::info!(addr = %running.local_addr(), "ick-controller started");
    stop.await;
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}
