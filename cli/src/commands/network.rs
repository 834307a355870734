//! `forge network ...`: the networks of the store.

use anyhow::Context;
use clap::Subcommand;

use crate::stdout::outln;

/// `forge network ...`.
#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Remove what crashed forge processes left (veth pairs, namespaces, leases) and the
    /// bridges and firewall rules no container or build uses (the default network's bridge
    /// is made again when next needed).
    Prune {
        /// Do not ask (forge never asks; accepted for docker's scripts).
        #[arg(short, long)]
        force: bool,
    },
}

/// The store's networks.
pub fn networks(global: &crate::Global) -> anyhow::Result<forge_network::Networks> {
    let dir = global.store_root()?.join("forge").join("network");
    forge_network::Networks::open(&dir).with_context(|| format!("opening the network store {}", dir.display()))
}

/// Runs `forge network ...`.
pub fn run(global: &crate::Global, cmd: NetworkCommand) -> anyhow::Result<()> {
    match cmd {
        NetworkCommand::Prune { force: _ } => {
            let pruned = networks(global)?.prune()?;
            if !pruned.bridges.is_empty() {
                outln!("Deleted Networks:")?;
                for b in &pruned.bridges {
                    outln!("{b}")?;
                }
            }
            if pruned.leases > 0 {
                outln!("Removed {} leases of forge processes that died", pruned.leases)?;
            }
            Ok(())
        }
    }
}
