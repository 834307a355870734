//! Tags: the OCI layout's `index.json`, where each tagged manifest is a descriptor annotated
//! with `org.opencontainers.image.ref.name`, so skopeo, umoci and podman see forge's tags.
//!
//! Every change is a read-modify-write of `index.json` under an `flock` on `forge/index.lock`,
//! held only for that small file (never during blob I/O), and written atomically: temp file,
//! fsync, rename, fsync of the directory.
//!
//! # Pending tags
//!
//! A tag whose image still has layers kept only as snapshots ([`crate::snapshot_blob`]) would
//! show outside tools (`skopeo inspect oci:<store>:tag`) an image whose blobs are missing. Such a
//! tag is *pending* ([`Index::tag_pending`]): recorded in forge's own `forge/pending-tags.json`,
//! under the same lock, and not in `index.json` until its blobs are stored
//! ([`crate::pending`] makes them, then [`Index::promote`] moves the tag). forge's own
//! [`resolve`](Index::resolve), [`list`](Index::list) and [`untag`](Index::untag) see a pending
//! tag over `index.json`'s (so `run`, `push`, `save`, `images` and gc treat it as a tag at once);
//! outside tools see the name's previous image, or no such name, until the promotion. A later
//! [`tag`](Index::tag) or `tag_pending` of the same name replaces a pending one: the newest wins.

use std::collections::HashMap;
use std::str::FromStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType, SCHEMA_VERSION};
use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

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

