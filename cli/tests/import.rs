//! `forge import` through the real binary: the image lands in the store skopeo reads, and bad
//! input fails with one clear line.

use std::process::Command;

#[test]
fn imports_a_rootfs_that_skopeo_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    forge_testkit::busybox_rootfs(&rootfs);
    let tar = tmp.path().join("rootfs.tar");
    assert!(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg(".").status().unwrap().success());
    let store = tmp.path().join("store");
    let out = Command::new(env!("CARGO_BIN_EXE_forge")).arg("--root").arg(&store).arg("import").arg(&tar).arg("busybox:latest").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    let inspect = Command::new("skopeo").arg("inspect").arg(format!("oci:{}:busybox:latest", store.display())).output().unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    assert!(String::from_utf8_lossy(&inspect.stdout).contains(&digest));
}

#[test]
fn missing_tarball_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("--root")
        .arg(tmp.path())
        .args(["import", "/nonexistent.tar", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: opening /nonexistent.tar:"), "{err}");
    assert!(!err.contains("panicked"));
}
