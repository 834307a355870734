//! `forge tag SOURCE TARGET` and `forge rmi IMAGE...`.

use anyhow::{bail, Context};
use clap::Args;
use forge_layerstore::store::normalize_tag;
use forge_layerstore::Store;

use crate::stdout::outln;

/// Arguments of `forge tag`.
#[derive(Args)]
pub struct TagArgs {
    /// The image (tag, ID or digest).
    source: String,
    /// The new name.
    target: String,
}

/// Arguments of `forge rmi`.
#[derive(Args)]
pub struct RmiArgs {
    /// Tags to remove; an image ID removes every tag of that image.
    #[arg(required = true)]
    images: Vec<String>,
}

/// Runs `forge tag`.
pub fn tag(global: &crate::Global, args: TagArgs) -> anyhow::Result<()> {
    let store = Store::open(&global.store_root()?).context("opening the store")?;
    let desc = store.resolve(&args.source)?;
    store.tag(&args.target, &desc)?;
    Ok(())
}

/// Runs `forge rmi`. Blobs are freed by `forge store gc`.
pub fn rmi(global: &crate::Global, args: RmiArgs) -> anyhow::Result<()> {
    let store = Store::open(&global.store_root()?).context("opening the store")?;
    for name in &args.images {
        if store.index().untag(&normalize_tag(name))? {
            outln!("Untagged: {}", normalize_tag(name))?;
            continue;
        }
        let desc = store.resolve(name).with_context(|| format!("removing {name}"))?;
        let mut any = false;
        for (tag, d) in store.index().list()? {
            if d.digest() == desc.digest() {
                store.index().untag(&tag)?;
                outln!("Untagged: {tag}")?;
                any = true;
            }
        }
        if !any {
            bail!("image {name} has no tags to remove");
        }
    }
    Ok(())
}
