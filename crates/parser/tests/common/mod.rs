//! Shared access to the conformance data beside the repository (../shared/conformance).

use std::path::{Path, PathBuf};

/// `../shared/conformance`, relative to the repository root.
pub fn conformance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
}

/// The real-world corpus: one `(case directory, Dockerfile bytes)` per case, sorted.
pub fn real_world_dockerfiles() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = conformance().join("real-dockerfiles");
    let mut cases: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (is ../shared beside the repo?)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| {
            let bytes = std::fs::read(p.join("Dockerfile")).unwrap();
            (p, bytes)
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "only {} real-world Dockerfiles found", cases.len());
    cases
}
