//! `forge inspect IMAGE...`: images as JSON, in the shape `docker image inspect` prints.

use anyhow::Context;
use clap::Args;
use forge_layerstore::Store;

/// Arguments of `forge inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Images (tags, IDs or digests).
    #[arg(required = true)]
    images: Vec<String>,
}

/// Runs `forge inspect`.
pub fn run(global: &crate::Global, args: InspectArgs) -> anyhow::Result<()> {
    let store = Store::open(&global.store_root()?).context("opening the store")?;
    let tags = store.index().list()?;
    let mut out = Vec::new();
    for name in &args.images {
        let image = store.image(name).with_context(|| format!("inspecting {name}"))?;
        let repo_tags: Vec<&String> = tags.iter().filter(|(_, d)| d.digest() == image.descriptor.digest()).map(|(n, _)| n).collect();
        let layers = image.layers()?;
        out.push(serde_json::json!({
            "Id": image.id()?,
            "RepoTags": repo_tags,
            "ManifestDigest": image.descriptor.digest().to_string(),
            "Created": image.config.created,
            "Author": image.config.author,
            "Architecture": image.config.architecture,
            "Os": image.config.os,
            "Config": image.config.config,
            "RootFS": image.config.rootfs,
            "History": image.config.history,
            "Layers": layers,
            "Size": layers.iter().map(|l| l.size).sum::<u64>(),
        }));
    }
    crate::stdout::outln!("{}", serde_json::to_string_pretty(&out)?)?;
    Ok(())
}
