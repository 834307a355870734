//! Batched records: the remote records and cache entries a build writes together are one file;
//! read, listed, stamped and collected as records of their own are, and a torn or altered
//! batch is never read as valid, only reported.

use std::time::{Duration, SystemTime};

use forge_layerstore::cache::{Cache, CacheEntry};
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

fn entry(blob: &RemoteBlob) -> CacheEntry {
    CacheEntry { layer: Some(layer_of(blob)), inputs: Vec::new(), created: None }
}

/// The batch files under `forge/<kind>/batches/`.
fn batch_files(store: &Store, kind: &str) -> Vec<std::path::PathBuf> {
    let dir = store.root().join("forge").join(kind).join("batches");
    std::fs::read_dir(dir).map(|l| l.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
}

#[test]
fn a_batch_is_read_as_its_records_and_gc_removes_them_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let cache = Cache::open(store.root()).unwrap();
    let (kept, stray) = (remote("kept"), remote("stray"));
    let (k1, k2) = (Digest::of(b"key 1"), Digest::of(b"key 2"));
    store.remote().record_all(&[kept.clone(), stray.clone()]).unwrap();
    cache.put_all(&[(k1.clone(), entry(&kept)), (k2.clone(), entry(&stray))]).unwrap();
    assert_eq!((batch_files(&store, "remote").len(), batch_files(&store, "cache").len()), (1, 1));

    // Read by another handle, as another process would.
    let other = Store::open(dir.path()).unwrap();
    assert_eq!(other.remote().get(&kept.digest), Some(kept.clone()));
    let mut listed = other.remote().list().unwrap();
    listed.sort();
    let mut both = vec![kept.digest.clone(), stray.digest.clone()];
    both.sort();
    assert_eq!(listed, both);
    let cache2 = Cache::open(store.root()).unwrap();
    assert_eq!(cache2.get(&k1), Some(entry(&kept)));
    assert_eq!(cache2.entries().unwrap().len(), 2);

    // An entry of its own, written later, wins over the batch's.
    let rerun = CacheEntry { layer: None, inputs: Vec::new(), created: None };
    cache2.put(&k2, &rerun).unwrap();
    assert_eq!(cache2.get(&k2), Some(rerun));

    // gc: an image keeps one layer; the stray record goes, from an old batch only.
    let mut config = ImageConfig::scratch();
    config.rootfs.diff_ids.push(kept.digest.clone());
    let manifest = store.write_image(&config, &[layer_of(&kept)]).unwrap();
    store.tag("app:1", &manifest).unwrap();
    // Written before gc started (by more than the file clock's tick).
    let old = SystemTime::now() - Duration::from_secs(60);
    let batch = batch_files(&store, "remote").pop().unwrap();
    std::fs::File::options().write(true).open(&batch).unwrap().set_modified(old).unwrap();
    gc(&store).unwrap();
    assert!(store.remote().get(&stray.digest).is_none());
    assert_eq!(store.remote().get(&kept.digest), Some(kept.clone()));
    // The rewritten batch keeps its age: the kept record is not made younger than it was.
    let rewritten = batch_files(&store, "remote");
    assert_eq!(rewritten.len(), 1);
    assert_ne!(rewritten[0], batch);
    assert_eq!(std::fs::metadata(&rewritten[0]).unwrap().modified().unwrap(), old);
    // Stamping a batched record holds it as stamping its own file does.
    assert!(store.remote().reuse(&kept.digest).unwrap());
    assert!(std::fs::metadata(&rewritten[0]).unwrap().modified().unwrap() > old);
    assert!(!store.remote().reuse(&stray.digest).unwrap());
    assert!(store.remote().damaged().unwrap().is_empty());

    // Clearing the cache drops batched entries too.
    cache2.clear().unwrap();
    assert!(cache2.get(&k1).is_none() && batch_files(&store, "cache").is_empty());
}

#[test]
fn a_torn_or_altered_batch_is_ignored_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let cache = Cache::open(store.root()).unwrap();
    let blobs: Vec<RemoteBlob> = (0..30).map(|i| remote(&format!("layer {i}"))).collect();
    let entries: Vec<(Digest, CacheEntry)> = blobs.iter().map(|b| (Digest::of(format!("key of {}", b.digest).as_bytes()), entry(b))).collect();
    store.remote().record_all(&blobs).unwrap();
    cache.put_all(&entries).unwrap();
    let whole_records = std::fs::read(batch_files(&store, "remote")[0].clone()).unwrap();
    let whole_entries = std::fs::read(batch_files(&store, "cache")[0].clone()).unwrap();

    // What a crash can leave: a prefix, or the right length of zeros (data never written back);
    // and what a careless edit leaves: one byte changed.
    let cut = |b: &[u8]| b[..b.len() / 2].to_vec();
    let zeros = |b: &[u8]| vec![0; b.len()];
    let flipped = |b: &[u8]| {
        let mut b = b.to_vec();
        let i = b.len() / 3;
        b[i] = if b[i] == b'1' { b'2' } else { b'1' };
        b
    };
    for (what, damage) in [("a torn batch", &cut as &dyn Fn(&[u8]) -> Vec<u8>), ("a zeroed batch", &zeros), ("an altered batch", &flipped)] {
        std::fs::write(&batch_files(&store, "remote")[0], damage(&whole_records)).unwrap();
        std::fs::write(&batch_files(&store, "cache")[0], damage(&whole_entries)).unwrap();
        // A fresh handle, as the next build's.
        let (store, cache) = (Store::open(dir.path()).unwrap(), Cache::open(dir.path()).unwrap());
        for (b, (key, _)) in blobs.iter().zip(&entries) {
            assert!(store.remote().get(&b.digest).is_none(), "{what}: record of {} read", b.digest);
            assert!(cache.get(key).is_none(), "{what}: entry {key} read");
        }
        assert!(store.remote().list().unwrap().is_empty() && cache.entries().unwrap().is_empty(), "{what}");
        for damaged in [store.remote().damaged().unwrap(), cache.damaged().unwrap()] {
            assert_eq!(damaged.len(), 1, "{what}");
            assert!(damaged[0].1.contains("do not match its name"), "{what}: {}", damaged[0].1);
        }
    }
    // fsck reports both; the repair removes them (their records are lost either way).
    let report = forge_layerstore::maintenance::fsck(&store, false).unwrap();
    assert_eq!(report.damaged_batches.len(), 2, "{report:?}");
    assert!(!report.is_clean());
    let saved = (batch_files(&store, "remote")[0].clone(), batch_files(&store, "cache")[0].clone());
    forge_layerstore::maintenance::fsck(&store, true).unwrap();
    assert!(batch_files(&store, "remote").is_empty() && batch_files(&store, "cache").is_empty());
    let store = Store::open(dir.path()).unwrap();
    assert!(forge_layerstore::maintenance::fsck(&store, false).unwrap().is_clean());
    // Put back whole, every record reads again.
    std::fs::write(&saved.0, &whole_records).unwrap();
    std::fs::write(&saved.1, &whole_entries).unwrap();
    let (store, cache) = (Store::open(dir.path()).unwrap(), Cache::open(dir.path()).unwrap());
    assert!(blobs.iter().all(|b| store.remote().get(&b.digest).as_ref() == Some(b)));
    assert!(entries.iter().all(|(k, e)| cache.get(k).as_ref() == Some(e)));
    assert!(store.remote().damaged().unwrap().is_empty() && cache.damaged().unwrap().is_empty());
}
