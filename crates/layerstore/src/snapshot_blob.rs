//! Blobs kept as the snapshot they were made from: a built layer's plain tar, made the first
//! time something reads it.
//!
//! A build step leaves its result twice over if its layer's tar is stored as it is made: once
//! as the committed snapshot (the tree later steps and containers mount) and once as the tar.
//! For a big layer that second write, and its fsync, is most of the step. Docker's overlay2
//! graphdriver keeps only the directory and makes the tar when the image is pushed or saved;
//! here the step hashes the tar stream without storing it (so the diffID and digest are known
//! when the image is written) and records "blob D is the tar of snapshot S"
//! (`forge/snapblob/<hex>`). The tar stream is deterministic for a tree and [`LayerOptions`],
//! so [`Store::blob`](crate::Store::blob) and [`Store::ensure_layers`](crate::Store::ensure_layers)
//! re-stream the snapshot, verify size and digest and commit the blob as the content store
//! commits any ingest: a snapshot changed since (or a crash midway) never makes a visible blob.
//!
//! Only plain (uncompressed) layers are kept this way: their digest is their diffID, and
//! compression for a push happens later anyway ([`crate::distribute`]), straight from the
//! snapshot when the plain blob is not stored (the tar a push would write only to read back).
//! A tag whose image has such layers is pending until they are stored ([`crate::pending`]).
//!
//! `gc` keeps the snapshot of every record whose blob it keeps and is not local, and drops
//! the others' records; `fsck` re-hashes each record's snapshot as it re-hashes blobs.

use serde::{Deserialize, Serialize};

use crate::diff::{LayerInfo, LayerOptions, LayerSource};
use crate::digest::Digest;
use crate::remote::{Record, Records};

/// A plain layer blob the store keeps as a committed snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBlob {
    /// The blob's digest (its diffID: it is a plain tar).
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The committed snapshot whose own tree the tar is made of.
    pub chain_id: Digest,
    /// The `source_date_epoch` the tar was made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<i64>,
}

impl Record for SnapshotBlob {
    const DIR: &'static str = "snapblob";
    fn digest(&self) -> &Digest {
        &self.digest
    }
}

/// The store's records of blobs kept as snapshots (`forge/snapblob/`).
pub type SnapshotBlobs = Records<SnapshotBlob>;

impl SnapshotBlob {
    /// How the tar was made.
    pub fn options(&self) -> LayerOptions {
        LayerOptions { compression: crate::archive::Compression::None, source_date_epoch: self.source_date_epoch }
    }

    /// Re-streams the snapshot's tree into `out`; what it hashed to.
    pub(crate) fn stream<W: std::io::Write>(&self, store: &crate::Store, out: W) -> Result<LayerInfo, String> {
        self.stream_as(store, crate::archive::Compression::None, out)
    }

    /// Re-streams the snapshot's tree into `out` as a `compression`ed layer (the blob a push
    /// sends, made without the plain tar); what it hashed to (`diff_id` is the tar's digest).
    pub(crate) fn stream_as<W: std::io::Write>(&self, store: &crate::Store, compression: crate::archive::Compression, out: W) -> Result<LayerInfo, String> {
        let opts = LayerOptions { compression, ..self.options() };
        let dirs = store.snapshots().dirs(self.chain_id.as_str()).map_err(|e| format!("snapshot {}: {e}", self.chain_id))?;
        // A committed snapshot's own tree comes first.
        let tree = dirs.lowerdirs.first().ok_or_else(|| format!("snapshot {} is not committed", self.chain_id))?;
        crate::diff::write_layer(&LayerSource::OverlayUpper(tree), &opts, out).map_err(|e| format!("reading snapshot {}: {e}", self.chain_id))
    }
}
