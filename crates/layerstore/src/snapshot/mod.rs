//! Snapshots in containerd's model, on overlayfs.
//!
//! # Lifecycle
//!
//! Importing an image of two layers, then running a step on it:
//!
//! 1. `unpack_layer(blob1, None, diff_id1)` applies layer 1 into a fresh directory (whiteouts
//!    as overlay char devices and opaque xattrs) and commits it as `chain1 = diff_id1`.
//! 2. `unpack_layer(blob2, Some(&chain1), diff_id2)` does the same for layer 2 and commits it
//!    as `chain2 = sha256(chain1 + " " + diff_id2)`. Its directory holds only layer 2's
//!    changes: the layers are stacked as overlay lowerdirs, never copied into each other.
//! 3. `prepare("run-42", Some(&chain2))` makes an *active* snapshot with an empty `fs`
//!    (the upperdir) and `work`, and returns the [`Mount`]s describing the overlay. The caller
//!    (the sandbox) performs them; this module never mounts.
//! 4. After the step, the builder diffs the upperdir (`crate::diff`) and may
//!    `commit(&new_chain, "run-42")`, or `remove("run-42")`.
//!
//! Only committed snapshots can be parents. `view` makes a read-only active snapshot.
//!
//! # Concurrency
//!
//! Records are created with a rename that never replaces, so two processes unpacking the same
//! chain ID both succeed: each builds its own `new-*` directory, one wins the record, the other
//! removes its copy and returns the same chain ID. Operations on one active key hold an
//! `flock` on that key's lock file only; no lock spans the whole store. A caller building on a
//! committed snapshot that is already there takes it with [`Snapshotter::reuse`], which stamps
//! its record under that lock, so the caller's [lease](crate::lease) holds it against gc.

mod meta;
mod overlay;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub(crate) use meta::unique_suffix;
pub use meta::{Kind, Record};

use crate::archive::extract::ExtractError;
use crate::archive::{apply_layer, ApplyOptions, WhiteoutMode};
use crate::digest::{chain_id, Digest};

/// How a [`Mount`] is performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// `mount -t overlay overlay -o <options>`; with many layers use the new mount API and
    /// pass each `lowerdir` entry as its own `lowerdir+` to avoid the one-page option limit.
    Overlay,
    /// A bind mount of `source` (options may hold `ro`).
    Bind,
}

/// A mount to perform: plain data, handed to whoever mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Overlay or bind.
    pub kind: MountKind,
    /// For binds, the directory; for overlays, the literal `overlay`.
    pub source: PathBuf,
    /// Mount options such as `lowerdir=a:b`, `upperdir=..`, `workdir=..`, `ro`.
    pub options: Vec<String>,
}

impl Mount {
    fn bind(source: PathBuf, readonly: bool) -> Mount {
        let mut options = vec!["rbind".to_string()];
        if readonly {
            options.push("ro".into());
        }
        Mount {
            kind: MountKind::Bind,
            source,
            options,
        }
    }

    fn overlay(options: Vec<String>) -> Mount {
        Mount {
            kind: MountKind::Overlay,
            source: PathBuf::from("overlay"),
            options,
        }
    }
}

/// The directories of a snapshot (see [`Snapshotter::dirs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayDirs {
    /// Read-only layers, nearest parent (top-most) first.
    pub lowerdirs: Vec<PathBuf>,
    /// For an active snapshot: its upperdir and overlay workdir.
    pub upper: Option<(PathBuf, PathBuf)>,
}

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No snapshot has this key.
    #[error("snapshot {0:?} not found")]
    NotFound(String),
    /// The key is taken.
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    /// The operation needs another kind (e.g. committing a committed snapshot, a non-committed parent).
    #[error("snapshot {key:?} is {actual:?}, expected {expected:?}")]
    WrongKind {
        /// The key.
        key: String,
        /// What it is.
        actual: Kind,
        /// What the operation needs.
        expected: Kind,
    },
    /// A committed snapshot still has children.
    #[error("snapshot {0:?} is the parent of other snapshots")]
    InUse(String),
    /// The unpacked layer's diffID is not the expected one.
    #[error("layer diffID mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The diffID the caller named.
        expected: Digest,
        /// The diffID of the bytes applied.
        actual: Digest,
    },
    /// Applying the layer failed.
    #[error(transparent)]
    Apply(#[from] ExtractError),
    /// Filesystem error on the snapshot store.
    #[error("snapshot store at {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Details about a snapshot, as [`Snapshotter::stat`] reports them.
pub type Info = Record;

/// The overlay snapshotter rooted at `<store root>/forge/snapshots/`.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    root: PathBuf,
}

