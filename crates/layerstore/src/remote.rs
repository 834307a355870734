//! Remote-backed (lazy) blobs: a layer an image names whose bytes are in a registry, not yet
//! in the content store.
//!
//! A build that takes its steps from a registry cache (`--cache-from type=registry`) knows
//! each layer by descriptor and by where it is; fetching every layer of the image it writes
//! would make a fully cached build cost a pull. Instead the store keeps, per such blob, a
//! small record (`forge/remote/<hex>`: digest, size, [`RemoteSource`]) and the image is
//! committed without the bytes, as containerd's content store keeps a lazily pulled layer's
//! descriptor and labels before its data. The bytes come the first time something reads them
//! ([`Store::blob`](crate::Store::blob): unpacking for a step or a container, compressing for a
//! push, writing an archive), through the [`Fetcher`] the program gave the store (the registry
//! crate implements it; this crate knows no registry).
//!
//! Crash safety is the content store's: a fetch writes through an ingest and commits only
//! once size and digest verify, so a half-fetched blob is never visible; the record is removed
//! after the commit, and a record whose blob is present is only a stale hint gc removes.
//!
//! A build writes the records it makes together as one [batch](crate::batch)
//! ([`Records::record_all`]); a batched record is read, listed, stamped and removed by gc as a
//! record of its own is. Once its blob is fetched, a batched record stays as a stale hint
//! (rewriting the batch on each fetch would cost what batching saves) until gc drops it.
//!
//! `gc` keeps the records of blobs it keeps (and removes the others); `fsck` reports a tagged
//! image's missing blob that has a record as remote, not as a broken image.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::batch::Batches;
use crate::digest::Digest;
use crate::store::{Layer, Store};

/// Where a remote blob can be fetched from: a repository of a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSource {
    /// The registry's host (and port), as references name it: `127.0.0.1:5000`, `ghcr.io`.
    pub registry: String,
    /// The repository in it: `team/app-cache`.
    pub repository: String,
}

impl std::fmt::Display for RemoteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// Fetches remote blobs into a store: implemented where registries are known (the registry
/// crate), given to the store with [`Store::with_fetcher`](crate::Store::with_fetcher).
pub trait Fetcher: Send + Sync + std::fmt::Debug {
    /// Puts blob `digest` of `size` bytes from `source` into `store`'s content store, verified
    /// by size and digest as it is committed (nothing is stored otherwise).
    fn fetch(&self, store: &Store, source: &RemoteSource, digest: &Digest, size: u64) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// A blob the store knows by descriptor and source only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Where it is.
    pub source: RemoteSource,
    /// The blob the source has instead, when it holds the (plain) layer compressed: it is
    /// fetched and expanded ([`crate::distribute::expand`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<Layer>,
}

/// A small record the store keeps about a blob it does not hold yet: one file per digest, or
/// one item of a batch.
pub trait Record: Serialize + serde::de::DeserializeOwned + Clone {
    /// The directory under `forge/` that holds this kind of record.
    const DIR: &'static str;
    /// The blob the record is about.
    fn digest(&self) -> &Digest;
}

impl Record for RemoteBlob {
    const DIR: &'static str = "remote";
    fn digest(&self) -> &Digest {
        &self.digest
    }
}

/// The store's records of one kind (`forge/<kind>/<hex>`): remote blobs ([`Remotes`]) and
/// blobs kept as a snapshot ([`crate::snapshot_blob::SnapshotBlobs`]).
#[derive(Debug, Clone)]
pub struct Records<T> {
    dir: PathBuf,
    batches: Batches<T>,
}

/// The store's records of remote blobs (`forge/remote/`).
pub type Remotes = Records<RemoteBlob>;

impl<T: Record> Records<T> {
    pub(crate) fn open(root: &std::path::Path) -> Records<T> {
        let dir = root.join("forge").join(T::DIR);
        Records { batches: Batches::open(&dir, T::digest), dir }
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Records `blob` (replacing an earlier record).
    pub fn record(&self, blob: &T) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec(blob).map_err(io::Error::other)?;
        crate::atomic::write(&self.path(blob.digest()), &bytes)
    }

    /// Records every blob of `blobs` as one batch, without waiting for the disk: the image
    /// that needs them is durable only once [`Store::tag`](crate::Store::tag) names it, which
    /// makes them durable first ([`Records::sync`]). A crash before may lose the batch, or tear
    /// it, which then does not hash to its name and is ignored.
    pub fn record_all(&self, blobs: &[T]) -> io::Result<()> {
        self.batches.write_unsynced(blobs)
    }

    /// Makes the records of `digests` durable, each its own file or its batch's; digests
    /// without a record are skipped.
    pub fn sync(&self, digests: &[Digest]) -> io::Result<()> {
        let mut files = std::collections::BTreeSet::new();
        for digest in digests {
            if self.own(digest).is_some() {
                files.insert(self.path(digest));
            } else if let Some((_, batch)) = self.batches.get(digest) {
                files.insert(batch);
            }
        }
        let dirs: std::collections::BTreeSet<PathBuf> = files.iter().filter_map(|f| f.parent().map(PathBuf::from)).collect();
        for path in files.iter().chain(&dirs) {
            fs::File::open(path)?.sync_all()?;
        }
        Ok(())
    }

    /// The record of `digest`, if there is a readable one for that digest: its own, else a
    /// batch's.
    pub fn get(&self, digest: &Digest) -> Option<T> {
        self.own(digest).or_else(|| self.batches.get(digest).map(|(b, _)| b))
    }

    fn own(&self, digest: &Digest) -> Option<T> {
        let bytes = fs::read(self.path(digest)).ok()?;
        // A record that does not parse or names another blob is as good as none.
        serde_json::from_slice::<T>(&bytes).ok().filter(|b| b.digest() == digest)
    }

    /// Batches of records that were ignored because they are torn or altered, and why.
    pub fn damaged(&self) -> io::Result<Vec<(PathBuf, String)>> {
        self.batches.damaged()
    }

    /// Stamps the record of `digest` as used now, so a [lease](crate::lease) holds it against a
    /// gc as it holds a reused blob; `false` when there is none.
    pub fn reuse(&self, digest: &Digest) -> io::Result<bool> {
        if self.own(digest).is_none() {
            return self.batches.reuse(digest);
        }
        match fs::File::options().write(true).open(self.path(digest)) {
            Ok(f) => f.set_modified(SystemTime::now()).map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The digests that have a record.
    pub fn list(&self) -> io::Result<Vec<Digest>> {
        let entries = match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        let mut out = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            if let Some(d) = name.to_str().and_then(|n| Digest::from_str(&format!("sha256:{n}")).ok()) {
                out.push(d);
            }
        }
        let own: std::collections::HashSet<Digest> = out.iter().cloned().collect();
        out.extend(self.batches.all()?.into_iter().map(|(blob, _)| blob.digest().clone()).filter(|d| !own.contains(d)));
        Ok(out)
    }

    /// Removes the record of `digest` (absent is fine); a batched one stays until gc.
    pub(crate) fn remove(&self, digest: &Digest) -> io::Result<()> {
        match fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Removes the record unless it was written or used at `since` or later; whether it did.
    pub(crate) fn remove_unless_newer(&self, digest: &Digest, since: SystemTime) -> io::Result<bool> {
        let own = match fs::metadata(self.path(digest)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            other => {
                if other?.modified()? >= since {
                    return Ok(false);
                }
                self.remove(digest)?;
                true
            }
        };
        Ok(self.batches.remove_unless_newer(digest, since)? || own)
    }
}
