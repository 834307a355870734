//! `--cache-to type=local`: writes the steps a build used (all of them, or those of the final
//! image's layers) into an OCI layout directory (`cache_layout.rs`). Blobs already there are
//! not written again, so exporting after a small change writes only the new layers; the
//! layout's `index.json` is replaced last, atomically, so a reader sees the old cache or the
//! new one, never half of one.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use forge_layerstore::atomic;
use forge_layerstore::cache::CacheEntry;
use forge_layerstore::store::descriptor;
use forge_layerstore::{Digest, Layer, Store};
use oci_spec::image::{ImageIndexBuilder, ImageManifestBuilder, MediaType};

use crate::cache_layout::{CacheConfig, CacheMode, CacheTo, ConfigEntry, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, VERSION};
use crate::Error;

/// Exports `used` (each step's index key and entry, in build order) to `to`; `image_layers`
/// are the final image's, which `mode=min` keeps to.
pub(crate) fn export(store: &Store, to: &CacheTo, used: &[(Digest, CacheEntry)], image_layers: &[Layer]) -> Result<(), Error> {
    let CacheTo::Local { dest, mode } = to;
    let fail = |message: String| Error::CacheExport { path: dest.clone(), message };
    let io = |what: &str, path: &Path, e: io::Error| fail(format!("{what} {}: {e}", path.display()));
    let in_image: HashSet<&Digest> = image_layers.iter().map(|l| &l.digest).collect();
    let mut entries: BTreeMap<&Digest, &CacheEntry> = BTreeMap::new();
    for (key, entry) in used {
        let wanted = *mode == CacheMode::Max || entry.layer.as_ref().is_some_and(|l| in_image.contains(&l.digest));
        if wanted {
            entries.insert(key, entry);
        }
    }

    let blobs = dest.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|e| io("creating", &blobs, e))?;
    let layout = dest.join("oci-layout");
    if !layout.exists() {
        atomic::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(|e| io("writing", &layout, e))?;
    }
    let mut layers: BTreeMap<&Digest, &Layer> = BTreeMap::new();
    for layer in entries.values().filter_map(|e| e.layer.as_ref()) {
        layers.insert(&layer.digest, layer);
    }
    for layer in layers.values() {
        let path = blobs.join(layer.digest.hex());
        if fs::metadata(&path).is_ok_and(|m| m.len() == layer.size) {
            continue;
        }
        let mut blob = store.content().open_blob(&layer.digest).map_err(|e| fail(format!("layer {}: {e}", layer.digest)))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&blobs).map_err(|e| io("writing in", &blobs, e))?;
        io::copy(&mut blob, &mut tmp).map_err(|e| io("writing", &path, e))?;
        tmp.as_file().sync_all().map_err(|e| io("syncing", &path, e))?;
        tmp.persist(&path).map_err(|e| io("writing", &path, e.error))?;
    }

    let config = CacheConfig {
        version: VERSION,
        entries: entries.iter().map(|(k, e)| ConfigEntry { key: (*k).clone(), layer: e.layer.clone(), inputs: e.inputs.clone() }).collect(),
    };
    let encode = |e: &dyn std::fmt::Display| fail(format!("encoding the cache: {e}"));
    let config_bytes = serde_json::to_vec(&config).map_err(|e| encode(&e))?;
    let config_digest = put_blob(&blobs, &config_bytes).map_err(|e| io("writing the config in", &blobs, e))?;
    let layer_descriptors = layers
        .values()
        .map(|l| descriptor(MediaType::from(l.media_type.as_str()), l.size, &l.digest))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| encode(&e))?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(ARTIFACT_TYPE.into()))
        .config(descriptor(MediaType::Other(CONFIG_MEDIA_TYPE.into()), config_bytes.len() as u64, &config_digest).map_err(|e| encode(&e))?)
        .layers(layer_descriptors)
        .build()
        .map_err(|e| encode(&e))?;
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| encode(&e))?;
    let manifest_digest = put_blob(&blobs, &manifest_bytes).map_err(|e| io("writing the manifest in", &blobs, e))?;
    let mut manifest_descriptor = descriptor(MediaType::ImageManifest, manifest_bytes.len() as u64, &manifest_digest).map_err(|e| encode(&e))?;
    manifest_descriptor.set_artifact_type(Some(MediaType::Other(ARTIFACT_TYPE.into())));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_descriptor])
        .build()
        .map_err(|e| encode(&e))?;
    let index_path = dest.join("index.json");
    let index_bytes = serde_json::to_vec(&index).map_err(|e| encode(&e))?;
    atomic::write(&index_path, &index_bytes).map_err(|e| io("writing", &index_path, e))?;
    Ok(())
}

/// Writes a small blob under its digest; returns the digest.
fn put_blob(blobs: &Path, bytes: &[u8]) -> io::Result<Digest> {
    let digest = Digest::of(bytes);
    let path: PathBuf = blobs.join(digest.hex());
    if !path.exists() {
        atomic::write(&path, bytes)?;
    }
    Ok(digest)
}