impl Snapshotter {
    /// Opens (creating if needed) the snapshotter for the store at `store_root`.
    pub fn open(store_root: &Path) -> Result<Snapshotter, Error> {
        let root = store_root.join("forge").join("snapshots");
        for d in [
            overlay::snapshots_dir(&root),
            root.join("meta"),
            root.join("locks"),
        ] {
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(Snapshotter { root })
    }

    fn meta_dir(&self) -> PathBuf {
        self.root.join("meta")
    }

    /// Makes an active snapshot `key` on top of committed `parent` and returns its mounts.
    pub fn prepare(&self, key: &str, parent: Option<&Digest>) -> Result<Vec<Mount>, Error> {
        self.create_active(key, parent, Kind::Active, None)
    }

    /// [`prepare`](Snapshotter::prepare) for a snapshot that outlives the operation making it
    /// (a container's writable layer): gc keeps it, and so its parents, until `holder` removes
    /// it. The holder names itself (`container <id>`) so a leftover can be traced to its owner.
    pub fn prepare_held(&self, key: &str, parent: Option<&Digest>, holder: &str) -> Result<Vec<Mount>, Error> {
        self.create_active(key, parent, Kind::Active, Some(holder))
    }

    /// Makes a read-only snapshot `key` of committed `parent` and returns its mounts.
    pub fn view(&self, key: &str, parent: Option<&Digest>) -> Result<Vec<Mount>, Error> {
        self.create_active(key, parent, Kind::View, None)
    }

    fn create_active(
        &self,
        key: &str,
        parent: Option<&Digest>,
        kind: Kind,
        holder: Option<&str>,
    ) -> Result<Vec<Mount>, Error> {
        let _lock = self.lock(key)?;
        if let Some(p) = parent {
            self.committed(p)?;
        }
        let id = match kind {
            // A view has no directory of its own.
            Kind::View => 0,
            _ => {
                let new = overlay::new_dir(&self.root).map_err(io_err(&self.root))?;
                overlay::install(&self.root, &new).map_err(|e| {
                    let _ = fs::remove_dir_all(&new);
                    io_err(&new)(e)
                })?
            }
        };
        let rec = Record {
            key: key.to_string(),
            id,
            kind,
            parent: parent.cloned(),
            held_by: holder.map(str::to_string),
        };
        if !meta::create(&self.meta_dir(), &rec).map_err(io_err(&self.meta_dir()))? {
            self.remove_dir(id);
            return Err(Error::AlreadyExists(key.to_string()));
        }
        self.mounts(key)
    }

    /// Turns active snapshot `key` into the committed snapshot `name`.
    pub fn commit(&self, name: &Digest, key: &str) -> Result<(), Error> {
        let _lock = self.lock(key)?;
        let rec = self.record(key)?;
        if rec.kind != Kind::Active {
            return Err(Error::WrongKind {
                key: key.into(),
                actual: rec.kind,
                expected: Kind::Active,
            });
        }
        let committed = Record {
            key: name.to_string(),
            kind: Kind::Committed,
            held_by: None,
            ..rec
        };
        if !meta::create(&self.meta_dir(), &committed).map_err(io_err(&self.meta_dir()))? {
            return Err(Error::AlreadyExists(name.to_string()));
        }
        // The work dir is overlay scratch space; a committed snapshot is never an upperdir.
        let _ = fs::remove_dir_all(overlay::work_path(&self.root, committed.id));
        meta::remove(&self.meta_dir(), key).map_err(io_err(&self.meta_dir()))?;
        self.unlink_lock(key)
    }

    /// The mounts of snapshot `key` (active or view; committed ones mount read-only).
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>, Error> {
        let rec = self.record(key)?;
        let mut lowers = Vec::new();
        let mut next = rec.parent.clone();
        while let Some(p) = next {
            let r = self.committed(&p)?;
            lowers.push(r.id);
            next = r.parent;
        }
        Ok(match rec.kind {
            Kind::Active => overlay::mounts(&self.root, Some(rec.id), &lowers),
            Kind::View => overlay::mounts(&self.root, None, &lowers),
            Kind::Committed => {
                lowers.insert(0, rec.id);
                overlay::mounts(&self.root, None, &lowers)
            }
        })
    }

    /// The directories behind snapshot `key`, for callers that mount with the new mount API
    /// (one `lowerdir+` per layer) rather than an option string: lowerdirs nearest parent
    /// first; for an active snapshot also its upperdir and workdir.
    pub fn dirs(&self, key: &str) -> Result<OverlayDirs, Error> {
        let rec = self.record(key)?;
        let mut lowerdirs = Vec::new();
        if rec.kind == Kind::Committed {
            lowerdirs.push(overlay::upper_path(&self.root, rec.id));
        }
        let mut next = rec.parent.clone();
        while let Some(p) = next {
            let r = self.committed(&p)?;
            lowerdirs.push(overlay::upper_path(&self.root, r.id));
            next = r.parent;
        }
        let upper = (rec.kind == Kind::Active)
            .then(|| (overlay::upper_path(&self.root, rec.id), overlay::work_path(&self.root, rec.id)));
        Ok(OverlayDirs { lowerdirs, upper })
    }

    /// Removes snapshot `key`; a committed one only when nothing uses it as parent.
    pub fn remove(&self, key: &str) -> Result<(), Error> {
        let _lock = self.lock(key)?;
        let rec = self.record(key)?;
        if rec.kind == Kind::Committed {
            let meta = self.meta_dir();
            let records = meta::list(&meta).map_err(io_err(&meta))?;
            if records
                .iter()
                .any(|r| r.parent.as_ref().is_some_and(|p| p.as_str() == key))
            {
                return Err(Error::InUse(key.into()));
            }
        }
        meta::remove(&self.meta_dir(), key).map_err(io_err(&self.meta_dir()))?;
        self.remove_dir(rec.id);
        self.unlink_lock(key)
    }

    /// The record of `key`.
    pub fn stat(&self, key: &str) -> Result<Info, Error> {
        self.record(key)
    }

    /// Whether a committed snapshot `chain_id` exists.
    pub fn exists(&self, chain_id: &Digest) -> Result<bool, Error> {
        Ok(matches!(self.read(chain_id.as_str())?, Some(r) if r.kind == Kind::Committed))
    }

    /// Whether committed snapshot `chain_id` exists, for a caller that will build on it. The
    /// record is stamped as written now, under the key's lock, so a [lease](crate::lease) holds
    /// it from here on; `Ok(false)` when it is absent (or a gc removed it just before).
    pub fn reuse(&self, chain_id: &Digest) -> Result<bool, Error> {
        let key = chain_id.as_str();
        let _lock = self.lock(key)?;
        if !self.exists(chain_id)? {
            return Ok(false);
        }
        let path = meta::record_path(&self.meta_dir(), key);
        File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now())).map_err(io_err(&path))?;
        Ok(true)
    }

    /// Removes snapshot `key` unless its record was written (or reused) at `since` or later,
    /// checked under the key's lock (see [`crate::lease`]). Returns whether it was removed.
    ///
    /// The caller removes children before their parents (as gc does, from one listing): a
    /// child made since then was made by an operation that reused, and so stamped, this parent
    /// first, which keeps it. Checking for children here would read every record per call.
    pub fn remove_unless_newer(&self, key: &str, since: SystemTime) -> Result<bool, Error> {
        let _lock = self.lock(key)?;
        let path = meta::record_path(&self.meta_dir(), key);
        let modified = match fs::metadata(&path).and_then(|m| m.modified()) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            other => other.map_err(io_err(&path))?,
        };
        if modified >= since {
            return Ok(false);
        }
        let rec = self.record(key)?;
        let meta = self.meta_dir();
        meta::remove(&meta, key).map_err(io_err(&meta))?;
        self.remove_dir(rec.id);
        self.unlink_lock(key)?;
        Ok(true)
    }

    /// Removes snapshot directories no record names and no live operation is making: `new-*`
    /// directories left half-made by a killed unpack or prepare (and numbered ones it had
    /// renamed into place but not recorded) older than `since`, and `rm-*` ones a killed remove
    /// had set aside. Returns how many.
    pub fn remove_abandoned_dirs(&self, since: SystemTime) -> Result<usize, Error> {
        let meta = self.meta_dir();
        let used: std::collections::BTreeSet<u64> = meta::list(&meta).map_err(io_err(&meta))?.iter().map(|r| r.id).collect();
        let snaps = overlay::snapshots_dir(&self.root);
        let mut removed = 0;
        for entry in fs::read_dir(&snaps).map_err(io_err(&snaps))? {
            let path = entry.map_err(io_err(&snaps))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let abandoned = if name.starts_with("rm-") {
                true
            } else if name.starts_with("new-") || name.parse::<u64>().is_ok_and(|id| !used.contains(&id)) {
                // A record written after the list above makes its directory newer than `since`.
                fs::symlink_metadata(&path).and_then(|m| m.modified()).is_ok_and(|t| t < since)
            } else {
                false
            };
            if abandoned {
                let aside = snaps.join(format!("rm-{}", meta::unique_suffix()));
                let target = if name.starts_with("rm-") { path } else if fs::rename(&path, &aside).is_ok() { aside } else { continue };
                if fs::remove_dir_all(&target).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Every snapshot, sorted by key.
    pub fn list(&self) -> Result<Vec<Info>, Error> {
        let meta = self.meta_dir();
        meta::list(&meta).map_err(io_err(&meta))
    }

    /// Applies the layer in `blob` on top of `parent` as a new committed snapshot and returns its
    /// chain ID. Whiteouts become overlay char devices so the snapshot stacks as a lowerdir.
    /// The layer is built in a `new-*` directory and only renamed into place once complete and
    /// its diffID checked; on any error the directory is removed.
    pub fn unpack_layer(
        &self,
        blob: impl Read,
        parent: Option<&Digest>,
        diff_id: &Digest,
    ) -> Result<Digest, Error> {
        let chain = chain_id(parent.into_iter().chain([diff_id])).expect("one diffID at least");
        if self.reuse(&chain)? {
            return Ok(chain);
        }
        if let Some(p) = parent {
            self.committed(p)?;
        }
        let new = overlay::new_dir(&self.root).map_err(io_err(&self.root))?;
        let mut cleanup = RemoveOnDrop(Some(new.clone()));
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::OverlayDevice,
            device_nodes: true,
        };
        let stats = apply_layer(blob, &new.join("fs"), &opts)?;
        if &stats.diff_id != diff_id {
            return Err(Error::DiffIdMismatch {
                expected: diff_id.clone(),
                actual: stats.diff_id,
            });
        }
        fs::remove_dir(new.join("work")).map_err(io_err(&new))?;
        File::open(new.join("fs"))
            .and_then(|f| f.sync_all())
            .map_err(io_err(&new))?;
        let id = overlay::install(&self.root, &new).map_err(io_err(&new))?;
        // Installed: the directory is no longer ours to clean up.
        cleanup.0 = None;
        let rec = Record {
            key: chain.to_string(),
            id,
            kind: Kind::Committed,
            parent: parent.cloned(),
            held_by: None,
        };
        if !meta::create(&self.meta_dir(), &rec).map_err(io_err(&self.meta_dir()))? {
            // Another process committed the same chain first: ours is a duplicate, and theirs is
            // now ours to hold too.
            self.remove_dir(id);
            if !self.reuse(&chain)? {
                return Err(Error::NotFound(chain.to_string()));
            }
        }
        Ok(chain)
    }

    fn read(&self, key: &str) -> Result<Option<Record>, Error> {
        let meta = self.meta_dir();
        meta::read(&meta, key).map_err(io_err(&meta))
    }

    fn record(&self, key: &str) -> Result<Record, Error> {
        self.read(key)?.ok_or_else(|| Error::NotFound(key.into()))
    }

    fn committed(&self, chain: &Digest) -> Result<Record, Error> {
        let r = self.record(chain.as_str())?;
        if r.kind != Kind::Committed {
            return Err(Error::WrongKind {
                key: chain.to_string(),
                actual: r.kind,
                expected: Kind::Committed,
            });
        }
        Ok(r)
    }

    /// Removes a snapshot directory: renamed aside first so a crash leaves an obvious
    /// `rm-*` leftover rather than a half-deleted id.
    fn remove_dir(&self, id: u64) {
        if id == 0 {
            return;
        }
        let snaps = overlay::snapshots_dir(&self.root);
        let aside = snaps.join(format!("rm-{}", meta::unique_suffix()));
        if fs::rename(snaps.join(id.to_string()), &aside).is_ok() {
            let _ = fs::remove_dir_all(aside);
        }
    }

    /// An exclusive `flock` on `key`'s lock file, released when the guard drops.
    ///
    /// [`Snapshotter::remove`] unlinks the file while holding it (a store that makes and removes
    /// a container snapshot per `run --rm` must not keep a file per run); a waiter that then gets
    /// the lock of the unlinked file sees it is no longer at the path and locks the new one.
    fn lock(&self, key: &str) -> Result<File, Error> {
        use std::os::unix::fs::MetadataExt;
        let path = self.lock_path(key);
        loop {
            let f = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
                .map_err(|e| io_err(&path)(e.into()))?;
            let ours = f.metadata().map_err(io_err(&path))?;
            match fs::metadata(&path) {
                Ok(there) if (there.dev(), there.ino()) == (ours.dev(), ours.ino()) => return Ok(f),
                _ => continue,
            }
        }
    }

    /// Removes `key`'s lock file once its record is gone; the caller holds the lock (see `lock`).
    fn unlink_lock(&self, key: &str) -> Result<(), Error> {
        let path = self.lock_path(key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        self.root.join("locks").join(Digest::of(key.as_bytes()).hex())
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Removes a half-built `new-*` directory unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}
