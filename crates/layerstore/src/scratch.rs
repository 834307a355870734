//! Scratch space: each process that works in a store gets its own directory under `forge/tmp/`
//! (see [`Store::tmp_dir`](crate::Store::tmp_dir)), named `<pid>-<nanos>-<n>` and owned through
//! an `flock` on the file `<name>.lock` beside it, which its process holds until it ends.
//!
//! Builders mount overlays there in forge's own mount namespace, which is the host's. A forge
//! killed with `kill -9` leaves those mounts and directories behind, and only the lock says
//! whose they were: gc takes the lock of each one, and the ones it gets belonged to a process
//! that is gone. Their mounts are detached first, and the directory is removed only once none
//! is left under it, so the removal can never reach through a mount into a snapshot.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::lock::FileLock;

/// This process's scratch directory in one store; the lock marks it as in use.
#[derive(Debug)]
pub(crate) struct Scratch {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: FileLock,
}

impl Scratch {
    /// Makes a fresh scratch directory under `tmp`, its lock taken first.
    pub(crate) fn create(tmp: &Path) -> io::Result<Scratch> {
        fs::create_dir_all(tmp)?;
        loop {
            let name = crate::snapshot::unique_suffix();
            let lock_path = tmp.join(format!("{name}.lock"));
            let Some(lock) = FileLock::try_exclusive(&lock_path)? else { continue };
            // A gc may have judged the lock file unowned in the instant before we locked it and
            // removed it: then ours is not the one at its place, and we take another name.
            let (ours, there) = (lock.file().metadata()?, fs::metadata(&lock_path).ok());
            if there.is_none_or(|t| (t.dev(), t.ino()) != (ours.dev(), ours.ino())) {
                continue;
            }
            let dir = tmp.join(&name);
            fs::create_dir(&dir)?;
            return Ok(Scratch { dir, lock_path, _lock: lock });
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Never recursively: something could still be mounted in there. What is left (and its
        // lock file) is gc's, once the lock is released with this value.
        if fs::remove_dir(&self.dir).is_ok() {
            let _ = fs::remove_file(&self.lock_path);
        }
    }
}

/// What [`reclaim`] removed.
#[derive(Debug, Default)]
pub(crate) struct Reclaimed {
    pub(crate) dirs: usize,
    pub(crate) mounts: usize,
}

/// Removes the scratch directories of processes that are gone (and their mounts), plus entries
/// from before per-process scratch directories that are older than `since` and have nothing
/// mounted under them.
pub(crate) fn reclaim(tmp: &Path, since: SystemTime) -> io::Result<Reclaimed> {
    let mut out = Reclaimed::default();
    let tmp = match fs::canonicalize(tmp) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        // mountinfo names mount points by their canonical paths.
        other => other?,
    };
    for entry in fs::read_dir(&tmp)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(owner) = name.strip_suffix(".lock") {
            let Some(_dead) = FileLock::try_exclusive(&path)? else { continue };
            let dir = tmp.join(owner);
            out.mounts += detach_all_under(&dir)?;
            if mounts_under(&dir)?.is_empty() {
                match fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                fs::remove_file(&path)?;
                out.dirs += 1;
            }
        } else if !tmp.join(format!("{name}.lock")).exists() {
            // Made before scratch directories had owners (or the lock file is being made,
            // which makes it newer than `since`).
            let old = fs::symlink_metadata(&path).and_then(|m| m.modified()).is_ok_and(|t| t < since);
            if old && mounts_under(&path)?.is_empty() {
                let removed = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                if removed.is_ok() {
                    out.dirs += 1;
                }
            }
        }
    }
    Ok(out)
}

/// Detaches every mount at or under `dir`, deepest first, until none is left (a few rounds at
/// most: mounts can be stacked). Returns how many were detached.
fn detach_all_under(dir: &Path) -> io::Result<usize> {
    let mut detached = 0;
    for _ in 0..16 {
        let mut mounts = mounts_under(dir)?;
        if mounts.is_empty() {
            break;
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for m in mounts {
            if rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW).is_ok() {
                detached += 1;
            }
        }
    }
    Ok(detached)
}

/// The mount points at or under `dir`, from `/proc/self/mountinfo`.
///
/// Parsed here rather than with a crate: the one field needed is the fifth, with `\ooo` octal
/// escapes for blanks and backslashes (proc(5)), and the crates that parse the whole file
/// (procfs, proc-mounts) would be a dependency for these few lines.
fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStringExt;
    let text = fs::read("/proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let Some(field) = line.split(|&b| b == b' ').nth(4) else { continue };
        let mut raw = Vec::with_capacity(field.len());
        let mut i = 0;
        while i < field.len() {
            let octal = field.get(i + 1..i + 4).filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
            match octal {
                Some(d) => {
                    raw.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                    i += 4;
                }
                None => {
                    raw.push(field[i]);
                    i += 1;
                }
            }
        }
        let point = PathBuf::from(std::ffi::OsString::from_vec(raw));
        if point.starts_with(dir) {
            out.push(point);
        }
    }
    Ok(out)
}
