//! The store as one handle: the content store, the index of tags and the snapshotter of one
//! root, plus the image-level operations built from them (write a layer, write and read an
//! image, make an image's snapshots). Each piece stays usable on its own; this is the narrow
//! front door most programs need.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use oci_spec::image::{
    Descriptor, DescriptorBuilder, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::content::{self, ContentStore};
use crate::diff::{self, LayerInfo, LayerOptions, LayerSource};
use crate::digest::Digest;
use crate::image::ImageConfig;
use crate::index::{self, Index};
use crate::remote::{Fetcher, RemoteBlob, Remotes};
use crate::snapshot_blob::{SnapshotBlob, SnapshotBlobs};
use crate::snapshot::{self, Snapshotter};

/// How [`Store::put_json_with`] waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// The blob's bytes and name ([`content::Writer::commit`]).
    Synced,
    /// Its bytes; its name with the next synced commit ([`content::Writer::commit_named_by_next`]).
    NamedByNext,
    /// Neither ([`ContentStore::put_unsynced`]).
    Unsynced,
}

/// Remote blobs fetched side by side.
const PARALLEL_FETCHES: usize = 4;

/// A layer being written into a store's content store.
pub type StoreLayerStream = diff::LayerStream<std::io::BufWriter<content::Writer>>;

