//! Lazy compression: plain-tar layers are compressed when an image leaves the store, the result
//! is remembered per diffID (a second export reuses the blob), equal layers give equal digests in
//! any store, gc keeps a remembered blob as long as its plain layer, and a corrupt plain layer is
//! refused rather than shipped.

use std::io::Read;
use std::os::unix::fs::MetadataExt;

use forge_layerstore::archive::{decompress, Compression};
use forge_layerstore::diff::{LayerOptions, LayerSource};
use forge_layerstore::distribute::{for_distribution, for_distribution_with};
use forge_layerstore::image::History;
use forge_layerstore::maintenance::gc;
use forge_layerstore::{Digest, Image, ImageConfig, Layer, Store};

/// A tagged image `app:1` with two plain layers (two files, one of 3 MiB: several gzip blocks).
fn plain_image(dir: &std::path::Path) -> (Store, Image) {
    let store = Store::open(&dir.join("store")).unwrap();
    let mut config = ImageConfig::scratch();
    let mut layers = Vec::new();
    for (name, len) in [("small", 100usize), ("big", 3 << 20)] {
        let tree = dir.join(name);
        std::fs::create_dir_all(&tree).unwrap();
        let content: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(tree.join(name), content).unwrap();
        let opts = LayerOptions { compression: Compression::None, source_date_epoch: Some(0) };
        let layer = store.write_layer(&LayerSource::Dirs { lower: None, upper: &tree }, &opts).unwrap();
        assert_eq!(layer.digest, layer.diff_id, "a plain layer's blob is its tar");
        config.rootfs.diff_ids.push(layer.diff_id.clone());
        config.history.push(History { created_by: Some(name.into()), ..History::default() });
        layers.push(Layer::from(&layer));
    }
    let manifest = store.write_image(&config, &layers).unwrap();
    store.tag("app:1", &manifest).unwrap();
    let image = store.image("app:1").unwrap();
    (store, image)
}

fn blob_inode(store: &Store, d: &Digest) -> u64 {
    std::fs::metadata(store.content().path(d)).unwrap().ino()
}

#[test]
fn plain_layers_leave_compressed_once_and_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = plain_image(dir.path());
    assert!(image.layers().unwrap().iter().all(|l| l.media_type == "application/vnd.oci.image.layer.v1.tar"));

    let out = for_distribution(&store, &image, Compression::Gzip).unwrap();
    assert_ne!(out.descriptor.digest(), image.descriptor.digest());
    assert_eq!(out.config.rootfs.diff_ids, image.config.rootfs.diff_ids);
    for (sent, plain) in out.layers().unwrap().iter().zip(image.layers().unwrap()) {
        assert_eq!(sent.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
        let (kind, mut tar) = decompress(store.content().open_blob(&sent.digest).unwrap()).unwrap();
        assert_eq!(kind, Compression::Gzip);
        let mut bytes = Vec::new();
        tar.read_to_end(&mut bytes).unwrap();
        assert_eq!(Digest::of(&bytes), plain.diff_id, "the gzip blob holds the plain layer's tar");
    }
    // The new manifest is stored, so a push can send its exact bytes.
    let stored = store.image_of(&out.descriptor).unwrap();
    assert_eq!(stored.manifest, out.manifest);

    // A second export reuses the blobs it made (the same files, not rewritten).
    let inodes: Vec<u64> = out.layers().unwrap().iter().map(|l| blob_inode(&store, &l.digest)).collect();
    let again = for_distribution(&store, &image, Compression::Gzip).unwrap();
    assert_eq!(again.descriptor, out.descriptor);
    let inodes_again: Vec<u64> = again.layers().unwrap().iter().map(|l| blob_inode(&store, &l.digest)).collect();
    assert_eq!(inodes, inodes_again, "a remembered layer was compressed again");

    // Another store with the same layers, and no memo, gives the same digests.
    let other_dir = tempfile::tempdir().unwrap();
    let (other, other_image) = plain_image(other_dir.path());
    assert_eq!(other_image.descriptor.digest(), image.descriptor.digest());
    assert_eq!(for_distribution(&other, &other_image, Compression::Gzip).unwrap().descriptor, out.descriptor);

    // zstd is remembered beside gzip, and an image without plain layers passes unchanged.
    let zstd = for_distribution(&store, &image, Compression::Zstd).unwrap();
    assert!(zstd.layers().unwrap().iter().all(|l| l.media_type.ends_with("tar+zstd")));
    assert_eq!(for_distribution(&store, &out, Compression::Zstd).unwrap().descriptor, out.descriptor);
    assert_eq!(for_distribution(&store, &image, Compression::None).unwrap().descriptor, image.descriptor);
}

