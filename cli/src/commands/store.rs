//! `forge store gc` and `forge store fsck`: maintenance of the store itself.

use anyhow::{bail, Context};
use clap::Subcommand;
use forge_layerstore::maintenance;
use forge_layerstore::Store;

use crate::commands::images::Format;
use crate::stdout::outln;

/// `forge store ...`.
#[derive(Subcommand)]
pub enum StoreCommand {
    /// Remove blobs and snapshots that no tag, build-cache entry or running operation uses, and
    /// what killed operations left (ingests, half-made snapshots, scratch directories, mounts).
    Gc {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Re-hash every blob and check every tagged image; exit 1 when something is wrong.
    Fsck {
        /// Remove corrupt blobs, then the tags of images that cannot be read or lack a blob
        /// (those images must be pulled or built again).
        #[arg(long)]
        repair: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Store the layer tars of pending tags (a tagged build of a big image leaves them to a
    /// detached process) and put the tags into the layout's `index.json`, waiting for that
    /// process first; prints the tags published. Run it before another tool (skopeo, umoci,
    /// podman) reads the store right after such a build.
    FinishTags {
        /// Run as the build's detached process.
        #[arg(long)]
        detached: bool,
    },
}

/// Runs `forge store ...`.
pub fn run(global: &crate::Global, cmd: StoreCommand) -> anyhow::Result<()> {
    let store = Store::open(&global.store_root()?).context("opening the store")?;
    match cmd {
        StoreCommand::FinishTags { detached } => crate::commands::finish_tags::run(&store, detached)?,
        StoreCommand::Gc { format } => {
            // Steps of a killed forge leave cgroups (and maybe processes) no one else removes.
            if let Err(e) = forge_sandbox::remove_leftovers() {
                eprintln!("warning: removing the cgroups of killed builds: {e}");
            }
            // ... and network namespaces, veth pairs and leases (`forge network prune` does the same).
            if store.root().join("forge").join("network").exists() {
                if let Err(e) = crate::commands::network::networks(global).and_then(|n| Ok(n.reconcile()?)) {
                    eprintln!("warning: removing the networks of killed builds and containers: {e}");
                }
            }
            let r = maintenance::gc(&store)?;
            // After the blobs: the builder's memos of `COPY --from` trees whose layers went.
            let memos = forge_builder::gc_from_records(&store).context("removing the COPY --from records of layers gone")?;
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&r)?)?,
                Format::Table => {
                    outln!("removed {} blobs ({} bytes) and {} snapshots", r.blobs_removed, r.bytes_freed, r.snapshots_removed)?;
                    if memos > 0 {
                        outln!("removed the COPY --from records of {memos} trees whose layers are gone")?;
                    }
                    let leftovers = r.leases_expired + r.ingests_removed + r.half_made_snapshots_removed + r.scratch_dirs_removed + r.mounts_detached;
                    if leftovers > 0 {
                        outln!(
                            "cleaned up after killed operations: {} leases, {} ingests ({} bytes), {} half-made snapshots, {} scratch directories, {} mounts",
                            r.leases_expired, r.ingests_removed, r.ingest_bytes_freed, r.half_made_snapshots_removed, r.scratch_dirs_removed, r.mounts_detached
                        )?;
                    }
                }
            }
        }
        StoreCommand::Fsck { repair, format } => {
            let r = maintenance::fsck(&store, repair)?;
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&r)?)?,
                Format::Table => {
                    outln!("checked {} blobs", r.blobs_checked)?;
                    for d in &r.corrupt {
                        outln!("corrupt blob {d}{}", if repair { " (removed)" } else { "" })?;
                    }
                    for (tag, problem) in &r.broken_tags {
                        outln!("broken image {tag}: {problem}{}", if repair { " (tag removed)" } else { "" })?;
                    }
                    for (path, problem) in &r.damaged_batches {
                        outln!("damaged batch {}: {problem}{}", path.display(), if repair { " (removed)" } else { "" })?;
                    }
                    if !r.remote.is_empty() {
                        outln!("{} layers are remote (in a registry build cache; fetched when first read)", r.remote.len())?;
                    }
                }
            }
            if !r.is_clean() {
                bail!("the store has problems{}", if repair { "; corrupt blobs, broken tags and damaged batches were removed" } else { ": run `forge store fsck --repair`" });
            }
        }
    }
    Ok(())
}
