//! The overlay layout: only these functions spell where a snapshot's directories live.
//!
//! ```text
//! <root>/snapshots/<id>/fs     the snapshot's tree (upperdir when active)
//! <root>/snapshots/<id>/work   overlay workdir (active snapshots)
//! <root>/snapshots/new-*/      being built; renamed to <id> when complete
//! <root>/meta/<sha256(key)>.json
//! <root>/locks/<sha256(key)>
//! ```
//!
//! Ids are short decimal numbers so that a lowerdir list of many layers stays short.

use std::io;
use std::path::{Path, PathBuf};

use super::Mount;

pub(crate) fn snapshots_dir(root: &Path) -> PathBuf {
    root.join("snapshots")
}

pub(crate) fn upper_path(root: &Path, id: u64) -> PathBuf {
    snapshots_dir(root).join(id.to_string()).join("fs")
}

pub(crate) fn work_path(root: &Path, id: u64) -> PathBuf {
    snapshots_dir(root).join(id.to_string()).join("work")
}

/// Makes `snapshots/new-*/{fs,work}` and returns it.
pub(crate) fn new_dir(root: &Path) -> io::Result<PathBuf> {
    let dir = snapshots_dir(root).join(format!("new-{}", super::meta::unique_suffix()));
    std::fs::create_dir(&dir)?;
    std::fs::create_dir(dir.join("fs"))?;
    std::fs::create_dir(dir.join("work"))?;
    Ok(dir)
}

/// Renames a finished `new-*` dir to the next free id. `rename(2)` fails on an existing
/// non-empty directory, so two processes picking the same id cannot both win it.
pub(crate) fn install(root: &Path, new: &Path) -> io::Result<u64> {
    let snaps = snapshots_dir(root);
    let mut id = std::fs::read_dir(&snaps)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    loop {
        match std::fs::rename(new, snaps.join(id.to_string())) {
            Ok(()) => return Ok(id),
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error())
                    || e.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error()) =>
            {
                id += 1
            }
            Err(e) => return Err(e),
        }
    }
}

/// Mounts for a snapshot whose own dir is `id` (None for a view) over `lowers` (nearest
/// parent first).
pub(crate) fn mounts(root: &Path, id: Option<u64>, lowers: &[u64]) -> Vec<Mount> {
    let lowerdir = || {
        let dirs: Vec<String> = lowers
            .iter()
            .map(|l| upper_path(root, *l).display().to_string())
            .collect();
        format!("lowerdir={}", dirs.join(":"))
    };
    // The options every forge overlay needs; see `crate::diff` for why each is off.
    let fixed = ["index=off", "redirect_dir=off", "metacopy=off"].map(String::from);
    match (id, lowers.len()) {
        (Some(id), 0) => vec![Mount::bind(upper_path(root, id), false)],
        (Some(id), _) => {
            let mut options = vec![
                lowerdir(),
                format!("upperdir={}", upper_path(root, id).display()),
                format!("workdir={}", work_path(root, id).display()),
            ];
            options.extend(fixed);
            vec![Mount::overlay(options)]
        }
        (None, 0) => Vec::new(),
        (None, 1) => vec![Mount::bind(upper_path(root, lowers[0]), true)],
        (None, _) => {
            let mut options = vec![lowerdir()];
            options.extend(fixed);
            options.push("ro".into());
            vec![Mount::overlay(options)]
        }
    }
}