/// A tag waiting for its image's blobs before it enters `index.json` (see [Pending tags](self#pending-tags)).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingTag {
    /// The tag (normalized).
    pub name: String,
    /// The manifest descriptor, annotated with the tag as `index.json` will hold it.
    pub descriptor: Descriptor,
    /// Why the last attempt to store its blobs failed; such a tag is not retried on its own
    /// (`forge store fsck` reports its image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PendingTag {
    /// The manifest's digest.
    pub fn manifest(&self) -> Option<Digest> {
        Digest::from_str(self.descriptor.digest().as_ref()).ok()
    }
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

    fn pending_path(&self) -> PathBuf {
        pending_path(&self.root)
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

    fn read_pending(&self) -> Result<Vec<PendingTag>, Error> {
        let path = self.pending_path();
        match fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err("reading", &path)(e)),
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt { path: path.clone(), message: e.to_string() }),
        }
    }

    /// Writes the pending tags; none removes the file (its absence is what every command checks).
    fn write_pending(&self, pending: &[PendingTag]) -> Result<(), Error> {
        let path = self.pending_path();
        if pending.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("removing", &path)(e)),
                _ => Ok(()),
            };
        }
        let bytes = serde_json::to_vec(pending).map_err(|e| Error::Corrupt { path: path.clone(), message: e.to_string() })?;
        crate::atomic::write(&path, &bytes).map_err(io_err("writing", &path))
    }

    /// Points `name` at `manifest`, replacing what the name pointed at before (a pending tag
    /// of the name too).
    pub fn tag(&self, name: &str, manifest: &Descriptor) -> Result<(), Error> {
        let _lock = self.lock()?;
        self.drop_pending(name)?;
        self.tag_locked(name, manifest)?;
        self.event("tag", manifest.digest().as_ref(), name);
        Ok(())
    }

    fn tag_locked(&self, name: &str, manifest: &Descriptor) -> Result<(), Error> {
        let mut manifests = self.read()?;
        // A rebuild that gave the same image rewrites nothing.
        if manifests.iter().any(|d| ref_name(d) == Some(name) && d.digest() == manifest.digest()) {
            return Ok(());
        }
        manifests.retain(|d| ref_name(d) != Some(name));
        manifests.push(annotated(name, manifest));
        manifests.sort_by(|a, b| ref_name(a).cmp(&ref_name(b)));
        self.write(manifests)
    }

    fn drop_pending(&self, name: &str) -> Result<(), Error> {
        let mut pending = self.read_pending()?;
        let before = pending.len();
        pending.retain(|p| p.name != name);
        if pending.len() != before {
            self.write_pending(&pending)?;
        }
        Ok(())
    }

    /// Points `name` at `manifest` for forge only, until [`Index::promote`] puts it into
    /// `index.json` (see [Pending tags](self#pending-tags)).
    pub fn tag_pending(&self, name: &str, manifest: &Descriptor) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut pending = self.read_pending()?;
        pending.retain(|p| p.name != name);
        pending.push(PendingTag { name: name.to_string(), descriptor: annotated(name, manifest), error: None });
        pending.sort_by(|a, b| a.name.cmp(&b.name));
        self.write_pending(&pending)?;
        self.event("tag", manifest.digest().as_ref(), name);
        Ok(())
    }

    /// The pending tags.
    pub fn pending(&self) -> Result<Vec<PendingTag>, Error> {
        self.read_pending()
    }

    /// Whether any tag is pending (see [`has_pending`]).
    pub fn has_pending(&self) -> bool {
        has_pending(&self.root)
    }

    /// Moves the pending tag `name` into `index.json` if it still names `manifest` (a newer
    /// tag of the name, or its removal, wins); whether it did. The caller has stored the
    /// image's blobs. `index.json` is written first: a crash between the two writes leaves the
    /// tag in both, and the next promotion finds its blobs stored and ends it.
    pub fn promote(&self, name: &str, manifest: &Digest) -> Result<bool, Error> {
        let _lock = self.lock()?;
        let mut pending = self.read_pending()?;
        let Some(at) = pending.iter().position(|p| p.name == name && p.descriptor.digest().as_ref() == manifest.as_str()) else {
            return Ok(false);
        };
        let tag = pending.remove(at);
        self.tag_locked(name, &tag.descriptor)?;
        self.write_pending(&pending)?;
        Ok(true)
    }

    /// Records why the pending tag `name` (if it still names `manifest`) could not be promoted.
    pub fn fail_pending(&self, name: &str, manifest: &Digest, error: &str) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut pending = self.read_pending()?;
        if let Some(p) = pending.iter_mut().find(|p| p.name == name && p.descriptor.digest().as_ref() == manifest.as_str()) {
            p.error = Some(error.to_string());
            self.write_pending(&pending)?;
        }
        Ok(())
    }

    /// The index's changes are the images' events (see [`crate::events`]).
    fn event(&self, action: &str, digest: &str, name: &str) {
        let attributes = [("name".to_string(), name.to_string())].into();
        crate::events::record_quietly(&self.root, crate::events::Event::now("image", action, digest, attributes));
    }

    /// The manifest descriptor `name` points at (a pending tag's over `index.json`'s).
    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>, Error> {
        if let Some(p) = self.read_pending()?.into_iter().find(|p| p.name == name) {
            return Ok(Some(p.descriptor));
        }
        Ok(self.read()?.into_iter().find(|d| ref_name(d) == Some(name)))
    }

    /// Removes the tag; returns whether it existed.
    pub fn untag(&self, name: &str) -> Result<bool, Error> {
        let _lock = self.lock()?;
        let mut manifests = self.read()?;
        let mut pending = self.read_pending()?;
        let mut gone: Vec<Descriptor> = manifests.iter().filter(|d| ref_name(d) == Some(name)).cloned().collect();
        let published = gone.len();
        gone.extend(pending.iter().filter(|p| p.name == name).map(|p| p.descriptor.clone()));
        manifests.retain(|d| ref_name(d) != Some(name));
        pending.retain(|p| p.name != name);
        // Its last name gone, an image is gone (forge keeps no untagged images; its blobs wait
        // for `store gc`): docker's `delete`.
        let deleted: Vec<bool> = gone.iter().map(|d| !manifests.iter().chain(pending.iter().map(|p| &p.descriptor)).any(|m| m.digest() == d.digest())).collect();
        if published > 0 {
            self.write(manifests)?;
        }
        if gone.len() > published {
            self.write_pending(&pending)?;
        }
        for (d, deleted) in gone.iter().zip(deleted) {
            self.event("untag", d.digest().as_ref(), name);
            if deleted {
                self.event("delete", d.digest().as_ref(), name);
            }
        }
        Ok(!gone.is_empty())
    }

    /// Every tag with its manifest descriptor (a pending tag's over `index.json`'s), sorted by name.
    pub fn list(&self) -> Result<Vec<(String, Descriptor)>, Error> {
        let mut tags: std::collections::BTreeMap<String, Descriptor> = self.read()?.into_iter().filter_map(|d| ref_name(&d).map(|n| (n.to_string(), d.clone()))).collect();
        tags.extend(self.read_pending()?.into_iter().map(|p| (p.name, p.descriptor)));
        Ok(tags.into_iter().collect())
    }
}

/// Where the pending tags are kept.
fn pending_path(root: &Path) -> PathBuf {
    root.join("forge").join("pending-tags.json")
}

/// Whether any tag of the store at `root` is pending: one `stat`, cheap enough for every
/// command to ask, and nothing opened or made.
pub fn has_pending(root: &Path) -> bool {
    pending_path(root).exists()
}

/// `manifest` annotated with the tag `name`.
fn annotated(name: &str, manifest: &Descriptor) -> Descriptor {
    let mut tagged = manifest.clone();
    let mut annotations: HashMap<String, String> = tagged.annotations().clone().unwrap_or_default();
    annotations.insert(REF_NAME.to_string(), name.to_string());
    tagged.set_annotations(Some(annotations));
    tagged
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref()?.get(REF_NAME).map(String::as_str)
}
