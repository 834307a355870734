//! A store holding busybox (from Debian's busybox-static), a runtime, and progress that records
//! what happened to each blob.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use forge_layerstore::archive::Compression;
use forge_layerstore::Store;
use forge_registry::Progress;

pub fn busybox_store(dir: &Path) -> Store {
    let rootfs = dir.join("rootfs");
    forge_testkit::busybox_rootfs(&rootfs);
    let out = Command::new("tar").arg("-C").arg(&rootfs).args(["--numeric-owner", "-cf", "-", "."]).output().unwrap();
    assert!(out.status.success());
    let root = dir.join("store");
    forge_layerstore::import::import_rootfs(&root, &out.stdout[..], "busybox:latest", Compression::Gzip).unwrap();
    Store::open(&root).unwrap()
}

/// A store in `dir/store` whose image `name` has one layer, stored with `compression`: a file
/// `data.bin` holding `data`.
pub fn one_file_store(dir: &Path, name: &str, data: &[u8], compression: Compression) -> Store {
    let rootfs = dir.join("one-file");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("data.bin"), data).unwrap();
    let out = Command::new("tar").arg("-C").arg(&rootfs).args(["-cf", "-", "."]).output().unwrap();
    assert!(out.status.success());
    let root = dir.join("store");
    forge_layerstore::import::import_rootfs(&root, &out.stdout[..], name, compression).unwrap();
    Store::open(&root).unwrap()
}

/// `len` bytes that do not compress (xorshift), the same for the same `seed`.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Records `done` outcomes: (digest, how).
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<(String, String)>>);

impl Progress for Recorder {
    fn start(&self, _: &str, _: u64, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn done(&self, digest: &str, how: &str) {
        self.0.lock().unwrap().push((digest.to_string(), how.to_string()));
    }
}

impl Recorder {
    pub fn hows(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.lock().unwrap().iter().map(|(_, h)| h.clone()).collect();
        v.sort();
        v
    }
}

pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
