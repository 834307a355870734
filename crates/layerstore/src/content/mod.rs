//! The content store: blobs addressed by digest, in the OCI image layout's `blobs/sha256/`.
//!
//! Writing follows containerd's local store. Bytes go to `forge/ingest/<sha256(ref)>/data`
//! while they are hashed; [`Writer::commit`] syncs them, checks size and digest, and renames the
//! file into `blobs/sha256/<hex>`. A blob is therefore either absent or whole, whatever kills
//! the writer. An ingest is locked by its writer (an `flock`, released on drop), never the
//! whole store, so any number of processes can write different blobs at once; two writers of
//! the same content under different refs both succeed, since a blob that already exists counts
//! as committed. An interrupted ingest can be resumed: a new writer on the same ref starts at
//! [`Writer::offset`]; one that nobody resumes is removed by gc once no live
//! [lease](crate::lease) holds it. A writer that finds its blob already stored uses
//! [`ContentStore::reuse`], which stamps the blob so that the writer's lease holds it.
//!
//! ```
//! use std::io::Write;
//! use forge_layerstore::content::ContentStore;
//! use forge_layerstore::Digest;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = ContentStore::open(dir.path())?;
//! let mut w = store.writer("example")?;
//! w.write_all(b"hello")?;
//! let digest = w.commit(Some(5), Some(&Digest::of(b"hello")))?;
//! assert_eq!(std::fs::read(store.path(&digest))?, b"hello");
//! # Ok(())
//! # }
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::digest::{Digest, HashingWriter};
use crate::lock::FileLock;

mod uncached;

/// The name prefix of [`ContentStore::put_unsynced`]'s files in the ingest directory.
const SMALL_PREFIX: &str = ".small-";

/// A content store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a path.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The blob is not in the store.
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    /// Another writer holds this ingest.
    #[error("ingest {0:?} is being written by another process or thread")]
    Locked(String),
    /// The bytes do not hash to what was expected; nothing was stored.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked (an ingest ref or a blob path).
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes.
        actual: Digest,
    },
    /// The bytes have the wrong length; nothing was stored.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// The size asked for.
        expected: u64,
        /// The size of the bytes.
        actual: u64,
    },
}

trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, Error> {
        self.map_err(|source| Error::Io { op, path: path.to_path_buf(), source })
    }
}

