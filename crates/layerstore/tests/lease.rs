//! Leases and gc: what a live lease holds survives gc, what nothing holds goes at once, a lease
//! whose owner is gone expires, and the images a lease names are kept whole.

use std::io::Write;

use forge_layerstore::diff::{LayerOptions, LayerSource};
use forge_layerstore::maintenance::gc;
use forge_layerstore::{Digest, ImageConfig, Layer, Store};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

/// Lets the kernel's file clock move on, so that what was written before is older than what
/// comes next (gc keeps whatever is not older than its own start).
fn tick() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}

/// An untagged image of one layer holding a file `f` with `content`: its layer blob's digest
/// and its manifest.
fn one_layer_image(dir: &tempfile::TempDir, store: &Store, content: &str) -> (Digest, oci_spec::image::Descriptor) {
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("f"), content).unwrap();
    let layer = store.write_layer(&LayerSource::Dirs { lower: None, upper: &tree }, &LayerOptions::default()).unwrap();
    let mut config = ImageConfig::scratch();
    config.rootfs.diff_ids.push(layer.diff_id.clone());
    (layer.digest.clone(), store.write_image(&config, &[Layer::from(&layer)]).unwrap())
}

fn blob(store: &Store, bytes: &[u8]) -> Digest {
    let mut w = store.content().writer(&format!("test-{}", Digest::of(bytes))).unwrap();
    w.write_all(bytes).unwrap();
    w.commit(None, None).unwrap()
}

#[test]
fn a_live_lease_keeps_what_it_made_and_reused_and_releasing_it_frees_them() {
    let (_dir, store) = store();
    let old = blob(&store, b"made before the lease, then reused");
    let gone = blob(&store, b"made before the lease, not reused");
    tick();
    let lease = store.lease("test", &[]).unwrap();
    let made = blob(&store, b"made under the lease");
    assert!(store.content().reuse(&old).unwrap());
    let report = gc(&store).unwrap();
    assert_eq!(report.blobs_removed, 1, "{report:?}");
    assert!(!store.content().exists(&gone));
    assert!(store.content().exists(&old) && store.content().exists(&made));
    drop(lease);
    tick();
    let report = gc(&store).unwrap();
    assert_eq!(report.blobs_removed, 2, "{report:?}");
    assert!(store.content().list().unwrap().is_empty());
}

#[test]
fn a_lease_whose_owner_is_gone_expires() {
    let (_dir, store) = store();
    // What a killed owner leaves: the file, with no lock on it.
    let leases = store.root().join("forge/leases");
    std::fs::create_dir_all(&leases).unwrap();
    std::fs::write(leases.join("1-2-3.json"), r#"{"operation":"build","pid":1,"roots":[]}"#).unwrap();
    let d = blob(&store, b"held by nobody");
    tick();
    let report = gc(&store).unwrap();
    assert_eq!((report.leases_expired, report.blobs_removed), (1, 1), "{report:?}");
    assert!(!store.content().exists(&d));
    assert_eq!(std::fs::read_dir(&leases).unwrap().count(), 0);
}

#[test]
fn the_images_a_lease_names_stay_whole() {
    let (dir, store) = store();
    let (_, manifest) = one_layer_image(&dir, &store, "pushed");
    let manifest_digest: Digest = manifest.digest().as_ref().parse().unwrap();
    // Untagged, so only the lease holds it, even for a gc that starts once it is all written.
    tick();
    let lease = store.lease("push", std::slice::from_ref(&manifest_digest)).unwrap();
    let report = gc(&store).unwrap();
    assert_eq!(report.blobs_removed, 0, "{report:?}");
    assert!(store.image_of(&manifest).unwrap().layers().unwrap().iter().all(|l| store.content().exists(&l.digest)));
    drop(lease);
    tick();
    assert_eq!(gc(&store).unwrap().blobs_removed, 3);
}

#[test]
fn snapshots_reused_under_a_lease_survive_gc() {
    let (dir, store) = store();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("f"), "unpacked").unwrap();
    let layer = store.write_layer(&LayerSource::Dirs { lower: None, upper: &tree }, &LayerOptions::default()).unwrap();
    let layers = [Layer::from(&layer)];
    let chain = store.unpack(&layers).unwrap().unwrap();
    let lease = store.lease("build", &[]).unwrap();
    // A build finds the layer unpacked already and builds on it.
    assert_eq!(store.unpack(&layers).unwrap(), Some(chain.clone()));
    store.snapshots().prepare("build-step", Some(&chain)).unwrap();
    let report = gc(&store).unwrap();
    assert_eq!(report.snapshots_removed, 0, "{report:?}");
    assert!(store.snapshots().exists(&chain).unwrap());
    drop(lease);
    tick();
    let report = gc(&store).unwrap();
    assert_eq!(report.snapshots_removed, 2, "{report:?}");
    assert_eq!(store.snapshots().list().unwrap().len(), 0);
}

#[test]
fn a_held_image_keeps_its_blobs_after_its_tag_goes() {
    let (dir, store) = store();
    let (layer, manifest) = one_layer_image(&dir, &store, "a base");
    store.tag("base:1", &manifest).unwrap();
    tick();
    // A build takes its lease, then finds its base; someone removes the base's tag and runs gc.
    let lease = store.lease("build", &[]).unwrap();
    let base = store.image("base:1").unwrap();
    store.hold(&base).unwrap();
    assert!(store.index().untag("base:1").unwrap());
    let report = gc(&store).unwrap();
    assert_eq!(report.blobs_removed, 1, "only the manifest goes: {report:?}");
    assert!(store.content().exists(&layer) && store.content().exists(&base.id().unwrap()));
    drop(lease);
    tick();
    assert_eq!(gc(&store).unwrap().blobs_removed, 2);
    // Holding an image whose blobs are gone says so.
    assert!(matches!(store.hold(&base), Err(forge_layerstore::store::Error::NotFound(_))));
}
