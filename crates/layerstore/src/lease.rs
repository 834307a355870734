//! Leases: how a running build, pull, push, load or import keeps [`gc`](crate::maintenance::gc)
//! away from what it is making or using, as containerd's leases do.
//!
//! # What a lease is
//!
//! A lease is one file, `forge/leases/<id>.json`, made by [`Store::lease`](crate::Store::lease)
//! when an operation starts and removed when the [`Lease`] value drops. It names the operation
//! and its owner pid (for people reading the directory), and the manifests it holds as extra gc
//! roots (a push holds the image it sends). Its owner keeps an `flock` on it for as long as the
//! lease lives; the lock is taken on a temporary file *before* that file is renamed into place,
//! so a lease file visible under its name is always locked by a live owner, or its owner is gone.
//!
//! A lease holds two things:
//!
//! - **everything created or reused since it was taken.** Its start is the lease file's mtime,
//!   stamped by the kernel's clock, the same clock that stamps the store's files. Everything a
//!   leased operation makes afterwards (blobs, ingests, snapshot records and directories, scratch
//!   directories and their mounts) has a later mtime, and whatever it *reuses* it stamps first:
//!   [`ContentStore::reuse`](crate::content::ContentStore::reuse) for a blob that is already
//!   there and [`Snapshotter::reuse`](crate::snapshot::Snapshotter::reuse) for an unpacked layer.
//!   So a build never has to list its intermediate snapshots and blobs.
//! - **the roots it names**, marked by gc like tags, with everything they reach.
//!
//! # How gc honours leases
//!
//! gc notes its own start time, then reads `forge/leases/`: a lease file it can lock has lost its
//! owner (killed, crashed) and is expired, removed; the others are live. gc then keeps anything
//! whose mtime is not older than the oldest live lease's start (or than gc's own start, which
//! covers a lease taken while gc runs). The check and the removal of one blob or snapshot happen
//! under that object's own lock (an `flock` on the blob file, the snapshot key's lock), and a
//! reuse stamps the object under the same lock, so either the reuse comes first and gc sees the
//! new mtime, or gc comes first and the reuse finds the object gone and makes it again. No lock
//! ever covers the whole store.
//!
//! This replaces the old "blobs younger than an hour are kept" grace: a build that took longer
//! than the hour lost its blobs, while a blob left by a killed pull was kept for an hour for
//! nothing. Now what no live lease holds goes at once, and what a live lease holds stays however
//! long the operation takes. Programs that write to a store without a lease (the library's own
//! examples) get no protection from a gc running at the same time.
//!
//! The price of "everything since" is that gc keeps more than it strictly must while any long
//! operation runs (everything anyone made since it started); the next gc after it ends takes it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::lock::FileLock;

/// What a lease file says (informational except for `roots`).
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// What runs: `build`, `pull`, `push`, `load`, `import`.
    operation: String,
    /// The owner process.
    pid: u32,
    /// Manifests (or indexes) gc treats as roots while the lease lives.
    #[serde(default)]
    roots: Vec<String>,
}

/// A live lease; dropping it releases it.
#[derive(Debug)]
pub struct Lease {
    path: PathBuf,
    _lock: FileLock,
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Removed while still locked: gc never sees this lease unlocked under its name.
        let _ = fs::remove_file(&self.path);
    }
}

pub(crate) fn dir(root: &Path) -> PathBuf {
    root.join("forge").join("leases")
}

/// Takes a lease for `operation` holding `roots`.
pub(crate) fn acquire(root: &Path, operation: &str, roots: &[Digest]) -> io::Result<Lease> {
    let record = Record { operation: operation.to_string(), pid: std::process::id(), roots: roots.iter().map(|d| d.to_string()).collect() };
    let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
    let dir = dir(root);
    fs::create_dir_all(&dir)?;
    // A gc may take the fresh temporary file for a dead lease's leftover in the instant before
    // it is locked (and remove it): then the rename finds it gone, and a second try is enough.
    let mut tries = 0;
    loop {
        tries += 1;
        match try_acquire(&dir, &bytes) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => continue,
            other => return other,
        }
    }
}

fn try_acquire(dir: &Path, bytes: &[u8]) -> io::Result<Lease> {
    let (file, tmp_path) = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?.keep().map_err(|e| e.error)?;
    let path = dir.join(format!("{}.json", crate::snapshot::unique_suffix()));
    let locked = (|| {
        let lock = FileLock::try_file(file)?.ok_or_else(|| io::Error::other("a fresh lease file is locked by another process"))?;
        let mut f = lock.file();
        f.write_all(bytes)?;
        // Not synced: a lease matters only while its owner lives, and a crash ends the owner
        // (and its lock, which is all gc looks at); two fsyncs were a fifth of a no-op rebuild.
        fs::rename(&tmp_path, &path)?;
        Ok(lock)
    })();
    match locked {
        Ok(lock) => Ok(Lease { path, _lock: lock }),
        Err(e) => {
            let _ = fs::remove_file(&tmp_path);
            Err(e)
        }
    }
}

/// The live leases of a store, as gc sees them.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// The start of the oldest live lease.
    pub(crate) oldest: Option<SystemTime>,
    /// The roots they hold.
    pub(crate) roots: Vec<Digest>,
    /// Leases whose owner was gone, removed.
    pub(crate) expired: usize,
}

/// Reads the leases, expiring (removing) those whose owner is gone.
pub(crate) fn live(root: &Path) -> io::Result<Live> {
    let dir = dir(root);
    let mut out = Live::default();
    let entries = match fs::read_dir(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        other => other?,
    };
    for entry in entries {
        let path = entry?.path();
        let file = match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            other => other?,
        };
        match FileLock::try_file(file.try_clone()?)? {
            Some(_dead) => {
                // Nobody holds it: its owner released it just now, or died.
                let _ = fs::remove_file(&path);
                out.expired += 1;
            }
            None => {
                let since = file.metadata()?.modified()?;
                out.oldest = Some(out.oldest.map_or(since, |o| o.min(since)));
                // A lease being made (still `.tmp-*`) may not be whole yet; it holds its start.
                if let Ok(record) = serde_json::from_reader::<_, Record>(io::BufReader::new(file)) {
                    out.roots.extend(record.roots.iter().filter_map(|r| Digest::from_str(r).ok()));
                }
            }
        }
    }
    Ok(out)
}
