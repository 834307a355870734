//! Remote-backed layers: an image committed with layers known only by descriptor and source
//! is whole for fsck and gc; reading a layer fetches it through the store's fetcher, verified;
//! a fetch that fails or brings wrong bytes leaves nothing visible and the record in place.
//!
//! The "registry" here is another store, read through a fetcher as the registry crate's reads
//! the network: streamed into an ingest, committed only when size and digest match.

use std::io::{Read, Write};
use std::sync::Arc;

use forge_layerstore::archive::Compression;
use forge_layerstore::diff::{LayerOptions, LayerSource};
use forge_layerstore::maintenance::{fsck, gc};
use forge_layerstore::remote::{Fetcher, RemoteBlob, RemoteSource};
use forge_layerstore::store::Error;
use forge_layerstore::{Digest, ImageConfig, Layer, Store};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Serve {
    /// The blob's bytes.
    Good,
    /// Its bytes with one changed (a registry whose storage rotted).
    Corrupt,
    /// Half of them, then a dropped connection.
    Half,
}

#[derive(Debug)]
struct FromStore {
    origin: Store,
    serve: Serve,
}

impl Fetcher for FromStore {
    fn fetch(&self, store: &Store, source: &RemoteSource, digest: &Digest, size: u64) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        assert_eq!(source, &source_of());
        let mut bytes = Vec::new();
        self.origin.content().open_blob(digest)?.read_to_end(&mut bytes)?;
        let mut writer = store.content().writer(digest.as_str())?;
        // A resumed ingest has its first bytes already.
        let rest = &bytes[writer.offset() as usize..];
        match self.serve {
            Serve::Good => writer.write_all(rest)?,
            Serve::Corrupt => {
                let mut bad = rest.to_vec();
                bad[0] ^= 0xff;
                writer.write_all(&bad)?;
            }
            Serve::Half => {
                writer.write_all(&rest[..rest.len() / 2])?;
                return Err("connection reset".into());
            }
        }
        writer.commit(Some(size), Some(digest))?;
        Ok(())
    }
}

fn source_of() -> RemoteSource {
    RemoteSource { registry: "registry.invalid:5000".into(), repository: "ci/cache".into() }
}

/// An origin store with a two-layer image's layers, and a store `app:1` whose image names
/// them without having them.
fn lazy_image(dir: &std::path::Path) -> (Store, Store, Vec<Layer>) {
    let origin = Store::open(&dir.join("origin")).unwrap();
    let mut config = ImageConfig::scratch();
    let mut layers = Vec::new();
    for name in ["one", "two"] {
        let tree = dir.join(name);
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join(name), name.repeat(1000)).unwrap();
        // Plain, as a build stores its layers.
        let opts = LayerOptions { compression: Compression::None, source_date_epoch: Some(0) };
        let layer = origin.write_layer(&LayerSource::Dirs { lower: None, upper: &tree }, &opts).unwrap();
        config.rootfs.diff_ids.push(layer.diff_id.clone());
        layers.push(Layer::from(&layer));
    }
    let store = Store::open(&dir.join("store")).unwrap();
    for l in &layers {
        store.remote().record(&RemoteBlob { digest: l.digest.clone(), size: l.size, source: source_of(), stored: None }).unwrap();
    }
    let manifest = store.write_image(&config, &layers).unwrap();
    store.tag("app:1", &manifest).unwrap();
    (origin, store, layers)
}

fn remote_of(store: &Store) -> Vec<Digest> {
    let report = fsck(store, false).unwrap();
    assert!(report.is_clean(), "{report:?}");
    report.remote
}

#[test]
fn remote_layers_are_fetched_when_read_and_only_whole_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, store, layers) = lazy_image(dir.path());
    let mut digests: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).collect();
    digests.sort();

    // Whole without the bytes: fsck says remote, gc keeps the records; an unreachable one goes.
    assert_eq!(remote_of(&store), digests);
    let stray = Digest::of(b"stray");
    store.remote().record(&RemoteBlob { digest: stray.clone(), size: 5, source: source_of(), stored: None }).unwrap();
    // Recorded before gc started, so no lease-like freshness keeps it.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(store.root().join("forge/remote").join(stray.hex())).unwrap().set_modified(old).unwrap();
    for l in &layers {
        std::fs::File::options().write(true).open(store.root().join("forge/remote").join(l.digest.hex())).unwrap().set_modified(old).unwrap();
    }
    gc(&store).unwrap();
    assert!(store.remote().get(&stray).is_none());
    assert_eq!(remote_of(&store), digests);
    let image = store.image("app:1").unwrap();
    store.hold(&image).unwrap();

    // No fetcher: a clear error naming the blob and its source.
    match store.unpack(&layers) {
        Err(Error::Remote { digest, from, .. }) => assert!(digests.contains(&digest) && from == source_of()),
        other => panic!("{other:?}"),
    }
    // Wrong bytes, or a fetch cut halfway: nothing becomes visible, the image stays remote.
    for serve in [Serve::Corrupt, Serve::Half] {
        let fetching = store.clone().with_fetcher(Arc::new(FromStore { origin: origin.clone(), serve }));
        let err = fetching.unpack(&layers).unwrap_err();
        assert!(matches!(err, Error::Remote { .. }), "{serve:?}: {err}");
        for l in &layers {
            assert!(!store.content().exists(&l.digest), "{serve:?}");
        }
        assert_eq!(remote_of(&store), digests);
    }
    // A good fetch (resuming the half-written ingest) makes the image local.
    let fetching = store.clone().with_fetcher(Arc::new(FromStore { origin, serve: Serve::Good }));
    fetching.unpack(&layers).unwrap();
    for l in &layers {
        assert!(store.content().exists(&l.digest));
        assert!(store.remote().get(&l.digest).is_none());
    }
    assert_eq!(remote_of(&store), Vec::<Digest>::new());
}

#[test]
fn a_layer_the_source_holds_compressed_is_expanded_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, store, layers) = lazy_image(dir.path());
    let (one, two) = (&layers[0], &layers[1]);
    let gz = |l: &Layer| forge_layerstore::distribute::compressed_layer(&origin, l, Compression::Gzip).unwrap();
    let record = |stored: Layer| store.remote().record(&RemoteBlob { digest: one.digest.clone(), size: one.size, source: source_of(), stored: Some(stored) }).unwrap();
    let fetching = store.clone().with_fetcher(Arc::new(FromStore { origin: origin.clone(), serve: Serve::Good }));

    // A source that claims layer two's gzip is layer one's: caught, nothing of it visible.
    let mut lying = gz(two);
    lying.diff_id = one.diff_id.clone();
    record(lying);
    assert!(matches!(fetching.blob(&one.digest), Err(Error::Remote { .. })));
    assert!(!store.content().exists(&one.digest));

    // The true one: expanded to the plain layer, and remembered as its gzip form.
    let stored = gz(one);
    record(stored.clone());
    fetching.blob(&one.digest).unwrap();
    assert!(store.content().exists(&one.digest) && store.remote().get(&one.digest).is_none());
    assert_eq!(forge_layerstore::distribute::compressed_layer(&store, one, Compression::Gzip).unwrap(), stored);
}
