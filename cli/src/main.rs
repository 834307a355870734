//! The `forge` binary: thin glue from docker-style flags to the library crates.
//!
//! Each subcommand lives in `commands/<verb>.rs` with an `Args` struct (clap) and a
//! `run(&Global, args) -> anyhow::Result<()>`. This file only parses flags, dispatches and maps
//! errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod commands;

/// forge: build container images from Dockerfiles and move them between stores and registries,
/// without a daemon.
#[derive(Parser)]
#[command(name = "forge", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Args, Clone, Debug)]
pub struct Global {
    /// The store's directory (an OCI image layout plus forge's metadata).
    /// Default: $FORGE_ROOT, else /var/lib/forge for root, else $XDG_DATA_HOME/forge.
    #[arg(long, global = true, env = "FORGE_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Developer tools: inspect what forge's front end makes of a file.
    #[command(subcommand)]
    Debug(commands::debug::DebugCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Debug(cmd) => commands::debug::run(&cli.global, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
