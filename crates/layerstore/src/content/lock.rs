//! Advisory `flock`s that forge processes sharing a store respect. A lock is held by a value
//! and released when it is dropped, or when its process dies (which is why `flock` and not the
//! existence of a lock file: a killed writer never leaves a stale lock).

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

/// A held exclusive `flock`.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock at once or returns `Ok(None)` when someone else holds it.
    pub(crate) fn try_exclusive(path: &Path) -> std::io::Result<Option<FileLock>> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
