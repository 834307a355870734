//! `forge debug ...`: developer views of the front end.

use clap::Subcommand;

/// Subcommands of `forge debug`.
#[derive(Subcommand)]
pub enum DebugCommand {
    /// Print the AST of a Dockerfile in BuildKit's dump format (as `result` files hold it).
    Parse {
        /// The Dockerfile to parse.
        file: std::path::PathBuf,
    },
}

/// Runs a `forge debug` subcommand.
pub fn run(_global: &crate::Global, cmd: DebugCommand) -> anyhow::Result<()> {
    match cmd {
        DebugCommand::Parse { file } => {
            anyhow::bail!("forge debug parse {}: the parser is not wired in yet", file.display())
        }
    }
}
