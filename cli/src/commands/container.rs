//! `forge container ...`: commands on all containers.

use clap::Subcommand;

use crate::commands::create::containers;
use crate::stdout::outln;

/// `forge container ...`.
#[derive(Subcommand)]
pub enum ContainerCommand {
    /// Remove every container that is not running.
    Prune {
        /// Do not ask (forge never asks; accepted for docker's scripts).
        #[arg(short, long)]
        force: bool,
    },
    /// A detached container's monitor (started by `run -d` and `start`).
    #[command(hide = true)]
    Monitor {
        /// The container's full ID.
        id: String,
    },
}

/// Runs `forge container ...`.
pub fn run(global: &crate::Global, cmd: ContainerCommand) -> anyhow::Result<()> {
    match cmd {
        ContainerCommand::Prune { force: _ } => {
            let removed = containers(global)?.prune()?;
            if !removed.is_empty() {
                outln!("Deleted Containers:")?;
                for id in &removed {
                    outln!("{id}")?;
                }
                outln!("")?;
            }
            outln!("Total reclaimed containers: {}", removed.len())
        }
        ContainerCommand::Monitor { id } => crate::commands::lifecycle::monitor(global, &id),
    }
}
