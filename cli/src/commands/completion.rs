//! `forge completion SHELL`: completions generated from the command definitions.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// Arguments of `forge completion`.
#[derive(Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

/// Prints the completion script for `shell` on stdout.
pub fn run(args: CompletionArgs) -> anyhow::Result<()> {
    // Every command's arguments, which the generators walk before clap would build them.
    crate::deferred::build_eagerly();
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "forge", &mut script);
    crate::stdout::write_all(&script)
}
