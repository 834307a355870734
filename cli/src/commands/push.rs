//! `forge push LOCAL [DEST]`: push an image of the store to a registry.

use anyhow::Context;
use clap::Args;
use forge_layerstore::Store;
use forge_registry::Reference;

use crate::commands::transfer::{block_on, progress, RegistryOptions};

/// Arguments of `forge push`.
#[derive(Args)]
pub struct PushArgs {
    /// The image in the store (a tag or ID).
    local: String,
    /// Where to push it (default: LOCAL, which must then name a registry, like docker).
    dest: Option<String>,
    #[command(flatten)]
    registry: RegistryOptions,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `forge push`.
pub fn run(global: &crate::Global, args: PushArgs) -> anyhow::Result<()> {
    let store = crate::commands::build_cache::fetching(Store::open(&global.store_root()?).context("opening the store")?, args.registry.config());
    // The image being sent stays whole even if its tag is removed and gc runs meanwhile (an
    // `rmi` and a gc both in the instant between this resolve and the lease could still take it).
    let manifest = store.resolve(&args.local).with_context(|| format!("pushing {}", args.local))?;
    let _lease = store.lease("push", &[manifest.digest().as_ref().parse()?])?;
    let dest = Reference::parse(args.dest.as_deref().unwrap_or(&args.local))?;
    let client = args.registry.client();
    let bars = progress(args.quiet);
    let desc = block_on(client.push(&store, &args.local, &dest, bars.as_ref()))?.with_context(|| format!("pushing {} to {dest}", args.local))?;
    crate::stdout::outln!("{dest}@{}", desc.digest())?;
    Ok(())
}
