//! `forge store gc` and `forge store fsck`: maintenance of the store itself.

use anyhow::{bail, Context};
use clap::Subcommand;
use forge_layerstore::maintenance;
use forge_layerstore::Store;

use crate::commands::images::Format;

/// `forge store ...`.
#[derive(Subcommand)]
pub enum StoreCommand {
    /// Remove blobs and snapshots that no tag or build-cache entry uses.
    Gc {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Re-hash every blob and check every tagged image; exit 1 when something is wrong.
    Fsck {
        /// Remove corrupt blobs (their images must then be pulled or built again).
        #[arg(long)]
        repair: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// Runs `forge store ...`.
pub fn run(global: &crate::Global, cmd: StoreCommand) -> anyhow::Result<()> {
    let store = Store::open(&global.store_root()?).context("opening the store")?;
    match cmd {
        StoreCommand::Gc { format } => {
            // Steps of a killed forge leave cgroups (and maybe processes) no one else removes.
            if let Err(e) = forge_sandbox::remove_leftovers() {
                eprintln!("warning: removing the cgroups of killed builds: {e}");
            }
            let r = maintenance::gc(&store)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                Format::Table => println!("removed {} blobs ({} bytes) and {} snapshots", r.blobs_removed, r.bytes_freed, r.snapshots_removed),
            }
        }
        StoreCommand::Fsck { repair, format } => {
            let r = maintenance::fsck(&store, repair)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                Format::Table => {
                    println!("checked {} blobs", r.blobs_checked);
                    for d in &r.corrupt {
                        println!("corrupt blob {d}{}", if repair { " (removed)" } else { "" });
                    }
                    for (tag, problem) in &r.broken_tags {
                        println!("broken image {tag}: {problem}");
                    }
                }
            }
            if !r.is_clean() {
                bail!("the store has problems{}", if repair { "; corrupt blobs were removed" } else { ": run `forge store fsck --repair`" });
            }
        }
    }
    Ok(())
}
