//! Making an image from a plain root filesystem tarball (how a base image is made with no
//! registry, as `docker import` does): the tar (plain, gzip or zstd) streams once through the
//! layer writer into the content store, then a config and a manifest are written and tagged.

use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use oci_spec::image::{Descriptor, MediaType};

use crate::archive::{decompress, Compression, DecompressError, LayerWriter};
use crate::content::{self, ContentStore};
use crate::digest::Digest;
use crate::index::{self, Index};

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
    /// The index refused.
    #[error(transparent)]
    Index(#[from] index::Error),
    /// A JSON document could not be made.
    #[error("encoding the {what}: {message}")]
    Encode {
        /// Which document.
        what: &'static str,
        /// Why.
        message: String,
    },
}

/// The `PATH` an imported image gets, as Docker's default.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Imports `tarball` as a one-layer linux/amd64 image tagged `name` in the store at `root`,
/// compressing the layer with `compression`. Returns the manifest's descriptor.
pub fn import_rootfs(root: &Path, tarball: impl Read, name: &str, compression: Compression) -> Result<Descriptor, Error> {
    let content = ContentStore::open(root)?;
    let index = Index::open(root)?;
    let (_, mut tar) = decompress(tarball)?;
    let ingest = format!("import-{}-{}", std::process::id(), Digest::of(name.as_bytes()));
    let mut layer = LayerWriter::new(content.writer(&ingest)?, compression).map_err(Error::Stream)?;
    io::copy(&mut tar, &mut layer).map_err(Error::Stream)?;
    let (writer, layer_digests) = layer.finish().map_err(Error::Stream)?;
    writer.commit(Some(layer_digests.size), Some(&layer_digests.digest))?;

    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": [DEFAULT_PATH] },
        "rootfs": { "type": "layers", "diff_ids": [layer_digests.diff_id.as_str()] },
        "history": [ { "created_by": "forge import" } ],
    });
    let (config_digest, config_size) = put_json(&content, &config, "image config")?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.as_str(), "size": config_size },
        "layers": [ { "mediaType": compression.media_type(), "digest": layer_digests.digest.as_str(), "size": layer_digests.size } ],
    });
    let (manifest_digest, manifest_size) = put_json(&content, &manifest, "manifest")?;
    let digest = oci_spec::image::Digest::from_str(manifest_digest.as_str())
        .map_err(|e| Error::Encode { what: "manifest descriptor", message: e.to_string() })?;
    let descriptor = Descriptor::new(MediaType::ImageManifest, manifest_size, digest);
    index.tag(name, &descriptor)?;
    Ok(descriptor)
}

/// Stores a JSON document canonically; returns its digest and size.
fn put_json(content: &ContentStore, value: &serde_json::Value, what: &'static str) -> Result<(Digest, u64), Error> {
    let bytes = crate::canonical::to_vec(value).map_err(|e| Error::Encode { what, message: e.to_string() })?;
    let digest = Digest::of(&bytes);
    let mut writer = content.writer(digest.as_str())?;
    io::Write::write_all(&mut writer, &bytes).map_err(Error::Stream)?;
    writer.commit(Some(bytes.len() as u64), Some(&digest))?;
    Ok((digest, bytes.len() as u64))
}
