//! Tags: the OCI layout's `index.json`, where each tagged manifest is a descriptor annotated
//! with `org.opencontainers.image.ref.name`, so skopeo, umoci and podman see forge's tags.
//!
//! Every change is a read-modify-write of `index.json` under an `flock` on `forge/index.lock`,
//! held only for that small file (never during blob I/O), and written atomically: temp file,
//! fsync, rename, fsync of the directory.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType, SCHEMA_VERSION};
use rustix::fs::{flock, FlockOperation};

/// The annotation OCI layouts use for tags.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An index failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a path.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `index.json` does not parse.
    #[error("corrupt index {}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

/// The tags of an OCI layout.
#[derive(Debug, Clone)]
pub struct Index {
    root: PathBuf,
}

impl Index {
    /// Opens the index of the layout at `root`, writing `oci-layout` and an empty
    /// `index.json` when they are missing.
    pub fn open(root: &Path) -> Result<Index, Error> {
        fs::create_dir_all(root.join("forge")).map_err(io_err("creating", root))?;
        let index = Index { root: root.to_path_buf() };
        let layout = root.join("oci-layout");
        if !layout.exists() {
            crate::atomic::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err("writing", &layout))?;
        }
        if !index.path().exists() {
            let _lock = index.lock()?;
            if !index.path().exists() {
                index.write(Vec::new())?;
            }
        }
        Ok(index)
    }

    fn path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn lock(&self) -> Result<File, Error> {
        let path = self.root.join("forge").join("index.lock");
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err("opening", &path))?;
        flock(&file, FlockOperation::LockExclusive).map_err(|e| io_err("locking", &path)(e.into()))?;
        Ok(file)
    }

    fn read(&self) -> Result<Vec<Descriptor>, Error> {
        let path = self.path();
        let bytes = fs::read(&path).map_err(io_err("reading", &path))?;
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt { path: path.clone(), message: e.to_string() })?;
        Ok(index.manifests().clone())
    }

    fn write(&self, manifests: Vec<Descriptor>) -> Result<(), Error> {
        let path = self.path();
        let corrupt = |e: &dyn std::fmt::Display| Error::Corrupt { path: path.clone(), message: e.to_string() };
        let index = ImageIndexBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .map_err(|e| corrupt(&e))?;
        let bytes = crate::canonical::to_vec(&index).map_err(|e| corrupt(&e))?;
        crate::atomic::write(&path, &bytes).map_err(io_err("writing", &path))
    }

    /// Points `name` at `manifest`, replacing what the name pointed at before.
    pub fn tag(&self, name: &str, manifest: &Descriptor) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut manifests = self.read()?;
        // A rebuild that gave the same image rewrites nothing (the event is still told).
        if manifests.iter().any(|d| ref_name(d) == Some(name) && d.digest() == manifest.digest()) {
            self.event("tag", manifest.digest().as_ref(), name);
            return Ok(());
        }
        manifests.retain(|d| ref_name(d) != Some(name));
        let mut tagged = manifest.clone();
        let mut annotations: HashMap<String, String> = tagged.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME.to_string(), name.to_string());
        tagged.set_annotations(Some(annotations));
        manifests.push(tagged);
        manifests.sort_by(|a, b| ref_name(a).cmp(&ref_name(b)));
        self.write(manifests)?;
        self.event("tag", manifest.digest().as_ref(), name);
        Ok(())
    }

    /// The index's changes are the images' events (see [`crate::events`]).
    fn event(&self, action: &str, digest: &str, name: &str) {
        let attributes = [("name".to_string(), name.to_string())].into();
        crate::events::record_quietly(&self.root, crate::events::Event::now("image", action, digest, attributes));
    }

    /// The manifest descriptor `name` points at.
    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>, Error> {
        Ok(self.read()?.into_iter().find(|d| ref_name(d) == Some(name)))
    }

    /// Removes the tag; returns whether it existed.
    pub fn untag(&self, name: &str) -> Result<bool, Error> {
        let _lock = self.lock()?;
        let mut manifests = self.read()?;
        let gone: Vec<Descriptor> = manifests.iter().filter(|d| ref_name(d) == Some(name)).cloned().collect();
        manifests.retain(|d| ref_name(d) != Some(name));
        // Its last name gone, an image is gone (forge keeps no untagged images; its blobs wait
        // for `store gc`): docker's `delete`.
        let deleted: Vec<bool> = gone.iter().map(|d| !manifests.iter().any(|m| m.digest() == d.digest())).collect();
        if !gone.is_empty() {
            self.write(manifests)?;
        }
        for (d, deleted) in gone.iter().zip(deleted) {
            self.event("untag", d.digest().as_ref(), name);
            if deleted {
                self.event("delete", d.digest().as_ref(), name);
            }
        }
        Ok(!gone.is_empty())
    }

    /// Every tag with its manifest descriptor, sorted by name.
    pub fn list(&self) -> Result<Vec<(String, Descriptor)>, Error> {
        Ok(self.read()?.into_iter().filter_map(|d| ref_name(&d).map(|n| (n.to_string(), d.clone()))).collect())
    }
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref()?.get(REF_NAME).map(String::as_str)
}
