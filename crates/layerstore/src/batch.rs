//! Batches: the small records one operation makes together (a build's remote blobs, its cache
//! entries), written as one file instead of one file each.
//!
//! A build that takes thirty steps from a registry cache makes thirty remote records and thirty
//! cache entries; written one by one (temp file, fsync, rename, fsync of the directory) they
//! cost more than the rest of the build. A batch is one such write: `<dir>/batches/<hex>`, a
//! JSON array named by the sha256 of its bytes. The name is the check: a file whose bytes do
//! not hash to its name (torn by a crash, truncated, overwritten) is never read as valid, only
//! reported by [`Batches::damaged`]. Batches are written once and never changed in place, so
//! two processes need no lock to write them, and two writing the same batch write the same
//! file. Because the name is the check, batches are written without fsync
//! ([`Batches::write_unsynced`]): torn by a crash, one is ignored. A cache entry's loss costs
//! the step's work again; remote records are synced by their owner before an image that needs
//! them is tagged ([`crate::remote::Records::sync`]).
//!
//! A single record written later (its own file) takes precedence over a batch's: the owners
//! ([`crate::remote::Records`], [`crate::cache::Cache`]) look there first. A batch is read once
//! per process and again only when the directory lists other batches, which a lookup checks
//! only when the batches read so far lack its key.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::digest::Digest;

/// The batches of one directory, of items of type `I` keyed by a digest.
#[derive(Debug, Clone)]
pub(crate) struct Batches<I> {
    dir: PathBuf,
    key: fn(&I) -> &Digest,
    loaded: Arc<Mutex<Loaded<I>>>,
}

/// What was read, and from which batch files.
#[derive(Debug)]
struct Loaded<I> {
    /// The batch file names this was read from, sorted; `None` before the first read.
    names: Option<Vec<String>>,
    /// By key: the item and the batch holding it (of two batches, the later name wins; they
    /// hold the same answer for a key in practice).
    items: HashMap<Digest, (I, PathBuf)>,
    /// Batch files whose bytes do not match their name, and why.
    damaged: Vec<(PathBuf, String)>,
}

impl<I: Serialize + DeserializeOwned + Clone> Batches<I> {
    /// The batches under `parent/batches/`.
    pub(crate) fn open(parent: &Path, key: fn(&I) -> &Digest) -> Batches<I> {
        Batches { dir: parent.join("batches"), key, loaded: Arc::new(Mutex::new(Loaded { names: None, items: HashMap::new(), damaged: Vec::new() })) }
    }

