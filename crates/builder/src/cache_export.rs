//! `--cache-to`: writes the steps a build used (all of them, or those of the final image's
//! layers) as the cache artifact of `cache_layout.rs`, into an OCI layout directory or a
//! registry. Blobs already there are not written again, so exporting after a small change
//! sends only the new layers; the manifest goes last (the layout's `index.json` is replaced
//! atomically), so a reader sees the old cache or the new one, never half of one.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use forge_layerstore::archive::Compression;
use forge_layerstore::{atomic, distribute};
use forge_layerstore::cache::CacheEntry;
use forge_layerstore::diff::{LayerOptions, LayerSource};
use forge_layerstore::store::descriptor;
use forge_layerstore::{Digest, Layer, Store};
use base64::Engine as _;
use oci_spec::image::{ImageIndexBuilder, ImageManifestBuilder, MediaType};

use crate::cache_layout::{CacheConfig, CacheMode, CacheTo, ConfigEntry, FromRecords, MountEntry, ARTIFACT_TYPE, CONFIG_GZIP_MEDIA_TYPE, MAX_INLINE_CONFIG, VERSION};
use crate::ctx::BuildCtx;
use crate::Error;

/// The artifact's documents and the layers it names.
struct Artifact {
    layers: Vec<Layer>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

/// Exports `used` (each step's index key and entry, in build order) to `to`; `image_layers`
/// are the final image's, which `mode=min` keeps to.
pub(crate) fn export(build: &BuildCtx<'_>, to: &CacheTo, used: &[(Digest, CacheEntry)], image_layers: &[Layer]) -> Result<(), Error> {
    let (store, registry) = (build.store, build.opts.cache_registry.as_deref());
    let (what, mode, cache_mounts, compression) = match to {
        CacheTo::Local { dest, mode, cache_mounts, compression } => (dest.clone(), *mode, *cache_mounts, *compression),
        CacheTo::Registry { reference, mode, cache_mounts, compression } => (reference.into(), *mode, *cache_mounts, *compression),
    };
    let fail = |message: String| Error::CacheExport { path: what.clone(), message };
    let mounts = if cache_mounts { mount_layers(build).map_err(fail)? } else { Vec::new() };
    // Plain layers compressed through the store's memo: made once, the same blobs a push sends.
    let stored = |layer: &Layer| -> Result<Option<Layer>, String> {
        if compression == Compression::None || !distribute::is_plain(layer) {
            return Ok(None);
        }
        distribute::compressed_layer(store, layer, compression).map(Some).map_err(|e| format!("compressing layer {}: {e}", layer.digest))
    };
    let from_records = build.from_records.lock().unwrap().iter().map(|(id, (layers, records))| FromRecords { id: id.clone(), layers: layers.clone(), records: records.clone() }).collect();
    let artifact = artifact(used, image_layers, mode, mounts, from_records, &stored).map_err(fail)?;
    match to {
        CacheTo::Local { dest, .. } => {
            build.fetch_layers(&artifact.layers).map_err(fail)?;
            write_layout(store, dest, &artifact).map_err(fail)
        }
        CacheTo::Registry { reference, .. } => {
            let registry = registry.ok_or_else(|| fail("no registry client was given to the build".into()))?;
            for l in &artifact.layers {
                // A layer never fetched from the cache it is exported back to is there already;
                // one from another cache is fetched first.
                // A remote one is mounted from its repository or fetched by the push.
                if !store.content().exists(&l.digest) {
                    if build.lazy.origin(&l.digest) == Some(reference.as_str()) {
                        continue;
                    }
                    if store.remote().get(&l.digest).is_none() {
                        build.fetch_layers(std::slice::from_ref(l)).map_err(fail)?;
                    }
                }
                registry.push_blob(store, reference, &l.digest, l.size).map_err(|e| fail(format!("layer {}: {e}", l.digest)))?;
            }
            // The config goes up from the store, as every blob does.
            let config_digest = Digest::of(&artifact.config);
            if !store.content().exists(&config_digest) {
                let put = || -> Result<(), String> {
                    let mut w = store.content().writer(config_digest.as_str()).map_err(|e| e.to_string())?;
                    w.write_all(&artifact.config).map_err(|e| e.to_string())?;
                    w.commit(Some(artifact.config.len() as u64), Some(&config_digest)).map_err(|e| e.to_string())?;
                    Ok(())
                };
                put().map_err(|e| fail(format!("storing the cache config: {e}")))?;
            }
            registry.push_blob(store, reference, &config_digest, artifact.config.len() as u64).map_err(|e| fail(format!("cache config: {e}")))?;
            registry.put_manifest(reference, MediaType::ImageManifest.to_string().as_str(), artifact.manifest).map_err(|e| fail(format!("manifest: {e}")))
        }
    }
}

/// The cache mounts the build used, each as a layer in the store.
fn mount_layers(build: &BuildCtx<'_>) -> Result<Vec<MountEntry>, String> {
    let opts = LayerOptions { compression: build.opts.compression, source_date_epoch: build.opts.source_date_epoch };
    let mut out = Vec::new();
    for (id, (sharing, dir)) in build.mounts_used.lock().unwrap().iter() {
        let info = build.store.write_layer(&LayerSource::Dirs { lower: None, upper: dir }, &opts).map_err(|e| format!("cache mount {id:?}: {e}"))?;
        out.push(MountEntry { id: id.clone(), sharing: sharing.clone(), layer: Layer::from(&info) });
    }
    Ok(out)
}

/// The config and manifest over the entries `mode` keeps, and the cache mounts; `stored` gives
/// the blob the cache holds for a layer when it is not the layer's own.
fn artifact(used: &[(Digest, CacheEntry)], image_layers: &[Layer], mode: CacheMode, mounts: Vec<MountEntry>, from_records: Vec<FromRecords>, stored: &dyn Fn(&Layer) -> Result<Option<Layer>, String>) -> Result<Artifact, String> {
    let in_image: HashSet<&Digest> = image_layers.iter().map(|l| &l.digest).collect();
    let mut entries: BTreeMap<&Digest, &CacheEntry> = BTreeMap::new();
    for (key, entry) in used {
        if mode == CacheMode::Max || entry.layer.as_ref().is_some_and(|l| in_image.contains(&l.digest)) {
            entries.insert(key, entry);
        }
    }
    let mut config_entries = Vec::new();
    let mut layers: BTreeMap<Digest, Layer> = BTreeMap::new();
    for (key, e) in &entries {
        let stored = e.layer.as_ref().map(stored).transpose()?.flatten();
        if let Some(blob) = stored.as_ref().or(e.layer.as_ref()) {
            layers.insert(blob.digest.clone(), blob.clone());
        }
        config_entries.push(ConfigEntry { key: (*key).clone(), layer: e.layer.clone(), stored, inputs: e.inputs.clone(), created: e.created.clone() });
    }
    for m in &mounts {
        layers.insert(m.layer.digest.clone(), m.layer.clone());
    }
    let config = CacheConfig { version: VERSION, entries: config_entries, mounts, from_records };
    let encode = |e: &dyn std::fmt::Display| format!("encoding the cache: {e}");
    let config = gzip(&serde_json::to_vec(&config).map_err(|e| encode(&e))?).map_err(|e| encode(&e))?;
    let layer_descriptors = layers
        .values()
        .map(|l| descriptor(MediaType::from(l.media_type.as_str()), l.size, &l.digest))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| encode(&e))?;
    let mut config_descriptor = descriptor(MediaType::Other(CONFIG_GZIP_MEDIA_TYPE.into()), config.len() as u64, &Digest::of(&config)).map_err(|e| encode(&e))?;
    if config.len() as u64 <= MAX_INLINE_CONFIG {
        config_descriptor.set_data(Some(base64::engine::general_purpose::STANDARD.encode(&config)));
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(ARTIFACT_TYPE.into()))
        .config(config_descriptor)
        .layers(layer_descriptors)
        .build()
        .map_err(|e| encode(&e))?;
    let manifest = serde_json::to_vec(&manifest).map_err(|e| encode(&e))?;
    Ok(Artifact { layers: layers.into_values().collect(), config, manifest })
}

