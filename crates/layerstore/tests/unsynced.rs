//! What a build writes without waiting for the disk (its image, the records of its remote
//! layers) is made durable when a tag first names it, and what a crash may have left torn is
//! written again, never reused or tagged.

use std::time::{Duration, SystemTime};

use forge_layerstore::maintenance::gc;
use forge_layerstore::remote::{RemoteBlob, RemoteSource};
use forge_layerstore::{Digest, ImageConfig, Layer, Store};

fn remote(name: &str) -> RemoteBlob {
    let source = RemoteSource { registry: "registry.invalid:5000".into(), repository: "ci/cache".into() };
    RemoteBlob { digest: Digest::of(name.as_bytes()), size: name.len() as u64, source, stored: None }
}

fn layer_of(blob: &RemoteBlob) -> Layer {
    Layer { digest: blob.digest.clone(), diff_id: blob.digest.clone(), size: blob.size, media_type: "application/vnd.oci.image.layer.v1.tar".into() }
}

/// An image over one remote layer, its record written as a build writes it.
fn unsynced_image(store: &Store) -> (oci_spec::image::Descriptor, Digest) {
    let blob = remote("layer");
    store.remote().record_all(std::slice::from_ref(&blob)).unwrap();
    let mut config = ImageConfig::scratch();
    config.rootfs.diff_ids.push(blob.digest.clone());
    let manifest = store.write_image_unsynced(&config, &[layer_of(&blob)]).unwrap();
    let config_digest = store.image_of(&manifest).unwrap().manifest.config().digest().to_string().parse().unwrap();
    (manifest, config_digest)
}

/// Leaves the blob as a crash may: its name kept, its bytes zeros.
fn tear(store: &Store, digest: &Digest) {
    let path = store.content().path(digest);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    std::fs::write(&path, vec![0u8; len]).unwrap();
    assert!(store.content().verify(digest).is_err());
}

#[test]
fn a_torn_image_is_written_again_rather_than_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (manifest, config) = unsynced_image(&store);
    let manifest_digest: Digest = manifest.digest().to_string().parse().unwrap();
    tear(&store, &config);
    tear(&store, &manifest_digest);

    // The same build again, after the crash.
    let (again, _) = unsynced_image(&store);
    assert_eq!(again.digest(), manifest.digest());
    store.content().verify(&config).unwrap();
    store.content().verify(&manifest_digest).unwrap();
    store.tag("app:1", &again).unwrap();
    assert_eq!(store.resolve("app:1").unwrap().digest(), manifest.digest());
    // The synced kind of write compares too.
    let image = store.image_of(&again).unwrap();
    tear(&store, &config);
    store.write_image(&image.config, &image.layers().unwrap()).unwrap();
    store.content().verify(&config).unwrap();
}

#[test]
fn a_tag_never_names_an_image_left_torn() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (manifest, config) = unsynced_image(&store);
    tear(&store, &config);
    let err = store.tag("app:1", &manifest).unwrap_err();
    assert!(err.to_string().contains(config.hex()), "{err}");
    assert!(store.resolve("app:1").is_err());
    let err = store.tag_or_defer("app:2", &manifest, 0).unwrap_err();
    assert!(err.to_string().contains(config.hex()), "{err}");
    assert!(store.resolve("app:2").is_err());
}

#[test]
fn a_batch_written_over_a_torn_one_is_read_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let blob = remote("layer");
    store.remote().record_all(std::slice::from_ref(&blob)).unwrap();
    let batches = dir.path().join("forge/remote/batches");
    let batch = std::fs::read_dir(&batches).unwrap().next().unwrap().unwrap().path();
    std::fs::write(&batch, b"\0\0\0\0").unwrap();
    // This handle reads the torn batch (and reports it)...
    let after_crash = Store::open(dir.path()).unwrap();
    assert_eq!(after_crash.remote().damaged().unwrap().len(), 1);
    assert_eq!(after_crash.remote().get(&blob.digest), None);
    // ...then writes the same batch again, under the same name, and reads it back.
    after_crash.remote().record_all(std::slice::from_ref(&blob)).unwrap();
    assert_eq!(after_crash.remote().get(&blob.digest), Some(blob.clone()));
    assert!(after_crash.remote().damaged().unwrap().is_empty());
    after_crash.remote().sync(&[blob.digest.clone(), Digest::of(b"no record")]).unwrap();
}

#[test]
fn gc_removes_what_a_killed_small_write_left_in_the_ingest_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ingest = dir.path().join("forge/ingest");
    let (stale, fresh) = (ingest.join(".small-killed"), ingest.join(".small-running"));
    std::fs::write(&stale, b"{\"partial\":").unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
    // A writer still at work, under the lease its operation holds.
    let writer = Store::open(dir.path()).unwrap();
    let _lease = writer.lease("build", &[]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&fresh, b"{\"partial\":").unwrap();
    gc(&store).unwrap();
    assert!(!stale.exists());
    assert!(fresh.exists());
}
