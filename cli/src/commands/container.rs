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
    }
}
