//! A forge store is an OCI layout that tools nobody here wrote can read: an imported busybox
//! rootfs is inspected by skopeo and unpacked by umoci, and tags survive concurrent writers.

use std::path::Path;
use std::process::Command;

use forge_layerstore::archive::Compression;
use forge_layerstore::import::import_rootfs;
use forge_layerstore::index::Index;

fn busybox_tar(dir: &Path) -> Vec<u8> {
    let rootfs = dir.join("rootfs");
    forge_testkit::busybox_rootfs(&rootfs);
    let out = Command::new("tar").arg("-C").arg(&rootfs).args(["--numeric-owner", "-cf", "-", "."]).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn skopeo_and_umoci_read_an_imported_image() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let tar = busybox_tar(tmp.path());
    let desc = import_rootfs(&store, &tar[..], "busybox:latest", Compression::Gzip).unwrap();
    Index::open(&store).unwrap().tag("bb", &desc).unwrap();

    let inspect = run(Command::new("skopeo").arg("inspect").arg(format!("oci:{}:busybox:latest", store.display())));
    let json: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(json["Architecture"], "amd64");
    assert_eq!(json["Os"], "linux");
    assert_eq!(json["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(json["Digest"], desc.digest().to_string());

    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci").arg("unpack").arg("--image").arg(format!("{}:bb", store.display())).arg(&bundle));
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    assert_eq!(std::fs::read_link(bundle.join("rootfs/bin/sh")).unwrap(), Path::new("busybox"));
}

#[test]
fn import_is_deterministic_and_zstd_works() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = busybox_tar(tmp.path());
    let a = import_rootfs(&tmp.path().join("a"), &tar[..], "x", Compression::Gzip).unwrap();
    let b = import_rootfs(&tmp.path().join("b"), &tar[..], "x", Compression::Gzip).unwrap();
    assert_eq!(a.digest(), b.digest());
    let z = import_rootfs(&tmp.path().join("z"), &tar[..], "x", Compression::Zstd).unwrap();
    assert_ne!(z.digest(), a.digest());
    let inspect = run(Command::new("skopeo").args(["inspect", "--raw"]).arg(format!("oci:{}:x:latest", tmp.path().join("z").display())));
    assert!(inspect.contains("application/vnd.oci.image.layer.v1.tar+zstd"), "{inspect}");
}

#[test]
fn garbage_is_refused_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let err = import_rootfs(&store, &b"BZh91AY&SY this is bzip2, not supported"[..], "x", Compression::Gzip).unwrap_err();
    assert!(err.to_string().contains("rootfs tarball"), "{err}");
    assert!(Index::open(&store).unwrap().list().unwrap().is_empty());
}

#[test]
fn concurrent_tagging_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let tar = busybox_tar(tmp.path());
    let desc = import_rootfs(&store, &tar[..], "base", Compression::Gzip).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (store, desc) = (&store, &desc);
            s.spawn(move || {
                let index = Index::open(store).unwrap();
                for i in 0..10 {
                    index.tag(&format!("t{t}-{i}"), desc).unwrap();
                }
            });
        }
    });
    let index = Index::open(&store).unwrap();
    assert_eq!(index.list().unwrap().len(), 41);
    assert!(index.untag("t0-0").unwrap());
    assert!(!index.untag("t0-0").unwrap());
    assert!(index.resolve("t0-0").unwrap().is_none());
    assert_eq!(index.resolve("t3-9").unwrap().unwrap().digest(), desc.digest());
}
