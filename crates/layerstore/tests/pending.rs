//! Pending tags: a tag whose image has layers kept only as snapshots is seen by the store's
//! own lookups at once and enters `index.json` only once a finisher stored every blob; the
//! newest tag of a name wins; a snapshot that cannot make its blob leaves the tag pending with
//! the error; a push compresses straight from the snapshot with the digest a stored tar gives.

use forge_layerstore::archive::Compression;
use forge_layerstore::diff::{LayerInfo, LayerOptions};
use forge_layerstore::distribute::compressed_layer;
use forge_layerstore::pending::FinishStep;
use forge_layerstore::{chain_id, Digest, ImageConfig, Layer, Store};
use oci_spec::image::Descriptor;

fn plain() -> LayerOptions {
    LayerOptions { compression: Compression::None, source_date_epoch: Some(1_700_000_000) }
}

/// An image of one layer (a file with `content`) hashed and kept as its snapshot, as a build
/// leaves it: the manifest, the layer and the snapshot's tree.
fn kept_image(store: &Store, key: &str, content: &[u8]) -> (Descriptor, LayerInfo, std::path::PathBuf) {
    store.snapshots().prepare(key, None).unwrap();
    let (upper, _) = store.snapshots().dirs(key).unwrap().upper.unwrap();
    std::fs::write(upper.join("data"), content).unwrap();
    let info = store.hash_layer(&upper, &plain()).unwrap();
    let chain = chain_id([&info.diff_id]).unwrap();
    store.snapshots().commit(&chain, key).unwrap();
    store.keep_as_snapshot(&info, &chain, &plain()).unwrap();
    let mut config = ImageConfig::scratch();
    config.rootfs.diff_ids.push(info.diff_id.clone());
    let manifest = store.write_image(&config, &[Layer::from(&info)]).unwrap();
    let tree = store.snapshots().dirs(chain.as_str()).unwrap().lowerdirs[0].clone();
    (manifest, info, tree)
}

/// The manifest digest `index.json` itself gives `name`.
fn published(store: &Store, name: &str) -> Option<String> {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(store.root().join("index.json")).unwrap()).unwrap();
    index["manifests"].as_array().unwrap().iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name).map(|m| m["digest"].as_str().unwrap().to_string())
}

fn finish(store: &Store) -> forge_layerstore::pending::FinishReport {
    store.finish_pending_tags(&mut |_, _| {}).unwrap()
}

#[test]
fn a_pending_tag_is_seen_by_the_store_and_published_once_its_blobs_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let (manifest, info, _) = kept_image(&store, "one", &[5u8; 100_000]);
    // Under the threshold it is tagged at once, its blob stored.
    let small = Store::open(&dir.path().join("small")).unwrap();
    let (m, i, _) = kept_image(&small, "one", &[5u8; 100_000]);
    assert!(!small.tag_or_defer("app:1", &m, u64::MAX).unwrap());
    assert!(small.content().exists(&i.digest));
    assert_eq!(published(&small, "app:1").as_deref(), Some(m.digest().as_ref()));

    assert!(store.tag_or_defer("app", &manifest, 1).unwrap(), "pending");
    assert!(!store.content().exists(&info.digest));
    assert_eq!(published(&store, "app:latest"), None);
    assert_eq!(store.resolve("app").unwrap().digest(), manifest.digest());
    assert_eq!(store.index().list().unwrap().len(), 1);
    assert!(store.pending_unattended());

    let mut steps = Vec::new();
    let report = store.finish_pending_tags(&mut |t, s| steps.push((t.name.clone(), s))).unwrap();
    assert_eq!(report.promoted, vec!["app:latest".to_string()]);
    assert_eq!(steps, vec![("app:latest".to_string(), FinishStep::Materialize), ("app:latest".to_string(), FinishStep::Promote)]);
    assert!(store.content().exists(&info.digest));
    assert_eq!(published(&store, "app:latest").as_deref(), Some(manifest.digest().as_ref()));
    assert!(!store.index().has_pending());
    assert!(!store.pending_unattended());
    assert!(forge_layerstore::maintenance::fsck(&store, false).unwrap().is_clean());
}

