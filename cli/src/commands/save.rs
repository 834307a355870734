//! `forge save` and `forge load`: images to and from archive files (`docker save`/`docker load`
//! compatible, or OCI), and loading an OCI layout directory such as `skopeo copy` writes.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use forge_layerstore::export::{self, ArchiveFormat};
use forge_layerstore::store::normalize_tag;
use forge_layerstore::Store;

#[derive(Clone, Copy, ValueEnum)]
enum SaveFormat {
    /// Loadable by `docker load` and `podman load` (also an OCI layout).
    Docker,
    /// An OCI image layout (`oci-archive`).
    Oci,
}

/// Arguments of `forge save`.
#[derive(Args)]
pub struct SaveArgs {
    /// Images to save.
    #[arg(required = true)]
    images: Vec<String>,
    /// The archive to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Archive format.
    #[arg(long, value_enum, default_value_t = SaveFormat::Docker)]
    format: SaveFormat,
}

/// Arguments of `forge load`.
#[derive(Args)]
pub struct LoadArgs {
    /// An archive (`docker save` or OCI), or an OCI layout directory; default standard input.
    #[arg(short, long)]
    input: Option<PathBuf>,
}

/// Runs `forge save`.
pub fn save(global: &crate::Global, args: SaveArgs) -> anyhow::Result<()> {
    let store = Store::open(&global.store_root()?).context("opening the store")?;
    let mut images = Vec::new();
    for name in &args.images {
        let image = store.image(name).with_context(|| format!("saving {name}"))?;
        let names = if store.index().resolve(&normalize_tag(name))?.is_some() { vec![normalize_tag(name)] } else { Vec::new() };
        images.push((names, image));
    }
    let format = match args.format {
        SaveFormat::Docker => ArchiveFormat::Docker,
        SaveFormat::Oci => ArchiveFormat::Oci,
    };
    let dir = args.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(".".as_ref()).to_path_buf();
    let tmp = tempfile::NamedTempFile::new_in(&dir).with_context(|| format!("writing {}", args.output.display()))?;
    export::save(&store, &images, format, BufWriter::new(tmp.reopen()?)).with_context(|| format!("writing {}", args.output.display()))?;
    tmp.persist(&args.output).with_context(|| format!("writing {}", args.output.display()))?;
    Ok(())
}

/// Runs `forge load`.
pub fn load(global: &crate::Global, args: LoadArgs) -> anyhow::Result<()> {
    let store = Store::open(&global.store_root()?).context("opening the store")?;
    let _lease = store.lease("load", &[])?;
    let loaded = match &args.input {
        Some(p) if p.is_dir() => export::load_layout(&store, p).with_context(|| format!("loading {}", p.display()))?,
        Some(p) => export::load(&store, File::open(p).with_context(|| format!("opening {}", p.display()))?).with_context(|| format!("loading {}", p.display()))?,
        None => export::load(&store, std::io::stdin().lock()).context("loading from standard input")?,
    };
    for (name, d) in loaded {
        if name.is_empty() {
            println!("Loaded image: {}", d.digest());
        } else {
            println!("Loaded image: {name}");
        }
    }
    Ok(())
}
