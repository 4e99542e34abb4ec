//! `icktool completions SHELL`.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::{Args, Exit};

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell. For bash:
    /// `icktool completions bash > ~/.local/share/bash-completion/completions/icktool`
    shell: Shell,
}

pub fn run(args: CompletionsArgs) -> anyhow::Result<Exit> {
    let mut command = Args::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "icktool", &mut script);
    crate::output::write_stdout(&String::from_utf8_lossy(&script))?;
    Ok(Exit::Ok)
}
