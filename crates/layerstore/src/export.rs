//! Moving images out of and into the store as single files:
//!
//! * `oci-archive`: a tar of an OCI image layout (what `skopeo copy oci-archive:` reads);
//! * `docker-archive`: the same layout plus Docker's `manifest.json`, the format `docker save`
//!   writes since Docker 25 and that `docker load` and `podman load` accept (older Docker
//!   reads only `manifest.json`, which points into `blobs/`, so one file serves both);
//! * a plain directory unpacked from an image's layers (`forge build --output type=local`).
//!
//! Blobs stream from the content store into the tar and back; only JSON documents are held.
//! Loading accepts both archive kinds (and `docker save` tars of older Docker, whose layers are
//! `<id>/layer.tar`), and an OCI layout directory such as `skopeo copy` writes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageIndex};

use crate::archive::{apply_layer, ApplyOptions, Compression, WhiteoutMode};
use crate::digest::Digest;
use crate::image::ImageConfig;
use crate::index::REF_NAME;
use crate::store::{Error, Image, Layer, Store};

/// The archive kinds [`save`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout in a tar.
    Oci,
    /// An OCI layout plus Docker's `manifest.json`.
    Docker,
}

fn io_err(what: &'static str) -> impl Fn(io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// Writes the images `images` (each with the names to give it) as one archive to `out`.
pub fn save(store: &Store, images: &[(Vec<String>, Image)], format: ArchiveFormat, out: impl Write) -> Result<(), Error> {
    let mut tar = tar::Builder::new(out);
    let mut written: std::collections::BTreeSet<Digest> = Default::default();
    let mut index_entries = Vec::new();
    let mut docker_manifest = Vec::new();
    for (names, image) in images {
        // Plain layers leave the machine gzipped, as a push sends them.
        let image = &crate::distribute::for_distribution(store, image, Compression::Gzip)?;
        let manifest_digest = Digest::from_str(image.descriptor.digest().as_ref()).map_err(|e| Error::Encode { what: "digest", message: e.to_string() })?;
        let mut blobs = vec![manifest_digest.clone(), image.id()?];
        let layers = image.layers()?;
        store.ensure_layers(&layers)?;
        blobs.extend(layers.iter().map(|l| l.digest.clone()));
        for d in blobs {
            if written.insert(d.clone()) {
                let file = store.blob(&d)?;
                let size = file.metadata().map_err(io_err("blob"))?.len();
                append(&mut tar, &format!("blobs/sha256/{}", d.hex()), size, file)?;
            }
        }
        let mut plain = image.descriptor.clone();
        plain.set_annotations(None);
        if names.is_empty() {
            index_entries.push(plain.clone());
        }
        for name in names {
            let mut tagged = plain.clone();
            tagged.set_annotations(Some([(REF_NAME.to_string(), name.clone())].into_iter().collect()));
            index_entries.push(tagged);
        }
        docker_manifest.push(serde_json::json!({
            "Config": format!("blobs/sha256/{}", image.id()?.hex()),
            "RepoTags": names,
            "Layers": layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect::<Vec<_>>(),
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index_entries,
    });
    let json = |v: &serde_json::Value| crate::canonical::to_vec(v).map_err(|e| Error::Encode { what: "archive index", message: e.to_string() });
    let docs = [
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json", json(&index)?),
    ];
    for (name, bytes) in docs {
        append(&mut tar, name, bytes.len() as u64, &bytes[..])?;
    }
    if format == ArchiveFormat::Docker {
        let bytes = serde_json::to_vec(&docker_manifest).map_err(|e| Error::Encode { what: "manifest.json", message: e.to_string() })?;
        append(&mut tar, "manifest.json", bytes.len() as u64, &bytes[..])?;
    }
    tar.into_inner().map_err(io_err("archive"))?.flush().map_err(io_err("archive"))?;
    Ok(())
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, size: u64, data: impl Read) -> Result<(), Error> {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data).map_err(io_err("archive entry"))
}

/// Unpacks the layers of `image` into the directory `dest` (created if missing), applying
/// whiteouts, as the image's root filesystem.
pub fn unpack_image(store: &Store, image: &Image, dest: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dest).map_err(io_err("destination directory"))?;
    let opts = ApplyOptions { whiteouts: WhiteoutMode::Delete, device_nodes: rustix::process::geteuid().is_root() };
    let layers = image.layers()?;
    store.ensure_layers(&layers)?;
    for layer in layers {
        let blob = io::BufReader::new(store.blob(&layer.digest)?);
        apply_layer(blob, dest, &opts).map_err(|e| Error::Invalid { what: "layer", digest: layer.digest.clone(), message: e.to_string() })?;
    }
    Ok(())
}

/// Loads every image of an archive (`oci-archive` or `docker-archive`) read from `input` into
/// the store and tags it with the names the archive gives it. Returns the names and manifest
/// descriptors. Blobs are verified as they are stored; nothing is tagged unless every blob of
/// the image arrived.
pub fn load(store: &Store, input: impl Read) -> Result<Vec<(String, Descriptor)>, Error> {
    let mut archive = tar::Archive::new(input);
    let mut docs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // Files of old `docker save` tars (`<id>/layer.tar`, `<id>.json`) stored under their digest.
    let mut by_path: BTreeMap<String, Digest> = BTreeMap::new();
    for entry in archive.entries().map_err(io_err("archive"))? {
        let mut entry = entry.map_err(io_err("archive"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(io_err("archive"))?.to_string_lossy().trim_start_matches("./").to_string();
        if matches!(path.as_str(), "index.json" | "manifest.json" | "oci-layout") {
            let mut bytes = Vec::new();
            entry.by_ref().take(16 << 20).read_to_end(&mut bytes).map_err(io_err("archive"))?;
            docs.insert(path, bytes);
            continue;
        }
        let named = path.strip_prefix("blobs/sha256/").and_then(|h| Digest::from_str(&format!("sha256:{h}")).ok());
        let mut writer = store.content().writer(&format!("load-{}-{path}", std::process::id()))?;
        io::copy(&mut entry, &mut writer).map_err(io_err("archive blob"))?;
        let digest = writer.commit(None, named.as_ref())?;
        by_path.insert(path, digest);
    }
    if let Some(index) = docs.get("index.json") {
        let index: ImageIndex = serde_json::from_slice(index).map_err(|e| Error::Invalid { what: "archive index.json", digest: Digest::of(index), message: e.to_string() })?;
        return tag_index(store, &index);
    }
    let Some(manifest) = docs.get("manifest.json") else {
        return Err(Error::Io { what: "archive", source: io::Error::other("neither index.json nor manifest.json found: not an image archive") });
    };
    load_docker_manifest(store, manifest, &by_path)
}

/// Loads an OCI image layout directory (as `skopeo copy ... oci:DIR` writes it).
pub fn load_layout(store: &Store, dir: &Path) -> Result<Vec<(String, Descriptor)>, Error> {
    let index_path = dir.join("index.json");
    let bytes = std::fs::read(&index_path).map_err(io_err("index.json of the layout"))?;
    let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| Error::Invalid { what: "layout index.json", digest: Digest::of(&bytes), message: e.to_string() })?;
    let blobs = dir.join("blobs/sha256");
    for entry in std::fs::read_dir(&blobs).map_err(io_err("layout blobs"))? {
        let entry = entry.map_err(io_err("layout blobs"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(digest) = Digest::from_str(&format!("sha256:{name}")) else { continue };
        if store.content().reuse(&digest)? {
            continue;
        }
        let mut writer = store.content().writer(&format!("load-{}-{name}", std::process::id()))?;
        io::copy(&mut File::open(entry.path()).map_err(io_err("layout blob"))?, &mut writer).map_err(io_err("layout blob"))?;
        writer.commit(None, Some(&digest))?;
    }
    tag_index(store, &index)
}

fn tag_index(store: &Store, index: &ImageIndex) -> Result<Vec<(String, Descriptor)>, Error> {
    // Every name is checked before the first is tagged: a bad one tags nothing.
    for d in index.manifests() {
        if let Some(name) = d.annotations().as_ref().and_then(|a| a.get(REF_NAME)) {
            crate::store::check_name(name)?;
        }
    }
    let mut out = Vec::new();
    for d in index.manifests() {
        // Reading the image checks that its manifest, config and layers are all there.
        let image = store.image_of(d)?;
        for l in image.layers()? {
            if !store.content().exists(&l.digest) {
                return Err(crate::content::Error::NotFound(l.digest).into());
            }
        }
        let mut plain = d.clone();
        let name = d.annotations().as_ref().and_then(entry_name);
        plain.set_annotations(None);
        if let Some(name) = name {
            store.tag(&name, &plain)?;
            out.push((crate::store::normalize_tag(&name), plain));
        } else {
            out.push((String::new(), plain));
        }
    }
    Ok(out)
}

/// The name an index entry gives its image. Docker 25 and later write only the tag in
/// `org.opencontainers.image.ref.name` (which the OCI spec allows) and the full name in
/// containerd's annotation, so that one wins; Docker Hub's implied prefix is dropped, as
/// `docker images` shows names.
fn entry_name(annotations: &std::collections::HashMap<String, String>) -> Option<String> {
    match annotations.get("io.containerd.image.name") {
        Some(full) => {
            let short = full.strip_prefix("docker.io/").unwrap_or(full);
            Some(short.strip_prefix("library/").unwrap_or(short).to_string())
        }
        None => annotations.get(REF_NAME).cloned(),
    }
}

/// Builds OCI manifests for the images of a `manifest.json` (Docker's save format).
fn load_docker_manifest(store: &Store, bytes: &[u8], by_path: &BTreeMap<String, Digest>) -> Result<Vec<(String, Descriptor)>, Error> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        layers: Vec<String>,
    }
    let invalid = |m: String| Error::Invalid { what: "manifest.json", digest: Digest::of(bytes), message: m };
    let entries: Vec<Entry> = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    // Every name is checked before the first is tagged: a bad one tags nothing.
    for name in entries.iter().flat_map(|e| e.repo_tags.iter().flatten()) {
        crate::store::check_name(name)?;
    }
    let find = |p: &str| by_path.get(p).cloned().ok_or_else(|| invalid(format!("{p} is not in the archive")));
    let mut out = Vec::new();
    for e in entries {
        let config_digest = find(&e.config)?;
        let config: ImageConfig = store.get_json(&config_digest, "image config")?;
        let mut layers = Vec::new();
        for (path, diff_id) in e.layers.iter().zip(&config.rootfs.diff_ids) {
            let digest = find(path)?;
            let media_type = sniff_layer(store, &digest)?;
            let size = store.content().size(&digest)?;
            layers.push(Layer { digest, diff_id: diff_id.clone(), size, media_type: media_type.to_string() });
        }
        if layers.len() != config.rootfs.diff_ids.len() {
            return Err(invalid(format!("{} layers for {} diffIDs", layers.len(), config.rootfs.diff_ids.len())));
        }
        let desc = store.write_image(&config, &layers)?;
        for name in e.repo_tags.unwrap_or_default() {
            store.tag(&name, &desc)?;
            out.push((crate::store::normalize_tag(&name), desc.clone()));
        }
    }
    Ok(out)
}

/// The OCI media type of a stored layer blob, from its first bytes.
fn sniff_layer(store: &Store, digest: &Digest) -> Result<&'static str, Error> {
    let mut head = [0u8; 4];
    let n = store.content().open_blob(digest)?.read(&mut head).map_err(io_err("layer"))?;
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip.media_type(),
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd.media_type(),
        _ => Compression::None.media_type(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_index_entries() {
        let a = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(entry_name(&a(&[(REF_NAME, "app:1")])).as_deref(), Some("app:1"));
        // docker save of Docker 28: the ref name is the tag alone.
        assert_eq!(entry_name(&a(&[(REF_NAME, "d"), ("io.containerd.image.name", "docker.io/library/p1:d")])).as_deref(), Some("p1:d"));
        assert_eq!(entry_name(&a(&[("io.containerd.image.name", "docker.io/me/app:2")])).as_deref(), Some("me/app:2"));
        assert_eq!(entry_name(&a(&[("io.containerd.image.name", "127.0.0.1:5000/x:3")])).as_deref(), Some("127.0.0.1:5000/x:3"));
        assert_eq!(entry_name(&a(&[])), None);
    }
}
