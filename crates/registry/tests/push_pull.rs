//! Push and pull against a real registry (Debian's docker-registry), checked with skopeo.

mod common;

use common::{busybox_store, incompressible, one_file_store, rt, skopeo, Recorder};
use forge_layerstore::Store;
use forge_registry::{Client, ClientConfig, NoProgress, Reference};

#[test]
fn push_then_pull_into_an_empty_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = busybox_store(tmp.path());
    let registry = forge_testkit::Registry::start();
    let client = Client::new(ClientConfig::default());
    let dest = Reference::parse(&format!("{}/lib/busybox:1", registry.addr)).unwrap();
    let rec = Recorder::default();
    let pushed = rt().block_on(client.push(&store, "busybox:latest", &dest, &rec)).unwrap();
    assert_eq!(rec.hows(), ["pushed", "pushed"]);

    let inspect: serde_json::Value = serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &format!("docker://{dest}")])).unwrap();
    assert_eq!(inspect["Digest"], pushed.digest().to_string());

    // Pushing again finds every blob there; another repository mounts them.
    let rec = Recorder::default();
    rt().block_on(client.push(&store, "busybox:latest", &dest, &rec)).unwrap();
    assert_eq!(rec.hows(), ["exists", "exists"]);
    let other = Reference::parse(&format!("{}/other/busybox:1", registry.addr)).unwrap();
    let rec = Recorder::default();
    rt().block_on(client.push(&store, "busybox:latest", &other, &rec)).unwrap();
    assert_eq!(rec.hows(), ["mounted", "mounted"]);

    let empty = Store::open(&tmp.path().join("empty")).unwrap();
    let rec = Recorder::default();
    let pulled = rt().block_on(client.pull(&dest, &empty, &rec)).unwrap();
    assert_eq!(pulled.manifest.digest(), pushed.digest());
    assert_eq!(pulled.name, dest.to_string());
    assert_eq!(rec.hows(), ["pulled", "pulled"]);
    let report = forge_layerstore::maintenance::fsck(&empty, false).unwrap();
    assert!(report.is_clean() && report.blobs_checked == 3, "{report:?}");
    assert_eq!(empty.image(&dest.to_string()).unwrap().id().unwrap(), store.image("busybox:latest").unwrap().id().unwrap());
    // Pulling what is already there moves no blob.
    let rec = Recorder::default();
    rt().block_on(client.pull(&dest, &empty, &rec)).unwrap();
    assert_eq!(rec.hows(), ["exists", "exists"]);
}

#[test]
fn pulls_what_skopeo_pushed_and_skopeo_copies_what_forge_pushed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = busybox_store(tmp.path());
    let registry = forge_testkit::Registry::start();
    let by_skopeo = format!("{}/by/skopeo:1", registry.addr);
    skopeo(&["copy", "--dest-tls-verify=false", &format!("oci:{}:busybox:latest", store.root().display()), &format!("docker://{by_skopeo}")]);
    let empty = Store::open(&tmp.path().join("empty")).unwrap();
    let client = Client::new(ClientConfig::default());
    let pulled = rt().block_on(client.pull(&Reference::parse(&by_skopeo).unwrap(), &empty, &NoProgress)).unwrap();
    let image = empty.image_of(&pulled.manifest).unwrap();
    assert_eq!(image.config.architecture, "amd64");
    assert_eq!(image.layers().unwrap().len(), 1);

    let by_forge = Reference::parse(&format!("{}/by/forge:1", registry.addr)).unwrap();
    rt().block_on(client.push(&store, "busybox:latest", &by_forge, &NoProgress)).unwrap();
    let layout = tmp.path().join("copied");
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{by_forge}"), &format!("oci:{}:x", layout.display())]);
    assert!(layout.join("index.json").exists());
}

#[test]
fn a_large_layer_goes_up_in_chunks_and_comes_back_intact() {
    let tmp = tempfile::tempdir().unwrap();
    // Incompressible, so the blob stays larger than one upload chunk.
    let store = one_file_store(tmp.path(), "big:1", &incompressible(48 << 20, 0x9e37_79b9_7f4a_7c15), forge_layerstore::archive::Compression::Gzip);
    let registry = forge_testkit::Registry::start();
    let dest = Reference::parse(&format!("{}/big:1", registry.addr)).unwrap();
    let client = Client::new(ClientConfig::default());
    rt().block_on(client.push(&store, "big:1", &dest, &NoProgress)).unwrap();
    let empty = Store::open(&tmp.path().join("empty")).unwrap();
    rt().block_on(client.pull(&dest, &empty, &NoProgress)).unwrap();
    let layer = &empty.image(&dest.to_string()).unwrap().layers().unwrap()[0];
    assert!(layer.size > 40 << 20);
    empty.content().verify(&layer.digest).unwrap();
}

#[test]
fn missing_images_and_bad_references_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = busybox_store(tmp.path());
    let registry = forge_testkit::Registry::start();
    let client = Client::new(ClientConfig::default());
    let nothing = Reference::parse(&format!("{}/no/such:1", registry.addr)).unwrap();
    let err = rt().block_on(client.pull(&nothing, &store, &NoProgress)).unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    assert!(store.index().resolve(&nothing.to_string()).unwrap().is_none());
    let err = rt().block_on(client.push(&store, "not-here:1", &nothing, &NoProgress)).unwrap_err();
    assert!(err.to_string().contains("not-here"), "{err}");
    assert!(Reference::parse("Bad/Name").is_err());
}

#[test]
fn a_big_plain_layer_goes_up_while_it_is_compressed() {
    let tmp = tempfile::tempdir().unwrap();
    // 16 MiB, half of it incompressible: past the size that streams, and one upload chunk
    // once gzipped (so a PATCH in the log can only be the streamed one).
    let mut data = incompressible(8 << 20, 0x2545_f491_4f6c_dd1d);
    data.resize(16 << 20, 0);
    let store = one_file_store(tmp.path(), "plain:1", &data, forge_layerstore::archive::Compression::None);
    let plain = store.image("plain:1").unwrap().layers().unwrap().remove(0);
    let registry = forge_testkit::Registry::start();
    let dest = Reference::parse(&format!("{}/plain/app:1", registry.addr)).unwrap();
    let client = Client::new(ClientConfig::default());
    let rec = Recorder::default();
    rt().block_on(client.push(&store, "plain:1", &dest, &rec)).unwrap();
    assert_eq!(rec.hows(), ["pushed", "pushed"]);
    let log = registry.log();
    assert_eq!(log.matches("\"PATCH /v2/plain/app/blobs/uploads/").count(), 1, "{log}");

    // What went up is the blob the store remembers for the layer, whole.
    let gzipped = forge_layerstore::distribute::compressed_layer(&store, &plain, forge_layerstore::archive::Compression::Gzip).unwrap();
    let empty = Store::open(&tmp.path().join("empty")).unwrap();
    rt().block_on(client.pull(&dest, &empty, &NoProgress)).unwrap();
    let pulled = empty.image(&dest.to_string()).unwrap().layers().unwrap().remove(0);
    assert_eq!(pulled.digest, gzipped.digest);
    assert_eq!(pulled.diff_id, plain.diff_id);
    empty.content().verify(&pulled.digest).unwrap();
    let layout = tmp.path().join("copied");
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{dest}"), &format!("oci:{}:x", layout.display())]);
    // A second push finds it there.
    let rec = Recorder::default();
    rt().block_on(client.push(&store, "plain:1", &dest, &rec)).unwrap();
    assert_eq!(rec.hows(), ["exists", "exists"]);
}