/// Every layer of the result, each once, with its blob already stored when it is reported: what
/// a push relies on to upload a layer while the next one is compressed.
fn reported_layers(store: &Store, image: &Image, compression: Compression) -> (Image, Vec<Digest>) {
    let seen = std::sync::Mutex::new(Vec::new());
    let out = for_distribution_with(store, image, compression, &|l: &Layer| {
        assert!(store.content().exists(&l.digest), "{} was reported before it was stored", l.digest);
        seen.lock().unwrap().push(l.digest.clone());
    }, None)
    .unwrap();
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    (out, seen)
}

#[test]
fn each_layer_is_reported_once_as_soon_as_its_blob_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = plain_image(dir.path());
    let sorted = |i: &Image| {
        let mut d: Vec<Digest> = i.layers().unwrap().into_iter().map(|l| l.digest).collect();
        d.sort();
        d
    };
    // Compressed now, then remembered, then an image with nothing left to compress.
    let (out, fresh) = reported_layers(&store, &image, Compression::Gzip);
    assert_eq!(fresh, sorted(&out));
    assert_eq!(fresh.len(), 2);
    let (again, remembered) = reported_layers(&store, &image, Compression::Gzip);
    assert_eq!((again.descriptor, remembered), (out.descriptor.clone(), fresh.clone()));
    let (unchanged, passed) = reported_layers(&store, &out, Compression::Gzip);
    assert_eq!((unchanged.descriptor, passed), (out.descriptor, fresh));
}

#[test]
fn gc_keeps_remembered_blobs_with_their_layer_and_a_lost_one_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = plain_image(dir.path());
    let out = for_distribution(&store, &image, Compression::Gzip).unwrap();
    let sent: Vec<Digest> = out.layers().unwrap().into_iter().map(|l| l.digest).collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    gc(&store).unwrap();
    assert!(sent.iter().all(|d| store.content().exists(d)), "gc dropped a compressed copy of a kept layer");

    // A remembered blob that is gone (removed by hand here) is made again, the same.
    store.content().delete(&sent[1]).unwrap();
    let again = for_distribution(&store, &image, Compression::Gzip).unwrap();
    assert_eq!(again.descriptor, out.descriptor);
    assert!(store.content().exists(&sent[1]));

    // Once the image is gone, so are its compressed copies.
    store.index().untag("app:1").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    gc(&store).unwrap();
    assert!(sent.iter().all(|d| !store.content().exists(d)));
}

#[test]
fn a_corrupt_plain_layer_is_refused_not_shipped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = plain_image(dir.path());
    let layer = &image.layers().unwrap()[0];
    let path = store.content().path(&layer.digest);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[600] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = for_distribution(&store, &image, Compression::Gzip).unwrap_err().to_string();
    assert!(err.contains("not its diffID"), "{err}");
}

/// Collects what a [`LayerSink`] is given, per plain layer.
#[derive(Default)]
struct Collect(std::sync::Arc<std::sync::Mutex<Vec<(Digest, Vec<u8>)>>>);

struct Part(std::sync::Arc<std::sync::Mutex<Vec<(Digest, Vec<u8>)>>>, usize);

impl std::io::Write for Part {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap()[self.1].1.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl forge_layerstore::distribute::LayerSink for Collect {
    fn start(&self, plain: &Layer) -> Option<Box<dyn std::io::Write + Send>> {
        let mut all = self.0.lock().unwrap();
        all.push((plain.diff_id.clone(), Vec::new()));
        Some(Box::new(Part(self.0.clone(), all.len() - 1)))
    }
}

#[test]
fn a_sink_gets_each_big_layers_blob_as_it_is_made_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = plain_image(dir.path());
    let sink = Collect::default();
    let out = for_distribution_with(&store, &image, Compression::Gzip, &|_| {}, Some(&sink)).unwrap();
    let got = sink.0.lock().unwrap().clone();
    // The 3 MiB layer only: the small one is compressed beside others, not streamed.
    let big = &out.layers().unwrap()[1];
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, big.diff_id);
    assert_eq!(got[0].1, std::fs::read(store.content().path(&big.digest)).unwrap());
    // Remembered: nothing is made again, so the sink is not called.
    let again = Collect::default();
    for_distribution_with(&store, &image, Compression::Gzip, &|_| {}, Some(&again)).unwrap();
    assert!(again.0.lock().unwrap().is_empty());
}
