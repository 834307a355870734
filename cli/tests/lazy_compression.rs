//! Lazy compression through the binary: a build stores plain-tar layers (cheap to make), and the
//! image leaves the machine gzipped (push, save, `--output type=oci`), with the same digests
//! every time and from any store; a second push reuses the compressed blobs and mounts them
//! across repositories.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::Forge;

fn context(dir: &Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY a.txt /a.txt\nRUN echo made > /b.txt\n").unwrap();
    std::fs::write(ctx.join("a.txt"), "copied\n".repeat(1000)).unwrap();
    ctx
}

/// The layers of a manifest blob in the store: (media type, digest).
fn stored_layers(forge: &Forge, manifest: &str) -> Vec<(String, String)> {
    let path = forge.store().join("blobs/sha256").join(manifest.trim_start_matches("sha256:"));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    manifest["layers"].as_array().unwrap().iter().map(|l| (l["mediaType"].as_str().unwrap().to_string(), l["digest"].as_str().unwrap().to_string())).collect()
}

/// What the registry serves for `reference`: the manifest digest and its layers' media types.
fn remote(reference: &str) -> (String, Vec<String>) {
    let raw = Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{reference}")).output().unwrap();
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    let digest = format!("sha256:{}", forge_layerstore::Digest::of(&raw.stdout).hex());
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    (digest, manifest["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap().to_string()).collect())
}

fn pushed_digest(r: &common::Ran) -> String {
    r.stdout.trim().rsplit_once('@').expect("push prints NAME@DIGEST").1.to_string()
}

fn build(forge: &Forge, ctx: &Path) {
    let out = forge.cmd().env("SOURCE_DATE_EPOCH", "1700000000").args(["build", "-q", "-t", "app:1"]).arg(ctx).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn builds_store_plain_layers_that_leave_gzipped_reproducibly_and_once() {
    let forge = Forge::with_busybox();
    let ctx = context(forge.dir.path());
    build(&forge, &ctx);
    let local = forge.inspect("app:1")["ManifestDigest"].as_str().unwrap().to_string();
    let built = &stored_layers(&forge, &local)[1..];
    assert_eq!(built.len(), 2);
    assert!(built.iter().all(|(t, _)| t == "application/vnd.oci.image.layer.v1.tar"), "a build stored compressed layers: {built:?}");
    // podman reads the store's plain layers.
    assert_eq!(forge.podman_run("app:1", &["cat", "/b.txt"]), "made\n");

    let registry = forge_testkit::Registry::start();
    let first = format!("{}/one/app:1", registry.addr);
    let pushed = pushed_digest(&forge.ok(&["push", "-q", "app:1", &first]));
    let (served, types) = remote(&first);
    assert_eq!(served, pushed, "push printed another digest than the registry serves");
    assert!(types.iter().all(|t| t == "application/vnd.oci.image.layer.v1.tar+gzip"), "{types:?}");

    // The compressed blobs are kept and reused: the second push writes none again (same files)
    // and mounts every layer from the first repository.
    let sent = stored_layers(&forge, &pushed);
    let blob_ino = |d: &str| std::fs::metadata(forge.store().join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap().ino();
    let inodes: Vec<u64> = sent.iter().map(|(_, d)| blob_ino(d)).collect();
    forge.ok(&["store", "gc"]);
    let second = format!("{}/two/app:1", registry.addr);
    let again = forge.ok(&["push", "app:1", &second]);
    assert_eq!(pushed_digest(&again), pushed, "a second push gave another digest");
    assert_eq!(sent.iter().map(|(_, d)| blob_ino(d)).collect::<Vec<_>>(), inodes, "a second push compressed again");
    assert!(again.stderr.contains(": mounted") && !again.stderr.contains(": pushed"), "every blob mounted from the first repository: {}", again.stderr);

    // Another store building the same context pushes the same digest.
    let other = Forge::with_busybox_of(&forge);
    build(&other, &ctx);
    let third = format!("{}/three/app:1", registry.addr);
    assert_eq!(pushed_digest(&other.ok(&["push", "-q", "app:1", &third])), pushed, "the same build pushed from another store differs");

    // Archives carry the same gzipped image.
    let archive = forge.dir.path().join("app.tar");
    forge.ok(&["save", "--format", "oci", "-o", archive.to_str().unwrap(), "app:1"]);
    let index = Command::new("tar").arg("-xOf").arg(&archive).arg("index.json").output().unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index.stdout).unwrap();
    assert_eq!(index["manifests"][0]["digest"].as_str(), Some(pushed.as_str()));
    let out = forge.dir.path().join("out.tar");
    let r = forge.cmd().env("SOURCE_DATE_EPOCH", "1700000000").args(["build", "-q", "-o"]).arg(format!("type=oci,dest={}", out.display())).arg(&ctx).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let index = Command::new("tar").arg("-xOf").arg(&out).arg("index.json").output().unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index.stdout).unwrap();
    assert_eq!(index["manifests"][0]["digest"].as_str(), Some(pushed.as_str()));
}
