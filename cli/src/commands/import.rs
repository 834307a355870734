//! `forge import ROOTFS.tar[.gz|.zst] NAME`: a one-layer image from a root filesystem tarball.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use forge_layerstore::archive::Compression;

/// Arguments of `forge import`.
#[derive(Args)]
pub struct ImportArgs {
    /// The tarball (plain, gzip or zstd; `-` for standard input).
    tarball: PathBuf,
    /// The image name to tag it with, such as `busybox:latest`.
    name: String,
    /// How to compress the layer.
    #[arg(long, value_enum, default_value_t = LayerCompression::Gzip)]
    compression: LayerCompression,
}

/// Layer compression choices.
#[derive(Clone, Copy, ValueEnum)]
pub enum LayerCompression {
    /// A plain tar: cheap to make; compressed when the image is pushed or saved.
    None,
    Gzip,
    Zstd,
}

/// Runs `forge import`.
pub fn run(global: &crate::Global, args: ImportArgs) -> anyhow::Result<()> {
    let root = global.store_root()?;
    let compression = match args.compression {
        LayerCompression::None => Compression::None,
        LayerCompression::Gzip => Compression::Gzip,
        LayerCompression::Zstd => Compression::Zstd,
    };
    let input: Box<dyn std::io::Read> = if args.tarball.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&args.tarball).with_context(|| format!("opening {}", args.tarball.display()))?)
    };
    let desc = forge_layerstore::import::import_rootfs(&root, input, &args.name, compression)
        .with_context(|| format!("importing {} as {}", args.tarball.display(), args.name))?;
    crate::stdout::outln!("{}", desc.digest())?;
    Ok(())
}