/// JSON documents (manifests, configs, indexes) larger than this are refused when read: they
/// are read whole, and no real one comes near it. A pull refuses them at the same size.
pub const MAX_JSON_BYTES: u64 = 16 << 20;

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The content store refused.
    #[error(transparent)]
    Content(#[from] content::Error),
    /// The index refused.
    #[error(transparent)]
    Index(#[from] index::Error),
    /// The snapshotter refused.
    #[error(transparent)]
    Snapshot(#[from] snapshot::Error),
    /// A layer could not be written.
    #[error(transparent)]
    Diff(#[from] diff::Error),
    /// No image has this name.
    #[error("image {0:?} not found in the store")]
    NotFound(String),
    /// Several images match a short ID.
    #[error("short ID {0:?} matches several images; give more characters")]
    Ambiguous(String),
    /// A stored document is not what it should be.
    #[error("{what} {digest}: {message}")]
    Invalid {
        /// Which document.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing outside the content store failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// An image name that docker would refuse (so no tag is written).
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName {
        /// The name as given (its first 200 characters).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A blob the store knows only as remote (see [`crate::remote`]) could not be fetched.
    #[error("blob {digest} is not in the store yet, only in {from}: {message}")]
    Remote {
        /// The blob.
        digest: Digest,
        /// Where it is.
        from: crate::remote::RemoteSource,
        /// Why it could not be fetched.
        message: String,
    },
    /// A blob kept as a snapshot (see [`crate::snapshot_blob`]) could not be made from it.
    #[error("blob {digest} is kept as snapshot {chain_id}, which cannot make it (run `forge store fsck`): {message}")]
    SnapshotBlob {
        /// The blob.
        digest: Digest,
        /// The snapshot.
        chain_id: Digest,
        /// What went wrong.
        message: String,
    },
    /// A document could not be encoded.
    #[error("encoding the {what}: {message}")]
    Encode {
        /// Which document.
        what: &'static str,
        /// Why.
        message: String,
    },
}

/// An image read from the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest's descriptor (as tagged, when reached by tag).
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config.
    pub config: ImageConfig,
}

impl Image {
    /// The image ID as Docker shows it: the config's digest.
    pub fn id(&self) -> Result<Digest, Error> {
        to_digest(self.manifest.config().digest().as_ref())
    }

    /// The manifest's layers with their diffIDs, bottom first.
    pub fn layers(&self) -> Result<Vec<Layer>, Error> {
        let diff_ids = &self.config.rootfs.diff_ids;
        if diff_ids.len() != self.manifest.layers().len() {
            return Err(Error::Invalid {
                what: "image",
                digest: to_digest(self.descriptor.digest().as_ref())?,
                message: format!("{} layers but {} diffIDs", self.manifest.layers().len(), diff_ids.len()),
            });
        }
        self.manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(d, diff_id)| {
                Ok(Layer {
                    digest: to_digest(d.digest().as_ref())?,
                    diff_id: diff_id.clone(),
                    size: d.size(),
                    media_type: d.media_type().to_string(),
                })
            })
            .collect()
    }
}

/// A layer as an image refers to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Layer {
    /// The blob's digest.
    pub digest: Digest,
    /// The uncompressed tar's digest.
    pub diff_id: Digest,
    /// The blob's size.
    pub size: u64,
    /// The blob's media type.
    pub media_type: String,
}

impl From<&LayerInfo> for Layer {
    fn from(info: &LayerInfo) -> Layer {
        Layer {
            digest: info.digest.clone(),
            diff_id: info.diff_id.clone(),
            size: info.size,
            media_type: info.media_type.to_string(),
        }
    }
}

/// A store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    content: ContentStore,
    index: Index,
    snapshots: Snapshotter,
    remotes: Remotes,
    snapshot_blobs: SnapshotBlobs,
    /// What fetches remote blobs, when the program gave one ([`Store::with_fetcher`]).
    fetcher: Option<Arc<dyn Fetcher>>,
    /// One fetch of remote blobs at a time: two threads needing the same blob would lock
    /// each other's ingest out.
    fetching: Arc<Mutex<()>>,
    /// This process's scratch directory, made on first use (see [`crate::scratch`]).
    scratch: std::sync::Arc<std::sync::Mutex<Option<crate::scratch::Scratch>>>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, Error> {
        for dir in [root.to_path_buf(), root.join("forge")] {
            crate::permissions::private_dir(&dir).map_err(|source| Error::Io { what: "securing the store directory", source })?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            content: ContentStore::open(root)?,
            index: Index::open(root)?,
            snapshots: Snapshotter::open(root)?,
            remotes: Remotes::open(root),
            snapshot_blobs: SnapshotBlobs::open(root),
            fetcher: None,
            fetching: Default::default(),
            scratch: Default::default(),
        })
    }

    /// The store with `fetcher` to fetch remote blobs when their content is needed (without
    /// one, reading such a blob is an [`Error::Remote`]).
    pub fn with_fetcher(mut self, fetcher: Arc<dyn Fetcher>) -> Store {
        self.fetcher = Some(fetcher);
        self
    }

    /// The records of blobs known by descriptor and source only.
    pub fn remote(&self) -> &Remotes {
        &self.remotes
    }

    /// The records of blobs kept as the snapshot they were made from.
    pub fn snapshot_blobs(&self) -> &SnapshotBlobs {
        &self.snapshot_blobs
    }

    /// Opens blob `digest` for reading, fetching it first if the store knows it as remote.
    pub fn blob(&self, digest: &Digest) -> Result<std::fs::File, Error> {
        self.fetch_remote(std::slice::from_ref(digest))?;
        Ok(self.content.open_blob(digest)?)
    }

    /// Makes the blobs of `layers` local, fetching (side by side) those known as remote.
    /// Blobs that are neither local nor remote are left to the reader to report.
    pub fn ensure_layers(&self, layers: &[Layer]) -> Result<(), Error> {
        let digests: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).collect();
        self.fetch_remote(&digests)
    }

    fn fetch_remote(&self, digests: &[Digest]) -> Result<(), Error> {
        self.materialize(digests)?;
        let remote = |digests: &[Digest]| -> Vec<RemoteBlob> {
            let mut seen = std::collections::HashSet::new();
            digests.iter().filter(|d| !self.content.exists(d) && seen.insert(*d)).filter_map(|d| self.remotes.get(d)).collect()
        };
        if remote(digests).is_empty() {
            return Ok(());
        }
        let _one = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        // Another thread may have fetched some while this one waited.
        let todo = remote(digests);
        let next = AtomicU64::new(0);
        let results: Vec<Result<(), Error>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..PARALLEL_FETCHES.min(todo.len()))
                .map(|_| {
                    s.spawn(|| -> Result<(), Error> {
                        while let Some(blob) = todo.get(next.fetch_add(1, Ordering::Relaxed) as usize) {
                            self.fetch_one(blob)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        });
        results.into_iter().collect()
    }

    fn fetch_one(&self, blob: &RemoteBlob) -> Result<(), Error> {
        let fail = |message: String| Error::Remote { digest: blob.digest.clone(), from: blob.source.clone(), message };
        let fetcher = self.fetcher.as_ref().ok_or_else(|| fail("this command cannot fetch it (no registry client)".into()))?;
        match &blob.stored {
            None => fetcher.fetch(self, &blob.source, &blob.digest, blob.size).map_err(|e| fail(e.to_string()))?,
            Some(stored) => {
                if !self.content.exists(&stored.digest) {
                    fetcher.fetch(self, &blob.source, &stored.digest, stored.size).map_err(|e| fail(e.to_string()))?;
                }
                let plain = Layer { digest: blob.digest.clone(), diff_id: stored.diff_id.clone(), size: blob.size, media_type: crate::archive::Compression::None.media_type().to_string() };
                crate::distribute::expand(self, stored, &plain).map_err(|e| fail(e.to_string()))?;
            }
        }
        if !self.content.exists(&blob.digest) {
            return Err(fail("the fetch stored nothing".into()));
        }
        // The blob is local now; a record left by a failed removal is only a stale hint.
        let _ = self.remotes.remove(&blob.digest);
        Ok(())
    }

    /// Makes the blobs of `digests` that are kept as snapshots, one after the other (each is
    /// one sequential read of a tree).
    pub(crate) fn materialize(&self, digests: &[Digest]) -> Result<(), Error> {
        let kept = |d: &Digest| if self.content.exists(d) { None } else { self.snapshot_blobs.get(d) };
        if !digests.iter().any(|d| kept(d).is_some()) {
            return Ok(());
        }
        let _one = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        for d in digests {
            // Another thread may have made it while this one waited.
            let Some(blob) = kept(d) else { continue };
            let fail = |message: String| Error::SnapshotBlob { digest: blob.digest.clone(), chain_id: blob.chain_id.clone(), message };
            let mut writer = self.content.writer_hashed_by_caller(&unique_ingest("snapblob"))?;
            // Read by other tools reading the layout, or once by a later push or archive: not
            // worth the page cache (the snapshot it is made from stays there for builds and runs).
            writer.past_page_cache();
            let mut out = std::io::BufWriter::with_capacity(256 << 10, writer);
            let made = blob.stream(self, &mut out).map_err(fail)?;
            let writer = out.into_inner().map_err(|e| fail(e.into_error().to_string()))?;
            // A snapshot changed since stores nothing (the writer takes the digest hashed here
            // as the bytes' own, and the commit checks the size).
            if made.digest != blob.digest {
                writer.discard();
                return Err(fail(content::Error::DigestMismatch { what: "its tar".into(), expected: blob.digest.clone(), actual: made.digest }.to_string()));
            }
            writer.commit(Some(blob.size), Some(&blob.digest)).map_err(|e| fail(e.to_string()))?;
            // The blob is local now; a record left by a failed removal is only a stale hint.
            let _ = self.snapshot_blobs.remove(&blob.digest);
        }
        Ok(())
    }

    /// Hashes the plain layer of the upperdir `upper` without storing it, for a snapshot that
    /// is then committed and given to [`Store::keep_as_snapshot`]. A layer with compression
    /// is written into the content store as [`Store::write_layer`] does.
    pub fn hash_layer(&self, upper: &Path, opts: &LayerOptions) -> Result<LayerInfo, Error> {
        if opts.compression != crate::archive::Compression::None {
            return self.write_layer(&LayerSource::OverlayUpper(upper), opts);
        }
        Ok(diff::write_layer(&LayerSource::OverlayUpper(upper), opts, std::io::sink())?)
    }

    /// Records that blob `layer` (hashed by [`Store::hash_layer`]) is the tar of committed
    /// snapshot `chain_id`, unless the blob is stored already.
    pub fn keep_as_snapshot(&self, layer: &LayerInfo, chain_id: &Digest, opts: &LayerOptions) -> Result<(), Error> {
        if opts.compression != crate::archive::Compression::None || self.content.exists(&layer.digest) {
            return Ok(());
        }
        let record = SnapshotBlob { digest: layer.digest.clone(), size: layer.size, chain_id: chain_id.clone(), source_date_epoch: opts.source_date_epoch };
        self.snapshot_blobs.record(&record).map_err(|source| Error::Io { what: "recording a blob kept as a snapshot", source })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Blobs by digest.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// Tags.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Unpacked layers.
    pub fn snapshots(&self) -> &Snapshotter {
        &self.snapshots
    }

    /// Takes a [`Lease`](crate::lease::Lease) for `operation` (`build`, `pull`, ...): until it
    /// drops, `gc` keeps whatever this store gets or reuses from now on, and the images `roots`
    /// name (manifest digests) with everything they reach. Take it before the first write.
    pub fn lease(&self, operation: &str, roots: &[Digest]) -> Result<crate::lease::Lease, Error> {
        crate::lease::acquire(&self.root, operation, roots).map_err(|source| Error::Io { what: "taking a lease on the store", source })
    }

    /// Stamps the config and layer blobs of `image` as reused now, so that the caller's
    /// [lease](crate::lease) holds them: an image built on it names those layers, and they must
    /// outlive an `rmi` of the base plus a gc while the build runs. [`Error::NotFound`] when one
    /// is already gone.
    pub fn hold(&self, image: &Image) -> Result<(), Error> {
        if !self.content.reuse(&image.id()?)? {
            return Err(Error::NotFound(format!("config {} of image {}", image.id()?, image.descriptor.digest())));
        }
        for digest in image.layers()?.into_iter().map(|l| l.digest) {
            // A remote layer is held by its record until it is fetched.
            let remote = || self.remotes.reuse(&digest).map_err(|source| Error::Io { what: "stamping a remote blob's record", source });
            let kept = || self.snapshot_blobs.reuse(&digest).map_err(|source| Error::Io { what: "stamping a snapshot blob's record", source });
            if !self.content.reuse(&digest)? && !remote()? && !kept()? {
                return Err(Error::NotFound(format!("blob {digest} of image {}", image.descriptor.digest())));
            }
        }
        Ok(())
    }

    /// A directory for scratch work on the same filesystem as the store (so results can be
    /// renamed into it). It is this process's own, for as long as this store value (or a clone)
    /// lives; `gc` removes it, and unmounts what is mounted in it, once the process is gone.
    pub fn tmp_dir(&self) -> Result<PathBuf, Error> {
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if scratch.is_none() {
            let tmp = self.root.join("forge").join("tmp");
            *scratch = Some(crate::scratch::Scratch::create(&tmp).map_err(|source| content::Error::Io { op: "creating a scratch directory in", path: tmp, source })?);
        }
        Ok(scratch.as_ref().expect("made above").path().to_path_buf())
    }

    /// Stores `value` as canonical JSON; returns its digest and size.
    pub fn put_json<T: Serialize>(&self, value: &T, what: &'static str) -> Result<(Digest, u64), Error> {
        self.put_json_with(value, what, Durability::Synced)
    }

    fn put_json_with<T: Serialize>(&self, value: &T, what: &'static str, durability: Durability) -> Result<(Digest, u64), Error> {
        let bytes = crate::canonical::to_vec(value).map_err(|e| Error::Encode { what, message: e.to_string() })?;
        let digest = Digest::of(&bytes);
        // Either way a stored blob is compared, not only found: an unsynced write torn by a
        // crash is written again.
        if durability == Durability::Unsynced {
            self.content.put_unsynced(&digest, &bytes)?;
        } else if !self.content.reuse_same(&digest, &bytes)? {
            let mut writer = self.content.writer(&unique_ingest(what))?;
            writer.write_all(&bytes).map_err(|source| content::Error::Io { op: "writing", path: self.root.clone(), source })?;
            if durability == Durability::Synced {
                writer.commit(Some(bytes.len() as u64), Some(&digest))?;
            } else {
                writer.commit_named_by_next(Some(bytes.len() as u64), Some(&digest))?;
            }
        }
        Ok((digest, bytes.len() as u64))
    }

    /// Reads a stored JSON document, checking its digest.
    pub fn get_json<T: DeserializeOwned>(&self, digest: &Digest, what: &'static str) -> Result<T, Error> {
        let invalid = |message: String| Error::Invalid { what, digest: digest.clone(), message };
        let file = self.content.open_blob(digest)?;
        let mut bytes = Vec::new();
        file.take(MAX_JSON_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| invalid(e.to_string()))?;
        if bytes.len() as u64 > MAX_JSON_BYTES {
            return Err(invalid(format!("larger than {MAX_JSON_BYTES} bytes")));
        }
        if &Digest::of(&bytes) != digest {
            return Err(invalid("stored bytes do not match the digest (run `forge store fsck`)".into()));
        }
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))
    }

    /// Writes the layer for `source` straight into the content store.
    pub fn write_layer(&self, source: &LayerSource<'_>, opts: &LayerOptions) -> Result<LayerInfo, Error> {
        let mut layer = self.stream_layer(opts)?;
        layer.write_source(source)?;
        self.commit_layer(layer)
    }

    /// Starts a layer written into the content store while its change is being made (see
    /// [`diff::LayerStream`]); [`Store::commit_layer`] stores it, dropping it stores nothing.
    pub fn stream_layer(&self, opts: &LayerOptions) -> Result<StoreLayerStream, Error> {
        let writer = self.content.writer_hashed_by_caller(&unique_ingest("layer"))?;
        Ok(diff::LayerStream::new(opts, std::io::BufWriter::new(writer))?)
    }

    /// Ends a layer started with [`Store::stream_layer`] and stores its blob.
    pub fn commit_layer(&self, layer: StoreLayerStream) -> Result<LayerInfo, Error> {
        let (info, out) = layer.finish()?;
        let writer = out.into_inner().map_err(|e| diff::Error::Write(e.into_error()))?;
        writer.commit(Some(info.size), Some(&info.digest))?;
        Ok(info)
    }

    /// Stores `config` and a manifest over `layers`; returns the manifest's descriptor.
    pub fn write_image(&self, config: &ImageConfig, layers: &[Layer]) -> Result<Descriptor, Error> {
        // The manifest's commit, next, makes the config's name durable with its own (one
        // directory fsync less per image).
        self.write_image_with(config, layers, [Durability::NamedByNext, Durability::Synced])
    }

    /// [`write_image`](Store::write_image) without waiting for the disk, for an image nothing
    /// names yet (a build's, before it is tagged): [`Store::tag`] makes it durable before the
    /// tag names it. A crash before that may lose it (a rebuild from the cache makes it again)
    /// or leave a blob torn, which nothing names and the next write of it replaces.
    pub fn write_image_unsynced(&self, config: &ImageConfig, layers: &[Layer]) -> Result<Descriptor, Error> {
        self.write_image_with(config, layers, [Durability::Unsynced; 2])
    }

    fn write_image_with(&self, config: &ImageConfig, layers: &[Layer], [for_config, for_manifest]: [Durability; 2]) -> Result<Descriptor, Error> {
        let (config_digest, config_size) = self.put_json_with(config, "image config", for_config)?;
        let encode = |e: oci_spec::OciSpecError| Error::Encode { what: "manifest", message: e.to_string() };
        let layers = layers
            .iter()
            .map(|l| descriptor(MediaType::from(l.media_type.as_str()), l.size, &l.digest))
            .collect::<Result<Vec<_>, _>>()?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(MediaType::ImageConfig, config_size, &config_digest)?)
            .layers(layers)
            .build()
            .map_err(encode)?;
        let (digest, size) = self.put_json_with(&manifest, "manifest", for_manifest)?;
        descriptor(MediaType::ImageManifest, size, &digest)
    }

    /// Makes the image `manifest` durable before something names it: its manifest and config
    /// (checked against their digests: one an unsynced write left torn is refused) and the
    /// records of its layers that stay in a registry. Its layers' blobs are durable when stored.
    /// The config is not parsed: an image forge cannot read is still tagged, for fsck to report.
    pub(crate) fn sync_image(&self, manifest: &Descriptor) -> Result<(), Error> {
        let digest = |d: &oci_spec::image::Digest| Digest::from_str(d.as_ref()).map_err(|e| Error::Encode { what: "digest", message: e.to_string() });
        let manifest_digest = digest(manifest.digest())?;
        let parsed: ImageManifest = self.get_json(&manifest_digest, "manifest")?;
        let config = digest(parsed.config().digest())?;
        self.content.verify(&config)?;
        self.content.sync(&[&manifest_digest, &config])?;
        let remote: Vec<Digest> = parsed.layers().iter().map(|l| digest(l.digest())).collect::<Result<Vec<_>, _>>()?.into_iter().filter(|d| !self.content.exists(d)).collect();
        self.remote().sync(&remote).map_err(|source| Error::Io { what: "syncing the records of remote layers", source })
    }

    /// Points tag `name` (normalized as Docker does: `app` means `app:latest`) at `manifest`.
    /// The layers it names that are kept only as snapshots ([`crate::snapshot_blob`]) are
    /// stored first: a tagged image is whole in the OCI layout the store is, where skopeo, umoci
    /// and podman read it.
    pub fn tag(&self, name: &str, manifest: &Descriptor) -> Result<(), Error> {
        check_name(name)?;
        // A rebuild tagging the same image again finds it durable already.
        if self.index.resolve(&normalize_tag(name))?.is_none_or(|d| d.digest() != manifest.digest()) {
            self.sync_image(manifest)?;
        }
        // An image that cannot be read is tagged as before (fsck reports it).
        if let Ok(layers) = self.image_of(manifest).and_then(|i| i.layers()) {
            self.materialize(&layers.into_iter().map(|l| l.digest).collect::<Vec<_>>())?;
        }
        Ok(self.index.tag(&normalize_tag(name), manifest)?)
    }

    /// The manifest descriptor `reference` names: a tag (`app`, `app:1`), a manifest digest,
    /// or an image ID (config digest) or a unique prefix of one of at least 4 hex digits.
    pub fn resolve(&self, reference: &str) -> Result<Descriptor, Error> {
        if let Some(d) = self.index.resolve(&normalize_tag(reference))? {
            return Ok(d);
        }
        // `busybox` finds what a pull stored as `docker.io/library/busybox:latest`.
        if let Ok(full) = crate::reference::ImageName::parse(reference) {
            if let Some(d) = self.index.resolve(&full.to_string())? {
                return Ok(d);
            }
        }
        let tagged = self.index.list()?;
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NotFound(reference.to_string()));
        }
        let full = Digest::from_str(&format!("sha256:{hex}")).ok();
        if let Some(digest) = &full {
            if let Some((_, d)) = tagged.iter().find(|(_, d)| d.digest().as_ref() == digest.as_str()) {
                return Ok(d.clone());
            }
        }
        let mut found: Option<Descriptor> = None;
        for (_, d) in tagged {
            let id = self.image_of(&d)?.id()?;
            let manifest_hex = d.digest().as_ref().trim_start_matches("sha256:").to_string();
            if id.hex().starts_with(hex) || manifest_hex.starts_with(hex) {
                match &found {
                    Some(f) if f.digest() != d.digest() => return Err(Error::Ambiguous(reference.to_string())),
                    _ => found = Some(d),
                }
            }
        }
        // An untagged manifest, by its full digest.
        if let (None, Some(digest)) = (&found, &full) {
            let is_manifest = self.get_json::<serde_json::Value>(digest, "manifest").is_ok_and(|v| v.get("layers").is_some() || v.get("manifests").is_some());
            if is_manifest {
                return descriptor(MediaType::ImageManifest, self.content.size(digest)?, digest);
            }
        }
        found.ok_or_else(|| Error::NotFound(reference.to_string()))
    }

    /// Reads the image `reference` names (see [`Store::resolve`]).
    pub fn image(&self, reference: &str) -> Result<Image, Error> {
        let d = self.resolve(reference)?;
        self.image_of(&d)
    }

    /// Reads the image a manifest (or index, from which linux/amd64 is picked) descriptor names.
    pub fn image_of(&self, d: &Descriptor) -> Result<Image, Error> {
        let digest = to_digest(d.digest().as_ref())?;
        let value: serde_json::Value = self.get_json(&digest, "manifest")?;
        let is_index = value.get("manifests").is_some();
        if is_index {
            let index: ImageIndex = serde_json::from_value(value)
                .map_err(|e| Error::Invalid { what: "image index", digest: digest.clone(), message: e.to_string() })?;
            let pick = index
                .manifests()
                .iter()
                .find(|m| m.platform().as_ref().is_none_or(|p| p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"))
                .ok_or_else(|| Error::Invalid { what: "image index", digest: digest.clone(), message: "no linux/amd64 manifest".into() })?;
            let mut image = self.image_of(pick)?;
            image.descriptor = d.clone();
            return Ok(image);
        }
        let manifest: ImageManifest = serde_json::from_value(value)
            .map_err(|e| Error::Invalid { what: "manifest", digest: digest.clone(), message: e.to_string() })?;
        let config_digest = to_digest(manifest.config().digest().as_ref())?;
        let config = self.get_json(&config_digest, "image config")?;
        Ok(Image { descriptor: d.clone(), manifest, config })
    }

    /// Makes sure every layer of `layers` is unpacked as a snapshot; returns the top chain ID
    /// (`None` for no layers). Layers already unpacked are not read.
    pub fn unpack(&self, layers: &[Layer]) -> Result<Option<Digest>, Error> {
        // Remote blobs of the layers still to unpack are fetched side by side first.
        let mut parent: Option<Digest> = None;
        let mut needed = Vec::new();
        for layer in layers {
            let chain = crate::digest::chain_id(parent.iter().chain([&layer.diff_id])).expect("one diffID at least");
            if !self.snapshots.exists(&chain)? {
                needed.push(layer.clone());
            }
            parent = Some(chain);
        }
        self.ensure_layers(&needed)?;
        let mut parent: Option<Digest> = None;
        for layer in layers {
            let chain = crate::digest::chain_id(parent.iter().chain([&layer.diff_id])).expect("one diffID at least");
            if !self.snapshots.reuse(&chain)? {
                let blob = self.blob(&layer.digest)?;
                let got = self.snapshots.unpack_layer(std::io::BufReader::new(blob), parent.as_ref(), &layer.diff_id)?;
                debug_assert_eq!(got, chain);
            }
            parent = Some(chain);
        }
        Ok(parent)
    }
}

/// Checks an image name with docker's reference grammar (`[host[:port]/]path[:tag][@digest]`,
/// a lowercase path of `[a-z0-9]` parts joined by `.`, `_`, `__` or `-`, at most 255
/// characters) before it becomes a tag: every tag goes through [`Store::tag`], which calls
/// this, so `../../etc:1` or `a b:1` from an archive or a command line is never stored.
/// Returns the name's parts, for a caller that needs them too (one parse).
pub fn check_name(name: &str) -> Result<crate::reference::ImageName, Error> {
    let invalid = |reason: String| Error::InvalidName { name: name.chars().take(200).collect(), reason };
    if name.is_empty() {
        return Err(invalid("empty name".into()));
    }
    // The repository part (before a tag or digest) must be lowercase; a host may not be.
    let path = name.split('@').next().unwrap_or(name);
    let path = match path.rsplit_once(':') {
        Some((p, tag)) if !tag.contains('/') => p,
        _ => path,
    };
    let repo = match path.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => path,
    };
    if repo.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid("repository name must be lowercase".into()));
    }
    crate::reference::ImageName::parse(name).map_err(|reason| invalid(reason.into()))
}

/// Docker's tag normalization for local names: a name without a tag or digest gets `:latest`.
pub fn normalize_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

fn to_digest(s: &str) -> Result<Digest, Error> {
    Digest::from_str(s).map_err(|e| Error::Encode { what: "digest", message: e.to_string() })
}

/// An OCI descriptor of a blob.
pub fn descriptor(media_type: MediaType, size: u64, digest: &Digest) -> Result<Descriptor, Error> {
    let digest = oci_spec::image::Digest::from_str(digest.as_str())
        .map_err(|e| Error::Encode { what: "descriptor", message: e.to_string() })?;
    DescriptorBuilder::default()
        .media_type(media_type)
        .size(size)
        .digest(digest)
        .build()
        .map_err(|e| Error::Encode { what: "descriptor", message: e.to_string() })
}

/// An ingest ref no other writer uses: a layer's digest is unknown until it is written, so
/// writers cannot share (and resume) by digest.
pub(crate) fn unique_ingest(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{what}-{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
