//! `forge save` and `forge load`: images to and from archive files (`docker save`/`docker load`
//! compatible, or OCI), and loading an OCI layout directory such as `skopeo copy` writes.

use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

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
    let store = crate::commands::build_cache::fetching(Store::open(&global.store_root()?).context("opening the store")?, Default::default());
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
    write_output(&args.output, |out| Ok(export::save(&store, &images, format, out)?))
}

/// Writes an archive to `path`. A regular file (or a new one) is written whole or not at all:
/// into a temporary file beside it, renamed over it at the end. Anything else that exists
/// there (`/dev/null`, a FIFO, a terminal) is opened and written as it is: renaming over it
/// would replace the device or FIFO with a regular file.
pub fn write_output(path: &Path, write: impl FnOnce(BufWriter<File>) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let context = || format!("writing {}", path.display());
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() && !meta.is_dir() => {
            let file = OpenOptions::new().write(true).open(path).with_context(context)?;
            write(BufWriter::new(file)).with_context(context)
        }
        _ => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(".".as_ref());
            let tmp = tempfile::NamedTempFile::new_in(dir).with_context(context)?;
            write(BufWriter::new(tmp.reopen().with_context(context)?)).with_context(context)?;
            tmp.persist(path).with_context(context)?;
            Ok(())
        }
    }
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
            crate::stdout::outln!("Loaded image: {}", d.digest())?;
        } else {
            crate::stdout::outln!("Loaded image: {name}")?;
        }
    }
    Ok(())
}
