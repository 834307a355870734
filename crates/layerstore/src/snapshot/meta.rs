//! Snapshot records: one small JSON file per key under `meta/`, named by the sha256 of the key
//! so any key string is a safe file name. A record maps the key to the short numeric id of its
//! directory and names its parent; committed records are keyed by chain ID.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// The state of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable, made by `prepare`; can be committed.
    Active,
    /// Read-only view of a parent, made by `view`.
    View,
    /// Immutable, named by its chain ID; the only kind that can be a parent.
    Committed,
}

/// What is stored about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The key (active, view) or chain ID text (committed).
    pub key: String,
    /// Directory id: the snapshot lives in `snapshots/<id>/{fs,work}`.
    pub id: u64,
    /// Active, view or committed.
    pub kind: Kind,
    /// The committed parent, if any.
    pub parent: Option<Digest>,
    /// Who keeps this active snapshot for good (`container <id>`): a gc root until its holder
    /// removes it, whatever leases say. `None` for snapshots that only live as long as the
    /// operation (and lease) that made them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
}

pub(crate) fn record_path(meta_dir: &Path, key: &str) -> PathBuf {
    meta_dir.join(format!("{}.json", Digest::of(key.as_bytes()).hex()))
}

pub(crate) fn read(meta_dir: &Path, key: &str) -> io::Result<Option<Record>> {
    match fs::read(record_path(meta_dir, key)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `rec` durably: temp file, fsync, then rename without replacing (so two writers of
/// the same key cannot both succeed), then fsync the directory. Returns `Ok(false)` if a
/// record for the key already exists.
pub(crate) fn create(meta_dir: &Path, rec: &Record) -> io::Result<bool> {
    let final_path = record_path(meta_dir, &rec.key);
    let tmp = tempfile_in(meta_dir)?;
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(rec).map_err(io::Error::other)?)?;
        f.sync_all()?;
    }
    let r = rustix::fs::renameat_with(
        rustix::fs::CWD,
        &tmp,
        rustix::fs::CWD,
        &final_path,
        rustix::fs::RenameFlags::NOREPLACE,
    );
    match r {
        Ok(()) => {
            fs::File::open(meta_dir)?.sync_all()?;
            Ok(true)
        }
        Err(rustix::io::Errno::EXIST) => {
            let _ = fs::remove_file(&tmp);
            Ok(false)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e.into())
        }
    }
}

pub(crate) fn remove(meta_dir: &Path, key: &str) -> io::Result<()> {
    fs::remove_file(record_path(meta_dir, key))?;
    fs::File::open(meta_dir)?.sync_all()
}

pub(crate) fn list(meta_dir: &Path) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    for e in fs::read_dir(meta_dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "json") {
            match fs::read(&p) {
                Ok(b) => out.push(serde_json::from_slice(&b).map_err(io::Error::other)?),
                // Removed while listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    out.sort_by(|a: &Record, b| a.key.cmp(&b.key));
    Ok(out)
}

/// A fresh, unique `*.tmp` name in `dir` (pid + nanos + counter; never a `.json`).
fn tempfile_in(dir: &Path) -> io::Result<PathBuf> {
    Ok(dir.join(format!("{}.tmp", unique_suffix())))
}

/// A name part unique across processes and calls.
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
