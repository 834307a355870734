//! What the sources of a `COPY --from` fed its cache key, remembered, so that a rebuild keys
//! the step without mounting the stage's or image's layers or reading a byte of them.
//!
//! The tree `--from` reads is the stack of its layers, and layers never change: the chain ID of
//! their diffIDs names the tree's content exactly (a stage rebuilt to other content has other
//! diffIDs). The records are kept under a digest of that chain ID, the expanded sources and the
//! `--exclude` patterns, the only other things they depend on. They are the same bytes the tree
//! would feed, so keys do not change, and nothing in them depends on the machine.
//!
//! A memo also names the layers (blobs) of its tree: once the store lacks one of them (a gc
//! took it), `forge store gc` drops the memo ([`gc_from_records`]). A memo is only a
//! saving, so dropping one is always safe: the tree is read again if it comes back.

use std::io::{self, Write as _};
use std::path::PathBuf;

use forge_layerstore::{Digest, Layer, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::source::Fed;

/// The place of one remembered set of records.
#[derive(Debug)]
pub(crate) struct FromMemo {
    path: PathBuf,
    layers: Vec<Digest>,
}

/// A memo file.
#[derive(Serialize, Deserialize)]
struct Memo {
    /// The blobs of the layers the tree is the stack of.
    layers: Vec<Digest>,
    records: Vec<Fed>,
}

impl FromMemo {
    /// The memo of `sources` (minus `exclude`) read from the tree of `layers`.
    pub(crate) fn new(store: &Store, layers: &[Layer], sources: &[String], exclude: &[String]) -> FromMemo {
        let mut h = Sha256::new();
        // The record layout's version: another layout must never read these (v2: files are
        // hashed with BLAKE3).
        h.update(b"forge-from-records-v2\0");
        let chain = forge_layerstore::chain_id(layers.iter().map(|l| &l.diff_id));
        h.update(chain.as_ref().map_or("scratch", |c| c.as_str()));
        for list in [sources, exclude] {
            h.update((list.len() as u64).to_le_bytes());
            for s in list {
                h.update((s.len() as u64).to_le_bytes());
                h.update(s);
            }
        }
        FromMemo { path: Self::dir(store).join(format!("{}.json", hex::encode(h.finalize()))), layers: layers.iter().map(|l| l.digest.clone()).collect() }
    }

    /// The memo named `id` (as [`FromMemo::id`] gives it) of the tree of the blobs `layers`, if
    /// it is such a name.
    pub(crate) fn named(store: &Store, id: &str, layers: Vec<Digest>) -> Option<FromMemo> {
        let valid = id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| FromMemo { path: Self::dir(store).join(format!("{id}.json")), layers })
    }

    /// The blobs of the tree's layers.
    pub(crate) fn layers(&self) -> &[Digest] {
        &self.layers
    }

    fn dir(store: &Store) -> PathBuf {
        store.root().join("forge").join("from-records")
    }

    /// The memo's name, the same on every machine for the same tree, sources and excludes.
    pub(crate) fn id(&self) -> String {
        self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// The remembered records; none if missing or unreadable (the tree is read again; a memo
    /// of the earlier layout, its records alone, is then rewritten).
    pub(crate) fn read(&self) -> Option<Vec<Fed>> {
        serde_json::from_slice::<Memo>(&std::fs::read(&self.path).ok()?).ok().map(|m| m.records)
    }

    /// Remembers `records`: synced, then renamed into place, so a reader sees all or nothing.
    pub(crate) fn write(&self, records: &[Fed]) -> io::Result<()> {
        let dir = self.path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&serde_json::to_vec(&Memo { layers: self.layers.clone(), records: records.to_vec() })?)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Removes the memos of trees the store no longer has whole (a layer of it is neither a blob,
/// nor a remote blob's record, nor a snapshot kept as a blob), and files there that are no
/// memo (torn, or of the earlier layout); returns how many.
pub fn gc_from_records(store: &Store) -> io::Result<usize> {
    let dir = FromMemo::dir(store);
    let list = match std::fs::read_dir(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        other => other?,
    };
    let has = |d: &Digest| store.content().exists(d) || store.remote().get(d).is_some() || store.snapshot_blobs().get(d).is_some();
    let mut removed = 0;
    for entry in list {
        let path = entry?.path();
        // Temp files of a write in progress start with a dot.
        if path.file_name().is_some_and(|n| n.as_encoded_bytes().starts_with(b".")) {
            continue;
        }
        let keep = match std::fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            other => serde_json::from_slice::<Memo>(&other?).ok().is_some_and(|m| m.layers.iter().all(has)),
        };
        if !keep {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
            removed += 1;
        }
    }
    Ok(removed)
}
