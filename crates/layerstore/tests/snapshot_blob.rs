//! Blobs kept as the snapshot they were made from (a built layer's tar made lazily): read
//! through the store they are made, verified and stored; a changed snapshot makes a clear
//! error and no blob; gc keeps the snapshot while the blob is needed and only then.

use forge_layerstore::archive::Compression;
use forge_layerstore::cache::{Cache, CacheEntry};
use forge_layerstore::diff::{LayerInfo, LayerOptions, LayerSource};
use forge_layerstore::maintenance::{fsck, gc};
use forge_layerstore::{chain_id, Digest, ImageConfig, Layer, Store};

fn plain() -> LayerOptions {
    LayerOptions { compression: Compression::None, source_date_epoch: Some(1_700_000_000) }
}

/// A store holding an untagged image whose one layer is only hashed and kept as its snapshot,
/// held by a build cache entry (as a build leaves it): the layer and the snapshot's chain ID.
fn kept_image(dir: &std::path::Path) -> (Store, LayerInfo, Digest) {
    let store = Store::open(&dir.join("store")).unwrap();
    store.snapshots().prepare("step", None).unwrap();
    let (upper, _) = store.snapshots().dirs("step").unwrap().upper.unwrap();
    std::fs::create_dir_all(upper.join("data/sub")).unwrap();
    std::fs::write(upper.join("data/big"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(upper.join("data/sub/small"), "small").unwrap();
    std::os::unix::fs::symlink("big", upper.join("data/link")).unwrap();
    let info = store.hash_layer(&upper, &plain()).unwrap();
    let chain = chain_id([&info.diff_id]).unwrap();
    store.snapshots().commit(&chain, "step").unwrap();
    store.keep_as_snapshot(&info, &chain, &plain()).unwrap();
    let mut config = ImageConfig::scratch();
    config.rootfs.diff_ids.push(info.diff_id.clone());
    store.write_image(&config, &[Layer::from(&info)]).unwrap();
    let entry = CacheEntry { layer: Some(Layer::from(&info)), inputs: Vec::new(), created: None };
    Cache::open(store.root()).unwrap().put(&Digest::of(b"step key"), &entry).unwrap();
    (store, info, chain)
}

fn tree_of(store: &Store, chain: &Digest) -> std::path::PathBuf {
    store.snapshots().dirs(chain.as_str()).unwrap().lowerdirs[0].clone()
}

/// Lets the kernel's file clock move on (gc keeps what is not older than its own start).
fn tick() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}

#[test]
fn a_kept_blob_is_made_on_first_read_with_the_digest_an_eager_write_gives() {
    let dir = tempfile::tempdir().unwrap();
    let (store, info, chain) = kept_image(dir.path());
    assert!(!store.content().exists(&info.digest), "hashing stores nothing");
    assert!(store.snapshot_blobs().get(&info.digest).is_some());
    let report = fsck(&store, false).unwrap();
    assert!(report.is_clean(), "{report:?}");
    // The same tree written eagerly, as before lazy layers, gives the same blob.
    let eager = Store::open(&dir.path().join("eager")).unwrap().write_layer(&LayerSource::OverlayUpper(&tree_of(&store, &chain)), &plain()).unwrap();
    assert_eq!(eager, info);

    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut store.blob(&info.digest).unwrap(), &mut bytes).unwrap();
    assert_eq!(Digest::of(&bytes), info.digest);
    assert_eq!(bytes.len() as u64, info.size);
    assert!(store.content().exists(&info.digest));
    assert!(store.snapshot_blobs().get(&info.digest).is_none(), "the record goes once the blob is stored");
    assert!(fsck(&store, false).unwrap().is_clean());
}

#[test]
fn a_changed_snapshot_makes_a_clear_error_and_no_blob() {
    let dir = tempfile::tempdir().unwrap();
    let (store, info, chain) = kept_image(dir.path());
    std::fs::write(tree_of(&store, &chain).join("data/sub/small"), "SMALL").unwrap();
    let err = store.blob(&info.digest).unwrap_err().to_string();
    assert!(err.contains(info.digest.as_str()) && err.contains("kept as snapshot") && err.contains(chain.as_str()), "{err}");
    assert!(!store.content().exists(&info.digest));
    assert!(!store.content().list().unwrap().contains(&info.digest));
    let report = fsck(&store, false).unwrap();
    assert_eq!(report.corrupt, vec![info.digest.clone()], "{report:?}");
    assert!(store.snapshot_blobs().get(&info.digest).is_some(), "fsck without repair changes nothing");
    fsck(&store, true).unwrap();
    assert!(store.snapshot_blobs().get(&info.digest).is_none());
}

#[test]
fn a_failed_make_leaves_nothing_visible_and_a_retry_works() {
    let dir = tempfile::tempdir().unwrap();
    let (store, info, chain) = kept_image(dir.path());
    // The snapshot's tree cannot be read: the stream fails before anything is committed.
    let tree = tree_of(&store, &chain);
    let aside = tree.with_extension("aside");
    std::fs::rename(&tree, &aside).unwrap();
    let err = store.blob(&info.digest).unwrap_err().to_string();
    assert!(err.contains("kept as snapshot"), "{err}");
    assert!(!store.content().exists(&info.digest));
    std::fs::rename(&aside, &tree).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut store.blob(&info.digest).unwrap(), &mut bytes).unwrap();
    assert_eq!(Digest::of(&bytes), info.digest);
}

#[test]
fn gc_keeps_the_snapshot_while_its_blob_is_needed_and_drops_both_after() {
    let dir = tempfile::tempdir().unwrap();
    let (store, info, chain) = kept_image(dir.path());
    tick();
    gc(&store).unwrap();
    assert!(store.snapshots().exists(&chain).unwrap());
    assert!(store.snapshot_blobs().get(&info.digest).is_some());
    // After that gc the blob can still be made.
    assert!(!store.content().exists(&info.digest));
    assert!(store.blob(&info.digest).is_ok());

    // A second one kept the same way whose cache entry goes: its record and snapshot go.
    let other = tempfile::tempdir().unwrap();
    let (store, info, chain) = kept_image(other.path());
    Cache::open(store.root()).unwrap().clear().unwrap();
    tick();
    let report = gc(&store).unwrap();
    assert!(report.snapshots_removed >= 1, "{report:?}");
    assert!(!store.snapshots().exists(&chain).unwrap());
    assert!(store.snapshot_blobs().get(&info.digest).is_none());
}

#[test]
fn tagging_an_image_stores_its_kept_layers_for_the_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (store, info, _) = kept_image(dir.path());
    let mut config = ImageConfig::scratch();
    config.rootfs.diff_ids.push(info.diff_id.clone());
    let manifest = store.write_image(&config, &[Layer::from(&info)]).unwrap();
    store.tag("kept:1", &manifest).unwrap();
    assert!(store.content().exists(&info.digest));
    // Written past the page cache (a 3 MiB tar: at most the tail after its whole 1 MiB blocks
    // is left there): a flush somewhere in the stream would have sent it all through.
    if forge_testkit::direct_io_works(dir.path()) {
        let cached = forge_testkit::cached_bytes(&store.content().path(&info.digest));
        assert!(cached < info.size.min(1 << 20) + 4096, "{cached} of {} bytes cached", info.size);
    }
    assert!(store.snapshot_blobs().get(&info.digest).is_none());
    assert!(fsck(&store, false).unwrap().is_clean());
}
