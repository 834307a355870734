//! `forge pull REF`: pull an image from a registry into the store.

use anyhow::Context;
use clap::Args;
use forge_layerstore::Store;
use forge_registry::Reference;

use crate::commands::transfer::{block_on, progress, RegistryOptions};

/// Arguments of `forge pull`.
#[derive(Args)]
pub struct PullArgs {
    /// The image (`host:port/repo:tag`, `repo@sha256:...`).
    reference: String,
    #[command(flatten)]
    registry: RegistryOptions,
    /// Also unpack the layers as snapshots, ready to build on.
    #[arg(long)]
    unpack: bool,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `forge pull`.
pub fn run(global: &crate::Global, args: PullArgs) -> anyhow::Result<()> {
    let store_root = global.store_root()?;
    let store = Store::open(&store_root).context("opening the store")?;
    let _lease = store.lease("pull", &[])?;
    let reference = Reference::parse(&args.reference)?;
    let client = forge_registry::Client::new(args.registry.for_store(&store_root));
    let bars = progress(args.quiet);
    let pulled = block_on(client.pull(&reference, &store, bars.as_ref()))?.with_context(|| format!("pulling {reference}"))?;
    if args.unpack {
        let image = store.image_of(&pulled.manifest)?;
        store.unpack(&image.layers()?).context("unpacking the layers")?;
    }
    crate::stdout::outln!("{}", pulled.name)?;
    Ok(())
}
