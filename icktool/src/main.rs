//! `icktool`: how people use Ick. Every command talks to the services over
//! their HTTP APIs with a client-credentials token, or a person's token
//! from `icktool login`; `icktool up` runs the whole suite, each service's
//! binary a child of its own.
//!
//! Exit codes: 0 success; 1 a followed build failed or was cancelled; 2
//! anything else that went wrong (usage, config, network, refusals).

mod commands;
mod config;
mod connection;
mod definitions;
mod follow;
mod output;
mod tokens;
mod up;
mod up_config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::output::Format;

/// What a command that ran to its end says about the thing it watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything went as asked.
    Ok,
    /// A followed build failed or was cancelled (exit 1).
    BuildFailed,
    /// Something else failed, already reported (exit 2).
    Error,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        match exit {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::BuildFailed => ExitCode::from(1),
            Exit::Error => ExitCode::from(2),
        }
    }
}

#[derive(Parser)]
#[command(
    name = "icktool",
    version,
    about = "Ick's command line",
    long_about = "Ick's command line.\n\nStart everything on this machine with `icktool up`; \
                  it writes .ick/icktool.yaml, which the other commands read with \
                  `--config .ick/icktool.yaml` (or ICKTOOL_CONFIG).",
    after_help = "Exit codes: 0 success, 1 a followed build failed or was cancelled, 2 any other error."
)]
pub struct Args {
    /// The config file: service URLs and client credentials
    /// [default: ~/.config/icktool/config.yaml]; for `up`, the services'
    /// settings (`mail:`), from the command line only.
    #[arg(long, global = true, env = "ICKTOOL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// How to print results: a table for people, json or yaml for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole of Ick on this machine: IDP, controller, artifact store, workers.
    Up(up::UpArgs),
    /// Who you are, and whether each service answers.
    Status,
    /// Log in as a person: open the URL shown in any browser and enter the code.
    Login(commands::login::LoginArgs),
    /// Log out: revoke your login at the IDP and forget its tokens.
    Logout,
    /// Who the services see: your user and groups, or the machine client.
    Whoami,
    /// Create or change projects and pipelines from YAML files.
    #[command(alias = "make-it-so")]
    Apply(commands::apply::ApplyArgs),
    /// Projects: list, show, delete, revisions.
    #[command(subcommand)]
    Project(commands::definition::DefinitionCommand),
    /// Pipelines: list, show, delete, revisions.
    #[command(subcommand)]
    Pipeline(commands::definition::DefinitionCommand),
    /// Start a build of a project.
    Trigger(commands::trigger::TriggerArgs),
    /// Show (or --rotate) the secret that signs a project's web hooks.
    TriggerSecret(commands::trigger_secret::TriggerSecretArgs),
    /// Builds: list, show, cancel, retry.
    #[command(subcommand)]
    Build(commands::build::BuildCommand),
    /// Print a build's output, or follow it live.
    Log(commands::log::LogArgs),
    /// The workers: online, draining, or gone (those gone for more than an
    /// hour only with --all).
    Workers(commands::workers::WorkersArgs),
    /// Blobs in the artifact store: put, get, delete.
    #[command(subcommand)]
    Blob(commands::blob::BlobCommand),
    /// Refs (names of blobs) in the artifact store: set, get, list, delete.
    #[command(subcommand, name = "ref")]
    Ref(commands::blob::RefCommand),
    /// IDP clients (needs idp:admin): create, list, show, disable, enable, rotate, delete.
    #[command(subcommand)]
    Client(commands::client::ClientCommand),
    /// People in the IDP (needs idp:admin): create, list, show, update,
    /// disable, enable, delete, passwd.
    #[command(subcommand)]
    User(commands::user::UserCommand),
    /// Groups of people in the IDP (needs idp:admin): create, list, show,
    /// delete, add, remove.
    #[command(subcommand)]
    Group(commands::user::GroupCommand),
    /// A project's members and their roles: add, list, remove.
    #[command(subcommand)]
    Member(commands::member::MemberCommand),
    /// Global roles (admin, creator): grant, revoke, list.
    #[command(subcommand)]
    Role(commands::role::RoleCommand),
    /// Who changed what, when and from where (admins; a project's owners).
    Audit(commands::audit::AuditArgs),
    /// How a project's delivery went: builds per day, success rate,
    /// durations, queue times, bottlenecks, flaky actions, recovery.
    Analytics(commands::analytics::AnalyticsArgs),
    /// Print a shell completion script.
    Completions(commands::completions::CompletionsArgs),
}

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    // `up --config` is the services' config, never the ICKTOOL_CONFIG
    // that `up` itself tells people to export.
    let given = matches.value_source("config") == Some(ValueSource::CommandLine);
    let mut args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    if matches!(args.command, Command::Up(_)) && !given {
        args.config = None;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Error.into();
        }
    };
    match runtime.block_on(run(args)) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Error.into()
        }
    }
}

