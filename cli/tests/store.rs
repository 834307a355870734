//! The store commands through the binary: images, tag, rmi, gc, fsck (catching a corrupted
//! blob), and a store that survives forge being killed at any moment.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Forge;

#[test]
fn images_tag_rmi_gc() {
    let forge = Forge::with_busybox();
    let ctx = forge.context("small", &[("Dockerfile", "FROM busybox:latest\nRUN echo hi > /hi\n")]);
    assert!(forge.build(&ctx, "small:1", &[]).ok);
    forge.ok(&["tag", "small:1", "small:alias"]);
    let list: serde_json::Value = serde_json::from_str(&forge.ok(&["images", "--format", "json"]).stdout).unwrap();
    let names: Vec<String> = list.as_array().unwrap().iter().map(|r| format!("{}:{}", r["repository"].as_str().unwrap(), r["tag"].as_str().unwrap())).collect();
    assert_eq!(names, ["busybox:latest", "small:1", "small:alias"]);
    let id = forge.inspect("small:1")["Id"].as_str().unwrap().to_string();
    assert_eq!(forge.inspect(&id[7..19])["Id"], id.as_str(), "a short image ID resolves");

    // Removing one name keeps the image; removing by ID removes every name.
    forge.ok(&["rmi", "small:alias"]);
    assert!(forge.run(&["inspect", "small:alias"]).stderr.contains("not found"));
    forge.ok(&["rmi", &id]);
    assert!(forge.run(&["inspect", "small:1"]).stderr.contains("not found"));

    // gc takes the removed image's config and manifest at once (no build holds them), and
    // keeps its RUN layer, which the build cache still holds.
    let gc: serde_json::Value = serde_json::from_str(&forge.ok(&["store", "gc", "--format", "json"]).stdout).unwrap();
    assert_eq!(gc["blobs_removed"], 2, "{gc}");
    forge.ok(&["store", "fsck"]);
    assert!(forge.build(&ctx, "small:2", &[]).stderr.contains("CACHED"));
}

#[test]
fn fsck_finds_and_repairs_a_corrupt_blob() {
    let forge = Forge::with_busybox();
    let layer = forge.inspect("busybox:latest")["Layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let path = forge.store().join("blobs/sha256").join(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let r = forge.run(&["store", "fsck"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stdout.contains(&format!("corrupt blob sha256:{layer}")), "{}", r.stdout);
    let r = forge.run(&["store", "fsck", "--repair"]);
    assert!(!r.ok && r.stdout.contains("(removed)") && r.stdout.contains("broken image busybox:latest"), "{}", r.stdout);
    assert!(!path.exists());
}

#[test]
fn a_killed_forge_leaves_a_store_that_opens_and_passes_fsck() {
    let forge = Forge::with_busybox();
    // A tarball big enough that an import is still writing when it is killed.
    let big = forge.dir.path().join("big");
    std::fs::create_dir(&big).unwrap();
    let mut x: u64 = 88172645463325252;
    let data: Vec<u8> = (0..(64 << 20)).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }).collect();
    std::fs::write(big.join("data"), &data).unwrap();
    let tar = forge.dir.path().join("big.tar");
    assert!(Command::new("tar").arg("-C").arg(&big).arg("-cf").arg(&tar).arg(".").status().unwrap().success());
    for (i, delay) in [20u64, 80, 150, 300, 600].into_iter().enumerate() {
        let mut child = forge.cmd().args(["import", tar.to_str().unwrap(), &format!("big:{i}")]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever was interrupted: the store opens, every blob verifies, every tag is whole.
        forge.ok(&["store", "fsck"]);
        forge.ok(&["images"]);
    }
    forge.ok(&["import", tar.to_str().unwrap(), "big:done"]);
    forge.ok(&["store", "fsck"]);
}

#[test]
fn loads_an_oci_layout_that_skopeo_wrote() {
    let forge = Forge::with_busybox();
    let layout = forge.dir.path().join("skopeo-layout");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:busybox:latest", forge.store().display()))
        .arg(format!("oci:{}:copied:7", layout.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let other = Forge::empty();
    let loaded = other.ok(&["load", "-i", layout.to_str().unwrap()]);
    assert!(loaded.stdout.contains("copied:7"), "{}", loaded.stdout);
    assert_eq!(other.inspect("copied:7")["Id"], forge.inspect("busybox:latest")["Id"]);
    other.ok(&["store", "fsck"]);
}

#[test]
fn an_unusable_store_is_one_clear_line_that_names_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_forge")).arg("--root").arg(&file).arg("images").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: opening the store: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // The library's message already ends with its source: anyhow must not add it again.
    let causes: Vec<&str> = err.trim_end().split(": ").collect();
    let mut seen = std::collections::HashSet::new();
    assert!(causes.iter().all(|c| seen.insert(*c)), "a cause is printed twice: {err}");
}
