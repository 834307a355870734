//! Making an image from a plain root filesystem tarball (how a base image is made with no
//! registry, as `docker import` does): the tar (plain, gzip or zstd) streams once through the
//! layer writer into the content store, then a config and a manifest are written and tagged.

use std::io::{self, Read};
use std::path::Path;

use oci_spec::image::Descriptor;

use crate::archive::{decompress, Compression, DecompressError, LayerWriter};
use crate::content;
use crate::digest::Digest;
use crate::image::{History, ImageConfig};
use crate::store::{self, Layer, Store};

/// An import failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tarball is not plain, gzip or zstd.
    #[error("reading the rootfs tarball: {0}")]
    Decompress(#[from] DecompressError),
    /// Reading the tarball or compressing it failed.
    #[error("streaming the rootfs tarball into the store: {0}")]
    Stream(#[source] io::Error),
    /// The content store refused.
    #[error(transparent)]
    Content(#[from] content::Error),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// The `PATH` an imported image gets, as Docker's default.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Imports `tarball` as a one-layer linux/amd64 image tagged `name` in the store at `root`,
/// compressing the layer with `compression`. Returns the manifest's descriptor.
pub fn import_rootfs(root: &Path, tarball: impl Read, name: &str, compression: Compression) -> Result<Descriptor, Error> {
    // Before anything is stored.
    store::check_name(name)?;
    let store = Store::open(root)?;
    let _lease = store.lease("import", &[])?;
    let (_, mut tar) = decompress(tarball)?;
    let ingest = format!("import-{}-{}", std::process::id(), Digest::of(name.as_bytes()));
    let mut layer = LayerWriter::new(store.content().writer(&ingest)?, compression).map_err(Error::Stream)?;
    io::copy(&mut tar, &mut layer).map_err(Error::Stream)?;
    let (writer, digests) = layer.finish().map_err(Error::Stream)?;
    writer.commit(Some(digests.size), Some(&digests.digest))?;

    let mut config = ImageConfig::scratch();
    config.config.env = Some(vec![DEFAULT_PATH.to_string()]);
    config.rootfs.diff_ids.push(digests.diff_id.clone());
    config.history.push(History { created_by: Some("forge import".into()), ..History::default() });
    let layer = Layer {
        digest: digests.digest,
        diff_id: digests.diff_id,
        size: digests.size,
        media_type: compression.media_type().to_string(),
    };
    let descriptor = store.write_image(&config, &[layer])?;
    store.tag(name, &descriptor)?;
    Ok(descriptor)
}