/// Blobs by digest under an OCI layout root.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) the content store of the layout at `root`.
    pub fn open(root: &Path) -> Result<ContentStore, Error> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("forge").join("ingest");
        for dir in [&blobs, &ingest] {
            fs::create_dir_all(dir).ctx("creating", dir)?;
        }
        Ok(ContentStore { blobs, ingest })
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether the blob is stored.
    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The blob's size in bytes.
    pub fn size(&self, digest: &Digest) -> Result<u64, Error> {
        self.metadata(digest).map(|m| m.len())
    }

    fn metadata(&self, digest: &Digest) -> Result<fs::Metadata, Error> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(digest.clone())),
            other => other.ctx("reading metadata of", &path),
        }
    }

    /// Opens the blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, Error> {
        let path = self.path(digest);
        match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(digest.clone())),
            other => other.ctx("opening", &path),
        }
    }

    /// Re-hashes a stored blob, streaming: `Err(DigestMismatch)` when it is corrupt.
    pub fn verify(&self, digest: &Digest) -> Result<(), Error> {
        let mut file = self.open_blob(digest)?;
        let mut hasher = HashingWriter::new(io::sink());
        io::copy(&mut file, &mut hasher).ctx("reading", &self.path(digest))?;
        let (_, actual, _) = hasher.finish();
        if &actual != digest {
            return Err(Error::DigestMismatch { what: self.path(digest).display().to_string(), expected: digest.clone(), actual });
        }
        Ok(())
    }

    /// Removes a blob (absent is fine: the goal is that it is gone).
    pub fn delete(&self, digest: &Digest) -> Result<(), Error> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.ctx("removing", &path),
        }
    }

    /// Stores the small blob `bytes` (of digest `digest`) without waiting for the disk, for a
    /// blob that nothing durable names yet (an untagged build's image config and manifest): a
    /// crash may lose it or leave it torn under its name. [`ContentStore::sync`] makes it
    /// durable before anything names it, and a torn one is replaced by the next write of it,
    /// which compares before it reuses ([`ContentStore::reuse_same`]). Written beside the
    /// ingests and renamed into place, so readers never see part of it.
    pub fn put_unsynced(&self, digest: &Digest, bytes: &[u8]) -> Result<(), Error> {
        if self.reuse_same(digest, bytes)? {
            return Ok(());
        }
        let mut tmp = tempfile::Builder::new().prefix(SMALL_PREFIX).permissions(fs::Permissions::from_mode(0o444)).tempfile_in(&self.ingest).ctx("creating a file in", &self.ingest)?;
        tmp.write_all(bytes).ctx("writing", tmp.path())?;
        let target = self.path(digest);
        tmp.persist(&target).map_err(|e| e.error).ctx("committing", &target)?;
        Ok(())
    }

    /// Makes the stored blobs `digests` durable, bytes and names: those stored
    /// [unsynced](ContentStore::put_unsynced), before something durable names them.
    pub fn sync(&self, digests: &[&Digest]) -> Result<(), Error> {
        for digest in digests {
            self.open_blob(digest)?.sync_all().ctx("syncing", &self.path(digest))?;
        }
        File::open(&self.blobs).and_then(|d| d.sync_all()).ctx("syncing", &self.blobs)
    }

    /// [`reuse`](ContentStore::reuse) for a small blob whose bytes the caller has: the stored
    /// blob counts only if it holds exactly `bytes`. One that does not (torn by a crash after
    /// [`put_unsynced`](ContentStore::put_unsynced)) is removed, for the caller to write again.
    pub fn reuse_same(&self, digest: &Digest, bytes: &[u8]) -> Result<bool, Error> {
        let Some(lock) = self.reuse_locked(digest)? else { return Ok(false) };
        let path = self.path(digest);
        let mut stored = Vec::with_capacity(bytes.len());
        io::Read::read_to_end(&mut io::Read::take(lock.file(), bytes.len() as u64 + 1), &mut stored).ctx("reading", &path)?;
        if stored == bytes {
            return Ok(true);
        }
        drop(lock);
        self.delete(digest)?;
        Ok(false)
    }

    /// Whether the blob is stored, for a writer that will use it instead of writing it again.
    /// The blob is stamped as written now, under its lock, so a [lease](crate::lease) holds it
    /// from here on; `Ok(false)` when it is absent (or a gc removed it just before).
    pub fn reuse(&self, digest: &Digest) -> Result<bool, Error> {
        Ok(self.reuse_locked(digest)?.is_some())
    }

    /// [`reuse`](ContentStore::reuse), giving the blob open and still locked.
    fn reuse_locked(&self, digest: &Digest) -> Result<Option<FileLock>, Error> {
        let path = self.path(digest);
        let file = match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            other => other.ctx("opening", &path)?,
        };
        let lock = FileLock::shared(file).ctx("locking", &path)?;
        // Unlinked by a gc that held the lock first.
        if lock.file().metadata().ctx("reading metadata of", &path)?.nlink() == 0 {
            return Ok(None);
        }
        lock.file().set_modified(SystemTime::now()).ctx("stamping", &path)?;
        Ok(Some(lock))
    }

    /// Removes the blob unless it was written (or reused) at `since` or later, checked under its
    /// lock (see [`crate::lease`]); returns the bytes freed, `None` when it was kept or is gone.
    pub fn remove_unless_newer(&self, digest: &Digest, since: SystemTime) -> Result<Option<u64>, Error> {
        let path = self.path(digest);
        let file = match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            other => other.ctx("opening", &path)?,
        };
        // A writer stamping it right now holds it.
        let Some(lock) = FileLock::try_file(file).ctx("locking", &path)? else { return Ok(None) };
        let meta = lock.file().metadata().ctx("reading metadata of", &path)?;
        if meta.nlink() == 0 || meta.modified().ctx("reading metadata of", &path)? >= since {
            return Ok(None);
        }
        self.delete(digest)?;
        Ok(Some(meta.len()))
    }

    /// Removes the ingests nobody is writing whose last write is older than `since` (left by a
    /// killed writer or one that failed, e.g. on ENOSPC); returns how many and their bytes.
    pub fn remove_abandoned_ingests(&self, since: SystemTime) -> Result<(usize, u64), Error> {
        let (mut count, mut bytes) = (0, 0);
        for entry in fs::read_dir(&self.ingest).ctx("listing", &self.ingest)? {
            let dir = entry.ctx("listing", &self.ingest)?.path();
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with(".rm-") {
                // Set aside by a gc that died before removing it.
                let _ = fs::remove_dir_all(&dir);
                continue;
            }
            if name.starts_with(SMALL_PREFIX) {
                // A `put_unsynced` killed before its rename: the file is what is left.
                if fs::metadata(&dir).and_then(|m| m.modified()).is_ok_and(|t| t < since) {
                    bytes += fs::metadata(&dir).map_or(0, |m| m.len());
                    count += 1;
                    let _ = fs::remove_file(&dir);
                }
                continue;
            }
            let lock = match FileLock::try_exclusive(&dir.join("lock")) {
                Ok(Some(lock)) => lock,
                // Being written, or removed meanwhile.
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx("locking", &dir),
            };
            let newest = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
            let data = dir.join("data");
            let last = [newest(&dir), newest(&data)].into_iter().flatten().max();
            if last.is_some_and(|t| t >= since) {
                continue;
            }
            let size = fs::metadata(&data).map_or(0, |m| m.len());
            // Set aside while still locked, so a writer that comes for the same ref now starts a
            // fresh directory rather than one being removed.
            let aside = self.ingest.join(format!(".rm-{}", crate::snapshot::unique_suffix()));
            fs::rename(&dir, &aside).ctx("setting aside", &dir)?;
            drop(lock);
            fs::remove_dir_all(&aside).ctx("removing", &aside)?;
            count += 1;
            bytes += size;
        }
        Ok((count, bytes))
    }

    /// Every stored blob's digest; files that are not named by a sha256 hex are skipped.
    pub fn list(&self) -> Result<Vec<Digest>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs).ctx("listing", &self.blobs)? {
            let entry = entry.ctx("listing", &self.blobs)?;
            if let Ok(d) = format!("sha256:{}", entry.file_name().to_string_lossy()).parse() {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Starts (or resumes) writing the ingest named `ingest_ref` (any string that names the
    /// content being written, such as its expected digest). Fails with [`Error::Locked`] while
    /// another writer holds the same ref.
    pub fn writer(&self, ingest_ref: &str) -> Result<Writer, Error> {
        let dir = self.ingest.join(Digest::of(ingest_ref.as_bytes()).hex());
        let lock_path = dir.join("lock");
        // A gc removing an abandoned ingest of the same ref locks it for an instant and sets its
        // directory aside (see `remove_abandoned_ingests`): then the lock file vanishes under us,
        // or the one we locked is no longer at its place, and we start over. Another writer
        // holds it for longer, which is `Locked`.
        let mut tries = 0;
        let lock = loop {
            tries += 1;
            fs::create_dir_all(&dir).ctx("creating", &dir)?;
            match FileLock::try_exclusive(&lock_path) {
                Ok(Some(lock)) => {
                    let ours = lock.file().metadata().ctx("locking", &dir)?;
                    let there = fs::metadata(&lock_path).ok();
                    if there.is_some_and(|t| (t.dev(), t.ino()) == (ours.dev(), ours.ino())) {
                        break lock;
                    }
                    if tries >= 5 {
                        return Err(Error::Locked(ingest_ref.to_string()));
                    }
                }
                Ok(None) if tries >= 5 => return Err(Error::Locked(ingest_ref.to_string())),
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 5 => {}
                Err(e) => return Err(e).ctx("locking", &dir),
            }
        };
        let data_path = dir.join("data");
        let mut file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&data_path).ctx("opening", &data_path)?;
        // Resuming: the bytes already there go through the hash first, which also leaves the
        // file positioned at its end for the new bytes.
        let mut hasher = HashingWriter::new(io::sink());
        io::copy(&mut file, &mut hasher).ctx("re-reading", &data_path)?;
        let written = hasher.written();
        Ok(Writer { store: self.clone(), ingest_ref: ingest_ref.to_string(), dir, data_path, file, uncached: None, hasher: Some(hasher), written, _lock: lock })
    }

    /// A [`writer`](ContentStore::writer) for a caller that hashes the bytes it writes itself
    /// (a layer's tar is hashed for its diffID as it is made): the writer does not hash them a
    /// second time, which for a big layer is a second core-second per GiB. It starts empty
    /// instead of resuming, and [`Writer::commit`] needs the caller's digest, which it takes as
    /// the bytes' own (the size is still checked).
    pub fn writer_hashed_by_caller(&self, ingest_ref: &str) -> Result<Writer, Error> {
        let mut writer = self.writer(ingest_ref)?;
        if writer.written > 0 {
            writer.file.set_len(0).ctx("truncating", &writer.data_path)?;
            writer.file.rewind().ctx("truncating", &writer.data_path)?;
        }
        writer.hasher = None;
        writer.written = 0;
        Ok(writer)
    }
}

/// An ingest in progress: write bytes, then [`commit`](Writer::commit). Dropping it without
/// committing keeps the bytes so a later writer on the same ref can resume.
pub struct Writer {
    store: ContentStore,
    ingest_ref: String,
    dir: PathBuf,
    data_path: PathBuf,
    file: File,
    /// Set by [`Writer::past_page_cache`] until the bytes are committed or flushed.
    uncached: Option<uncached::Uncached>,
    /// None for [`ContentStore::writer_hashed_by_caller`].
    hasher: Option<HashingWriter<io::Sink>>,
    written: u64,
    _lock: FileLock,
}

impl Writer {
    /// Bytes already written (including those of an interrupted earlier writer).
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// Writes the bytes from here on past the page cache (`O_DIRECT`, where the filesystem has
    /// it), for a big blob that nothing reads soon: it spares the copy into freshly allocated
    /// cache pages and leaves the cache to what is in use. [`flush`](Write::flush) and commit
    /// write the last, unaligned bytes through the cache, and the writer goes on through the
    /// cache after a flush; a writer dropped before either keeps, for a resume, only the whole
    /// 1 MiB blocks written so far.
    pub fn past_page_cache(&mut self) {
        if self.uncached.is_none() {
            self.uncached = uncached::Uncached::start(&self.file, self.written);
        }
    }

    /// Writes what [`past_page_cache`](Writer::past_page_cache) staged.
    fn end_uncached(&mut self) -> io::Result<()> {
        match self.uncached.take() {
            Some(u) => u.finish(&self.file),
            None => Ok(()),
        }
    }

    /// Drops the bytes written instead of keeping them for a later writer to resume.
    pub fn discard(self) {
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// Syncs the bytes, checks them against `expected_size` and `expected` when given, and moves
    /// them into the store. Returns the blob's digest. On a mismatch nothing is stored and the
    /// ingest is discarded.
    pub fn commit(self, expected_size: Option<u64>, expected: Option<&Digest>) -> Result<Digest, Error> {
        self.commit_with(expected_size, expected, true)
    }

    /// [`commit`](Writer::commit), except that the blob's name is made durable by the next
    /// commit into the store (its directory's fsync covers every name in it), not by its own:
    /// for a blob that only a blob committed right after names (an image's config, named by its
    /// manifest). Filesystems commit renames in the order they were made, so the later blob's
    /// name is never durable without this one's. Until then a crash may lose the blob whole,
    /// never keep it torn: its bytes are synced before it is named.
    pub fn commit_named_by_next(self, expected_size: Option<u64>, expected: Option<&Digest>) -> Result<Digest, Error> {
        self.commit_with(expected_size, expected, false)
    }

    fn commit_with(mut self, expected_size: Option<u64>, expected: Option<&Digest>, sync_name: bool) -> Result<Digest, Error> {
        self.flush().ctx("flushing", &self.data_path)?;
        self.file.sync_all().ctx("syncing", &self.data_path)?;
        let (actual, size) = match (self.hasher.take(), expected) {
            (Some(hasher), _) => {
                let (_, actual, size) = hasher.finish();
                (actual, size)
            }
            (None, Some(digest)) => (digest.clone(), self.written),
            (None, None) => {
                let _ = fs::remove_dir_all(&self.dir);
                let source = io::Error::new(io::ErrorKind::InvalidInput, "a writer that does not hash is committed with the caller's digest");
                return Err(Error::Io { op: "committing", path: self.data_path.clone(), source });
            }
        };
        let what = || format!("ingest {:?}", self.ingest_ref);
        let mismatch = match (expected_size, expected) {
            (Some(want), _) if want != size => Some(Error::SizeMismatch { what: what(), expected: want, actual: size }),
            (_, Some(want)) if *want != actual => Some(Error::DigestMismatch { what: what(), expected: want.clone(), actual: actual.clone() }),
            _ => None,
        };
        if let Some(err) = mismatch {
            let _ = fs::remove_dir_all(&self.dir);
            return Err(err);
        }
        let target = self.store.path(&actual);
        if !self.store.reuse(&actual)? {
            // Stamped now: the bytes may be older than the lease of the writer that commits them
            // (a resumed ingest).
            self.file.set_modified(SystemTime::now()).ctx("stamping", &self.data_path)?;
            fs::set_permissions(&self.data_path, fs::Permissions::from_mode(0o444)).ctx("making read-only", &self.data_path)?;
            fs::rename(&self.data_path, &target).ctx("committing", &target)?;
            if sync_name {
                File::open(&self.store.blobs).and_then(|d| d.sync_all()).ctx("syncing", &self.store.blobs)?;
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
        Ok(actual)
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("ingest_ref", &self.ingest_ref).field("offset", &self.offset()).finish()
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.uncached {
            Some(u) => u.write(&self.file, buf).map(|()| buf.len())?,
            None => self.file.write(buf)?,
        };
        if let Some(hasher) = &mut self.hasher {
            hasher.write_all(&buf[..n])?;
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.end_uncached()?;
        self.file.flush()
    }
}
