//! Compressing an image when it leaves the machine.
//!
//! A build stores its layers as plain tars (`application/vnd.oci.image.layer.v1.tar`, which
//! skopeo, umoci, podman and docker read): a step then costs a read of its upperdir and a write,
//! not a gzip of every byte on the build's critical path, as BuildKit keeps its layers until it
//! exports them. A push or an archive needs them compressed; [`for_distribution`] makes an image
//! whose plain layers are replaced by compressed ones, and remembers each result under
//! `forge/compressed/<compression>/<diffID>`, so the second push of a layer neither compresses
//! it again nor gets another digest (which would also defeat cross-repository mounts, keyed by
//! the pushed digest). The compressors are deterministic ([`crate::archive::compression`]):
//! equal layers give equal pushed digests, memo or not.
//!
//! A memo names a blob in the content store; gc keeps that blob as long as it keeps the plain
//! layer it was made from (see [`crate::maintenance`]), and a memo whose blob is gone is made
//! again.

use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::image::MediaType;

use crate::archive::compression::{decompress, BlobDigests, Compression, LayerWriter};
use crate::digest::Digest;
use crate::store::{Error, Image, Layer, Store};

/// How many small layers are compressed at once: a small layer is one gzip block, which one
/// core compresses, so two at a time keep both cores busy.
const PARALLEL_SMALL_LAYERS: usize = 2;
/// Layers larger than this (plain, so this is their tar size) are compressed one at a time: the
/// compressor already spreads one over both cores, and two at once measured 91 MiB peak RSS on W2
/// (two gzip pipelines of in-flight 1 MiB blocks), past the 64 MiB budget.
const SMALL_LAYER: u64 = 1 << 20;

/// `image` as it should leave the machine: each plain-tar layer replaced by its `compression`ed
/// blob (made now, or remembered from before), in a new manifest stored beside the old one.
/// An image without plain layers (pulled, or built with `--compression`) comes back unchanged,
/// manifest digest included. `Compression::None` changes nothing.
pub fn for_distribution(store: &Store, image: &Image, compression: Compression) -> Result<Image, Error> {
    for_distribution_with(store, image, compression, &|_| {}, None)
}

/// Where the compressed bytes of a layer go as they are made, besides the store: a push
/// sends a big layer to the registry while the compressor is still at work on it, rather
/// than after.
pub trait LayerSink: Sync {
    /// A writer for the compressed form of the plain layer `plain`, about to be made, or `None`
    /// to leave it to the store only. The writer is dropped once every byte was written to it,
    /// before the layer is reported `ready`; a write that fails stops the copy, never the
    /// compression (the caller then sends the stored blob).
    fn start(&self, plain: &Layer) -> Option<Box<dyn Write + Send>>;
}

/// [`for_distribution`], calling `ready` with each layer of the result as soon as its blob is in
/// the store (layers that stay as they are first, then each compressed one as it is finished,
/// in no fixed order): a push uploads a layer while the next is still being compressed. The
/// layers compressed one at a time (the large ones) are also written to `sink` as they are made.
pub fn for_distribution_with(store: &Store, image: &Image, compression: Compression, ready: &(dyn Fn(&Layer) + Sync), sink: Option<&dyn LayerSink>) -> Result<Image, Error> {
    let layers = image.layers()?;
    let plain: Vec<usize> = (0..layers.len()).filter(|&i| is_plain(&layers[i])).collect();
    if plain.is_empty() || compression == Compression::None {
        layers.iter().for_each(ready);
        return Ok(image.clone());
    }
    layers.iter().enumerate().filter(|(i, _)| !plain.contains(i)).for_each(|(_, l)| ready(l));
    let compress = |layer: &Layer, sink: Option<&dyn LayerSink>| {
        let made = compressed_layer_to(store, layer, compression, sink);
        if let Ok(l) = &made {
            ready(l);
        }
        made
    };
    // Remote layers with no usable compressed copy are fetched side by side first (those kept
    // as snapshots are compressed straight from them).
    let unknown: Vec<Layer> = plain
        .iter()
        .map(|&i| layers[i].clone())
        .filter(|l| memo(store, &l.diff_id, compression).is_none_or(|m| !store.content().exists(&m.digest)))
        .filter(|l| kept_as_snapshot(store, l).is_none())
        .collect();
    store.ensure_layers(&unknown)?;
    let (small, large): (Vec<usize>, Vec<usize>) = plain.iter().partition(|&&i| layers[i].size <= SMALL_LAYER);
    // Each worker takes the next small layer left.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut compressed: Vec<(usize, Result<Layer, Error>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..PARALLEL_SMALL_LAYERS.min(small.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    while let Some(&i) = small.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                        done.push((i, compress(&layers[i], None)));
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    compressed.extend(large.into_iter().map(|i| (i, compress(&layers[i], sink))));
    compressed.sort_by_key(|(i, _)| *i);
    let mut manifest = image.manifest.clone();
    let mut descriptors = manifest.layers().clone();
    for (i, layer) in compressed {
        let layer = layer?;
        let digest = oci_spec::image::Digest::from_str(layer.digest.as_str()).map_err(|e| Error::Encode { what: "descriptor", message: e.to_string() })?;
        // The layer's other fields (annotations) stay as they were.
        let d = &mut descriptors[i];
        d.set_media_type(MediaType::from(layer.media_type.as_str()));
        d.set_digest(digest);
        d.set_size(layer.size);
    }
    manifest.set_layers(descriptors);
    let (digest, size) = store.put_json(&manifest, "manifest")?;
    let descriptor = crate::store::descriptor(image.descriptor.media_type().clone(), size, &digest)?;
    Ok(Image { descriptor, manifest, config: image.config.clone() })
}

