//! Lazy layer tars through the binary: an untagged build keeps its plain layers as snapshots
//! only (no tar written), gc keeps them for the build cache, and a tagged build from that
//! cache makes the tars from the snapshots with the digests an eager build gives, so the
//! tagged image is whole in the store's OCI layout.

mod common;

use std::path::Path;

use common::Forge;

fn context(dir: &Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY a.txt /a.txt\nRUN echo made > /b.txt && mkdir -p /d && head -c 300000 /a.txt > /d/c\n").unwrap();
    std::fs::write(ctx.join("a.txt"), "copied\n".repeat(100_000)).unwrap();
    ctx
}

fn build(forge: &Forge, ctx: &Path, tag: &[&str]) -> String {
    let out = forge.cmd().env("SOURCE_DATE_EPOCH", "1700000000").args(["build", "-q"]).args(tag).arg(ctx).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The layer digests of the image `reference` names, from its manifest in the store.
fn layers(forge: &Forge, reference: &str) -> Vec<String> {
    let manifest = forge.inspect(reference)["ManifestDigest"].as_str().unwrap().to_string();
    let path = forge.store().join("blobs/sha256").join(manifest.trim_start_matches("sha256:"));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

fn blob_stored(forge: &Forge, digest: &str) -> bool {
    forge.store().join("blobs/sha256").join(digest.trim_start_matches("sha256:")).exists()
}

fn records(forge: &Forge) -> usize {
    std::fs::read_dir(forge.store().join("forge/snapblob")).map_or(0, |d| d.count())
}

/// The diffIDs (the plain layers' digests) of the config `id` in the store.
fn diff_ids(forge: &Forge, id: &str) -> Vec<String> {
    let path = forge.store().join("blobs/sha256").join(id.trim_start_matches("sha256:"));
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    config["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect()
}

#[test]
fn an_untagged_build_writes_no_tars_and_tagging_makes_the_eager_digests() {
    let eager = Forge::with_busybox();
    let ctx = context(eager.dir.path());
    build(&eager, &ctx, &["-t", "app:1"]);
    let want = layers(&eager, "app:1");
    assert_eq!(want.len(), 3);
    assert!(want.iter().all(|d| blob_stored(&eager, d)));
    assert_eq!(records(&eager), 0, "a tagged build keeps no layer as a snapshot only");

    // An untagged build (warming the build cache) writes no tar for its own layers.
    let lazy = Forge::with_busybox_of(&eager);
    let id = build(&lazy, &ctx, &[]);
    // The built layers are plain: their digests are their diffIDs (the base's is gzipped).
    assert_eq!(diff_ids(&lazy, &id)[1..], want[1..], "the same digests as an eager build");
    assert!(want[1..].iter().all(|d| !blob_stored(&lazy, d)), "an untagged build wrote its layers' tars");
    assert_eq!(records(&lazy), 2);
    lazy.ok(&["store", "gc"]);
    assert_eq!(records(&lazy), 2, "gc dropped layers the build cache needs");

    // The same build tagged takes every step from the cache; the tag stores the tars, so
    // OCI tools read the image from the store.
    build(&lazy, &ctx, &["-t", "app:2"]);
    assert_eq!(layers(&lazy, "app:2"), want);
    assert_eq!(records(&lazy), 0);
    assert!(want.iter().all(|d| blob_stored(&lazy, d)));
    assert_eq!(lazy.podman_run("app:2", &["cat", "/b.txt"]), "made\n");
    let archive = lazy.dir.path().join("app.tar");
    lazy.ok(&["save", "-o", archive.to_str().unwrap(), "app:2"]);
}