async fn run(args: Args) -> anyhow::Result<Exit> {
    use commands::*;
    use connection::Ick;
    let out = output::Out::new(args.output);
    let config = args.config.as_deref();
    match args.command {
        Command::Up(up_args) => up::run(up_args, config).await,
        Command::Completions(c) => completions::run(c),
        Command::Status => status::run(config, &out).await,
        Command::Login(l) => login::login(config, l).await,
        Command::Logout => login::logout().await,
        Command::Whoami => whoami::run(&Ick::connect(config)?, &out).await,
        Command::Apply(a) => apply::run(&Ick::connect(config)?, a, &out).await,
        Command::Project(c) => {
            definition::run(&Ick::connect(config)?, definition::Kind::Project, c, &out).await
        }
        Command::Pipeline(c) => {
            definition::run(&Ick::connect(config)?, definition::Kind::Pipeline, c, &out).await
        }
        Command::Trigger(t) => trigger::run(&Ick::connect(config)?, t, &out).await,
        Command::TriggerSecret(t) => trigger_secret::run(&Ick::connect(config)?, t, &out).await,
        Command::Build(b) => build::run(&Ick::connect(config)?, b, &out).await,
        Command::Log(l) => log::run(&Ick::connect(config)?, l, &out).await,
        Command::Workers(w) => workers::run(&Ick::connect(config)?, w, &out).await,
        Command::Blob(b) => blob::run_blob(&Ick::connect(config)?, b, &out).await,
        Command::Ref(r) => blob::run_ref(&Ick::connect(config)?, r, &out).await,
        Command::Client(c) => client::run(&Ick::connect(config)?, c, &out).await,
        Command::User(c) => user::run_user(&Ick::connect(config)?, c, &out).await,
        Command::Group(c) => user::run_group(&Ick::connect(config)?, c, &out).await,
        Command::Member(m) => member::run(&Ick::connect(config)?, m, &out).await,
        Command::Role(r) => role::run(&Ick::connect(config)?, r, &out).await,
        Command::Audit(a) => audit::run(&Ick::connect(config)?, a, &out).await,
        Command::Analytics(a) => analytics::run(&Ick::connect(config)?, a, &out).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn a_password_cannot_be_given_as_an_argument() {
        for args in [
            &[
                "icktool",
                "user",
                "create",
                "alice",
                "--password",
                "hunter22",
            ][..],
            &[
                "icktool",
                "user",
                "passwd",
                "alice",
                "--password",
                "hunter22",
            ][..],
            &["icktool", "user", "passwd", "alice", "hunter22"][..],
        ] {
            let err = Args::try_parse_from(args).err().expect("refused");
            assert!(
                matches!(
                    err.kind(),
                    clap::error::ErrorKind::UnknownArgument
                        | clap::error::ErrorKind::ArgumentConflict
                ),
                "{args:?}: {err}"
            );
        }
        assert!(
            Args::try_parse_from(["icktool", "user", "passwd", "alice", "--password-stdin"])
                .is_ok()
        );
    }

    #[test]
    fn a_listing_of_no_builds_is_refused_not_widened() {
        for n in ["0", "501"] {
            let err = Args::try_parse_from(["icktool", "build", "list", "-n", n])
                .err()
                .expect("refused");
            assert!(err.to_string().contains("1..=500"), "{err}");
        }
        assert!(Args::try_parse_from(["icktool", "build", "list", "-n", "500"]).is_ok());
    }
}