/// The `compression`ed form of the plain layer `layer`: the remembered blob if it is still
/// stored, else compressed now (and remembered). The plain blob's bytes are checked against its
/// diffID on the way, so a corrupt layer is reported rather than shipped.
pub fn compressed_layer(store: &Store, layer: &Layer, compression: Compression) -> Result<Layer, Error> {
    compressed_layer_to(store, layer, compression, None)
}

/// [`compressed_layer`], its bytes also written to `sink` when they are made now.
fn compressed_layer_to(store: &Store, layer: &Layer, compression: Compression, sink: Option<&dyn LayerSink>) -> Result<Layer, Error> {
    if let Some(known) = memo(store, &layer.diff_id, compression) {
        // `reuse` also stamps the blob, so a running push's lease holds it against a gc.
        if store.content().reuse(&known.digest)? {
            return Ok(known);
        }
    }
    let copy = sink.and_then(|s| s.start(layer));
    let io = |source| Error::Io { what: "compressing a layer", source };
    let (d, writer) = match kept_as_snapshot(store, layer) {
        // Its tar is made from the snapshot into the compressor: the plain tar is never
        // written (on W2, 712 MiB the push would write only to read back).
        Some(kept) => {
            let mut writer = store.content().writer_hashed_by_caller(&crate::store::unique_ingest("compressed-layer"))?;
            // Read again only by a later push or archive, maybe never.
            writer.past_page_cache();
            let mut out = BufWriter::with_capacity(256 << 10, Tee { store: writer, copy });
            let made = kept.stream_as(store, compression, &mut out).map_err(|message| Error::SnapshotBlob { digest: kept.digest.clone(), chain_id: kept.chain_id.clone(), message })?;
            let writer = out.into_inner().map_err(|e| io(e.into_error()))?.store;
            (BlobDigests { diff_id: made.diff_id, uncompressed_size: kept.size, digest: made.digest, size: made.size }, writer)
        }
        None => {
            let plain = store.blob(&layer.digest)?;
            let (_, mut tar) = decompress(BufReader::with_capacity(256 << 10, plain))
                .map_err(|e| Error::Invalid { what: "layer", digest: layer.digest.clone(), message: e.to_string() })?;
            let mut writer = store.content().writer(&crate::store::unique_ingest("compressed-layer"))?;
            writer.past_page_cache();
            let mut out = LayerWriter::new(BufWriter::with_capacity(256 << 10, Tee { store: writer, copy }), compression).map_err(io)?;
            std::io::copy(&mut tar, &mut out).map_err(io)?;
            let (buffered, d) = out.finish().map_err(io)?;
            (d, buffered.into_inner().map_err(|e| io(e.into_error()))?.store)
        }
    };
    if d.diff_id != layer.diff_id {
        writer.discard();
        return Err(Error::Invalid {
            what: "layer",
            digest: layer.digest.clone(),
            message: format!("its tar hashes to {}, not its diffID {} (run `forge store fsck`)", d.diff_id, layer.diff_id),
        });
    }
    writer.commit(Some(d.size), Some(&d.digest))?;
    let made = Layer { digest: d.digest, diff_id: d.diff_id, size: d.size, media_type: compression.media_type().to_string() };
    remember(store, compression, &made)?;
    Ok(made)
}

