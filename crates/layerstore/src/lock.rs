//! Advisory `flock`s that forge processes sharing a store respect. A lock is held by a value
//! and released when it is dropped, or when its process dies (which is why `flock` and not the
//! existence of a lock file: a killed writer never leaves a stale lock).

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

/// A held `flock` (exclusive unless made by [`FileLock::shared`]).
#[derive(Debug)]
pub(crate) struct FileLock {
    file: File,
}

impl FileLock {
    /// Takes the lock at once or returns `Ok(None)` when someone else holds it.
    pub(crate) fn try_exclusive(path: &Path) -> std::io::Result<Option<FileLock>> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        FileLock::try_file(file)
    }

    /// Takes the exclusive lock of an open file at once, or `Ok(None)` when someone else holds it.
    pub(crate) fn try_file(file: File) -> std::io::Result<Option<FileLock>> {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for the exclusive lock of an open file.
    pub(crate) fn exclusive(file: File) -> std::io::Result<FileLock> {
        flock(&file, FlockOperation::LockExclusive)?;
        Ok(FileLock { file })
    }

    /// Waits for a shared lock of an open file.
    pub(crate) fn shared(file: File) -> std::io::Result<FileLock> {
        flock(&file, FlockOperation::LockShared)?;
        Ok(FileLock { file })
    }

    /// The locked file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}
