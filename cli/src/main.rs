//! The `forge` binary: thin glue from docker-style flags to the library crates.
//!
//! Each subcommand lives in `commands/<verb>.rs` with an `Args` struct (clap) and a
//! `run(args) -> anyhow::Result<()>`. This file only parses flags, dispatches and maps
//! errors to exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// forge: build container images from Dockerfiles and move them between stores and registries,
/// without a daemon.
#[derive(Parser)]
#[command(name = "forge", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
        Command::Debug(cmd) => commands::debug::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