/// The content store's writer, and a copy of every byte for a [`LayerSink`] while it takes them.
struct Tee {
    store: crate::content::Writer,
    /// Dropped at its first failure, and when the tee is unwrapped (the end of the bytes).
    copy: Option<Box<dyn Write + Send>>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.store.write(buf)?;
        if let Some(copy) = &mut self.copy {
            if copy.write_all(&buf[..n]).is_err() {
                self.copy = None;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.store.flush()?;
        if let Some(copy) = &mut self.copy {
            if copy.flush().is_err() {
                self.copy = None;
            }
        }
        Ok(())
    }
}

/// Makes the plain layer `plain` from its compressed form `compressed` (a local blob; a build
/// cache exported with `compression=` holds layers so), checked as it is committed (a plain
/// layer's digest is its diffID), and remembers `compressed` as its compressed form: a push
/// then sends those very bytes.
pub fn expand(store: &Store, compressed: &Layer, plain: &Layer) -> Result<(), Error> {
    let invalid = |message: String| Error::Invalid { what: "compressed layer", digest: compressed.digest.clone(), message };
    let compression = [Compression::Gzip, Compression::Zstd]
        .into_iter()
        .find(|c| c.media_type() == compressed.media_type)
        .ok_or_else(|| invalid(format!("media type {:?} is not a gzip or zstd layer", compressed.media_type)))?;
    if !is_plain(plain) || compressed.diff_id != plain.diff_id || plain.digest != plain.diff_id {
        return Err(invalid(format!("it is not a compressed form of plain layer {}", plain.digest)));
    }
    // Not `Store::blob`: this runs inside a fetch of remote blobs, which made it local.
    let blob = store.content().open_blob(&compressed.digest)?;
    let (_, mut tar) = decompress(BufReader::with_capacity(256 << 10, blob)).map_err(|e| invalid(e.to_string()))?;
    let mut writer = BufWriter::with_capacity(256 << 10, store.content().writer(&crate::store::unique_ingest("expanded-layer"))?);
    std::io::copy(&mut tar, &mut writer).map_err(|source| Error::Io { what: "expanding a compressed layer", source })?;
    let writer = writer.into_inner().map_err(|e| Error::Io { what: "expanding a compressed layer", source: e.into_error() })?;
    writer.commit(Some(plain.size), Some(&plain.digest))?;
    remember(store, compression, compressed)
}

/// Records `made` as the `compression`ed form of the plain layer with its diffID.
fn remember(store: &Store, compression: Compression, made: &Layer) -> Result<(), Error> {
    let bytes = serde_json::to_vec(made).map_err(|e| Error::Encode { what: "compression memo", message: e.to_string() })?;
    let path = memo_path(store, &made.diff_id, compression);
    std::fs::create_dir_all(path.parent().expect("a memo has a directory"))
        .and_then(|()| crate::atomic::write(&path, &bytes))
        .map_err(|source| Error::Io { what: "recording a compressed layer", source })
}

/// The record of `layer` when its blob is kept only as a snapshot (not stored yet).
fn kept_as_snapshot(store: &Store, layer: &Layer) -> Option<crate::snapshot_blob::SnapshotBlob> {
    if store.content().exists(&layer.digest) {
        return None;
    }
    store.snapshot_blobs().get(&layer.digest)
}

/// Whether `layer` is stored as a plain tar.
pub fn is_plain(layer: &Layer) -> bool {
    layer.media_type == Compression::None.media_type() || layer.media_type == "application/vnd.docker.image.rootfs.diff.tar"
}

/// The compressed blobs remembered for the plain layer with `diff_id`, any compression: what gc
/// keeps along with it.
pub(crate) fn remembered(store: &Store, diff_id: &Digest) -> Vec<Digest> {
    [Compression::Gzip, Compression::Zstd].into_iter().filter_map(|c| memo(store, diff_id, c)).map(|l| l.digest).collect()
}

fn memo(store: &Store, diff_id: &Digest, compression: Compression) -> Option<Layer> {
    let bytes = std::fs::read(memo_path(store, diff_id, compression)).ok()?;
    // A memo that does not parse, or names another diffID, is ignored and rewritten.
    serde_json::from_slice::<Layer>(&bytes).ok().filter(|l| &l.diff_id == diff_id && l.media_type == compression.media_type())
}

fn memo_path(store: &Store, diff_id: &Digest, compression: Compression) -> PathBuf {
    let kind = match compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    };
    store.root().join("forge").join("compressed").join(kind).join(diff_id.hex())
}