    /// Writes `items` as one batch (nothing for none) without waiting for the disk: a crash may
    /// lose the batch or leave it torn (as a file of zeros or a part of its bytes under its
    /// name), which does not hash to its name and so is only reported, never read. For items
    /// whose loss costs only work done again, or that their owner syncs before anything
    /// durable names them ([`Batches::get`] gives the file).
    pub(crate) fn write_unsynced(&self, items: &[I]) -> io::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec(items).map_err(io::Error::other)?;
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&self.dir)?;
        io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(self.dir.join(Digest::of(&bytes).hex())).map_err(|e| e.error)?;
        // Read again at the next lookup: a batch of the same name read before may have been
        // a torn one this write replaced.
        self.forget();
        Ok(())
    }

    /// The item of `key` and the batch file holding it, if a valid batch has one. Looked up in
    /// the batches read so far first, which are listed again only when they lack it: a build
    /// looking up each of its steps lists the directory once, not once per step. An item found
    /// so may be in a batch a gc has rewritten since, which holds the same answer (or has
    /// dropped it, as if the gc had come just after).
    pub(crate) fn get(&self, key: &Digest) -> Option<(I, PathBuf)> {
        let read = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).items.get(key).cloned();
        read.or_else(|| self.get_listed(key))
    }

    /// The item of `key` as the batches listed now have it.
    fn get_listed(&self, key: &Digest) -> Option<(I, PathBuf)> {
        let mut loaded = self.load();
        loaded.as_mut().ok()?.items.get(key).cloned()
    }

    /// Every item, with the batch holding it.
    pub(crate) fn all(&self) -> io::Result<Vec<(I, PathBuf)>> {
        let loaded = self.load()?;
        Ok(loaded.items.values().cloned().collect())
    }

    /// Batch files that were ignored because their bytes do not match their name, and why.
    pub(crate) fn damaged(&self) -> io::Result<Vec<(PathBuf, String)>> {
        Ok(self.load()?.damaged.clone())
    }

    /// Stamps the batch holding `key` as used now (a lease then holds all its items, which
    /// keeps more than needed, never less); `false` when no batch has it.
    pub(crate) fn reuse(&self, key: &Digest) -> io::Result<bool> {
        let Some((_, path)) = self.get_listed(key) else { return Ok(false) };
        match fs::File::options().write(true).open(&path) {
            Ok(f) => f.set_modified(SystemTime::now()).map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the item of `key` unless its batch was written or used at `since` or later;
    /// whether it did. The batch is written again without it (keeping its time, so its other
    /// items age as before), or removed when it was the last.
    pub(crate) fn remove_unless_newer(&self, key: &Digest, since: SystemTime) -> io::Result<bool> {
        let Some((_, path)) = self.get_listed(key) else { return Ok(false) };
        let modified = match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            other => other?.modified()?,
        };
        if modified >= since {
            return Ok(false);
        }
        let rest: Vec<I> = read(&path).map_err(io::Error::other)?.into_iter().filter(|i| (self.key)(i) != key).collect();
        if !rest.is_empty() {
            let bytes = serde_json::to_vec(&rest).map_err(io::Error::other)?;
            let new = self.dir.join(Digest::of(&bytes).hex());
            crate::atomic::write(&new, &bytes)?;
            fs::File::options().write(true).open(&new)?.set_modified(modified)?;
        }
        match fs::remove_file(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
        self.forget();
        Ok(true)
    }

    /// Removes every batch.
    pub(crate) fn clear(&self) -> io::Result<()> {
        self.forget();
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Drops what was read: this process changed the batches.
    fn forget(&self) {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.names = None;
        loaded.items.clear();
    }

    /// The batches as they are now: read again when the directory lists other files than last
    /// time (another process wrote or rewrote one).
    fn load(&self) -> io::Result<std::sync::MutexGuard<'_, Loaded<I>>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let mut names = Vec::new();
        match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
            Ok(list) => {
                for entry in list {
                    let name = entry?.file_name();
                    // Temp files of a write in progress start with a dot.
                    if let Some(n) = name.to_str().filter(|n| !n.starts_with('.')) {
                        names.push(n.to_string());
                    }
                }
            }
        }
        names.sort();
        if loaded.names.as_ref() == Some(&names) {
            return Ok(loaded);
        }
        loaded.items.clear();
        loaded.damaged.clear();
        for name in &names {
            let path = self.dir.join(name);
            match read::<I>(&path) {
                Ok(items) => {
                    for item in items {
                        let key = (self.key)(&item).clone();
                        loaded.items.insert(key, (item, path.clone()));
                    }
                }
                // Removed by a gc since the listing: its items are in its successor or gone.
                Err(Damage::Gone) => {}
                Err(e) => loaded.damaged.push((path, e.to_string())),
            }
        }
        loaded.names = Some(names);
        Ok(loaded)
    }
}

/// Why a batch file was not read.
#[derive(Debug, thiserror::Error)]
enum Damage {
    #[error("removed while being read")]
    Gone,
    #[error("unreadable: {0}")]
    Io(io::Error),
    #[error("its bytes do not match its name (a torn or altered batch)")]
    Mismatch,
    #[error("not a batch: {0}")]
    Parse(serde_json::Error),
}

/// The items of the batch file at `path`, checked against its name.
fn read<I: DeserializeOwned>(path: &Path) -> Result<Vec<I>, Damage> {
    let bytes = match fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Damage::Gone),
        other => other.map_err(Damage::Io)?,
    };
    if path.file_name().and_then(|n| n.to_str()) != Some(Digest::of(&bytes).hex()) {
        return Err(Damage::Mismatch);
    }
    serde_json::from_slice(&bytes).map_err(Damage::Parse)
}