#[test]
fn the_newest_tag_of_a_name_wins_and_an_untag_drops_a_pending_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let (first, _, _) = kept_image(&store, "one", b"first");
    let (second, _, _) = kept_image(&store, "two", b"second");
    store.tag_or_defer("app:1", &first, 1).unwrap();
    // A promotion of an image the name no longer points at does nothing.
    store.tag_or_defer("app:1", &second, 1).unwrap();
    let old: Digest = first.digest().as_ref().parse().unwrap();
    assert!(!store.index().promote("app:1", &old).unwrap());
    assert_eq!(published(&store, "app:1"), None);
    assert_eq!(finish(&store).promoted, vec!["app:1".to_string()]);
    assert_eq!(published(&store, "app:1").as_deref(), Some(second.digest().as_ref()));

    // A pending tag over a published one: forge sees the pending one; an untag removes both.
    store.tag_or_defer("app:1", &first, 1).unwrap();
    assert_eq!(store.resolve("app:1").unwrap().digest(), first.digest());
    assert_eq!(published(&store, "app:1").as_deref(), Some(second.digest().as_ref()));
    assert!(store.index().untag("app:1").unwrap());
    assert!(store.resolve("app:1").is_err());
    assert!(finish(&store).promoted.is_empty());
    assert_eq!(published(&store, "app:1"), None);

    // An eager tag replaces a pending one.
    store.tag_or_defer("app:2", &first, 1).unwrap();
    store.tag("app:2", &second).unwrap();
    assert!(!store.index().has_pending());
    assert_eq!(published(&store, "app:2").as_deref(), Some(second.digest().as_ref()));
}

#[test]
fn a_snapshot_that_cannot_make_its_blob_leaves_the_tag_pending_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let (manifest, info, tree) = kept_image(&store, "one", b"original");
    store.tag_or_defer("app:1", &manifest, 1).unwrap();
    std::fs::write(tree.join("data"), b"changed!").unwrap();
    let report = finish(&store);
    assert!(report.promoted.is_empty());
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].1.contains(info.digest.as_str()), "{report:?}");
    assert_eq!(published(&store, "app:1"), None);
    assert!(!store.content().exists(&info.digest));
    let pending = store.index().pending().unwrap();
    assert!(pending[0].error.as_deref().is_some_and(|e| e.contains("kept as snapshot")), "{pending:?}");
    // Not retried on its own; fsck reports the image and its repair drops the tag.
    assert!(!store.pending_unattended());
    let fsck = forge_layerstore::maintenance::fsck(&store, true).unwrap();
    assert!(fsck.broken_tags.iter().any(|(t, _)| t == "app:1"), "{fsck:?}");
    assert!(store.index().list().unwrap().is_empty());
    assert!(!store.index().has_pending());
}

#[test]
fn a_layer_kept_as_a_snapshot_is_compressed_from_it_with_the_digest_of_its_stored_tar() {
    let dir = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let lazy = Store::open(&dir.path().join("lazy")).unwrap();
    let (_, info, _) = kept_image(&lazy, "one", &content);
    let eager = Store::open(&dir.path().join("eager")).unwrap();
    let (_, stored, _) = kept_image(&eager, "one", &content);
    eager.blob(&stored.digest).unwrap();
    for compression in [Compression::Gzip, Compression::Zstd] {
        let from_snapshot = compressed_layer(&lazy, &Layer::from(&info), compression).unwrap();
        assert!(!lazy.content().exists(&info.digest), "the plain tar was written");
        assert_eq!(from_snapshot, compressed_layer(&eager, &Layer::from(&stored), compression).unwrap());
        assert!(lazy.content().exists(&from_snapshot.digest));
    }
}