fn gzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    io::Write::write_all(&mut gz, bytes)?;
    gz.finish()
}

/// Writes the artifact as an OCI layout at `dest`, keeping the blobs that are there.
fn write_layout(store: &Store, dest: &Path, artifact: &Artifact) -> Result<(), String> {
    let io = |what: &str, path: &Path, e: io::Error| format!("{what} {}: {e}", path.display());
    let blobs = dest.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|e| io("creating", &blobs, e))?;
    let layout = dest.join("oci-layout");
    if !layout.exists() {
        atomic::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(|e| io("writing", &layout, e))?;
    }
    for layer in &artifact.layers {
        let path = blobs.join(layer.digest.hex());
        if fs::metadata(&path).is_ok_and(|m| m.len() == layer.size) {
            continue;
        }
        let mut blob = store.blob(&layer.digest).map_err(|e| format!("layer {}: {e}", layer.digest))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&blobs).map_err(|e| io("writing in", &blobs, e))?;
        io::copy(&mut blob, &mut tmp).map_err(|e| io("writing", &path, e))?;
        tmp.as_file().sync_all().map_err(|e| io("syncing", &path, e))?;
        tmp.persist(&path).map_err(|e| io("writing", &path, e.error))?;
    }
    put_blob(&blobs, &artifact.config).map_err(|e| io("writing the config in", &blobs, e))?;
    let manifest_digest = put_blob(&blobs, &artifact.manifest).map_err(|e| io("writing the manifest in", &blobs, e))?;
    let encode = |e: &dyn std::fmt::Display| format!("encoding the layout index: {e}");
    let mut manifest_descriptor = descriptor(MediaType::ImageManifest, artifact.manifest.len() as u64, &manifest_digest).map_err(|e| encode(&e))?;
    manifest_descriptor.set_artifact_type(Some(MediaType::Other(ARTIFACT_TYPE.into())));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_descriptor])
        .build()
        .map_err(|e| encode(&e))?;
    let index_path = dest.join("index.json");
    let index_bytes = serde_json::to_vec(&index).map_err(|e| encode(&e))?;
    atomic::write(&index_path, &index_bytes).map_err(|e| io("writing", &index_path, e))
}

/// Writes a small blob under its digest; returns the digest.
fn put_blob(blobs: &Path, bytes: &[u8]) -> io::Result<Digest> {
    let digest = Digest::of(bytes);
    let path = blobs.join(digest.hex());
    if !path.exists() {
        atomic::write(&path, bytes)?;
    }
    Ok(digest)
}
