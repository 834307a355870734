//! Keeping a store healthy: `gc` removes what no tag, build-cache entry or live lease holds,
//! `fsck` re-hashes every blob and checks that every tagged image is complete.
//!
//! gc keeps what the live [leases](crate::lease) hold: anything written or reused since the
//! oldest of them started (and since gc itself started), and the images they name. Leases whose
//! owner is gone are expired first. Snapshots are kept when they are a prefix of a kept image's
//! layer chain, or held (a container's writable layer, see
//! [`Snapshotter::prepare_held`](crate::snapshot::Snapshotter::prepare_held)) or the parent of
//! one; others (and build snapshots of dead builds) are removed, children before parents.
//! Whatever a later build needs again is unpacked from its blob. gc also removes what killed
//! operations left half-made: ingests nobody writes, `snapshots/new-*` directories, and the
//! scratch directories (with their overlay mounts) of forge processes that are gone.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::time::SystemTime;

use serde::Serialize;

use crate::cache::Cache;
use crate::digest::{chain_id, Digest};
use crate::snapshot::Kind;
use crate::store::{Error, Store};

/// What `gc` did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs_removed: usize,
    /// Their total size.
    pub bytes_freed: u64,
    /// Snapshots removed.
    pub snapshots_removed: usize,
    /// Leases whose owner process was gone, expired.
    pub leases_expired: usize,
    /// Abandoned ingests removed.
    pub ingests_removed: usize,
    /// Their total size.
    pub ingest_bytes_freed: u64,
    /// Half-made snapshot directories removed.
    pub half_made_snapshots_removed: usize,
    /// Scratch directories of processes that are gone, removed.
    pub scratch_dirs_removed: usize,
    /// Mounts those processes left, detached.
    pub mounts_detached: usize,
}

/// What `fsck` found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FsckReport {
    /// Blobs re-hashed.
    pub blobs_checked: usize,
    /// Blobs whose bytes do not match their digest (removed when repairing).
    pub corrupt: Vec<Digest>,
    /// Tags whose image cannot be read or lacks a blob: (tag, what is wrong). Removed when
    /// repairing.
    pub broken_tags: Vec<(String, String)>,
    /// Layers tagged images name that are not local but known as remote (see
    /// [`crate::remote`]): fetched when first needed, not a problem.
    pub remote: Vec<Digest>,
    /// Batches of records or cache entries that are torn or altered (see [`crate::batch`]),
    /// and why: never read, so their records are lost. Removed when repairing.
    pub damaged_batches: Vec<(std::path::PathBuf, String)>,
}

impl FsckReport {
    /// No problem found.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.broken_tags.is_empty() && self.damaged_batches.is_empty()
    }
}

/// The blobs reachable from tags (pending ones too: [`crate::index`] lists them) (manifests,
/// indexes, configs, layers) and the build cache, plus the snapshot chain IDs of the tagged images.
fn reachable(store: &Store, leased: &[Digest]) -> Result<(BTreeSet<Digest>, BTreeSet<Digest>), Error> {
    let mut blobs = BTreeSet::new();
    let mut chains = BTreeSet::new();
    let mut roots: Vec<oci_spec::image::Descriptor> = store.index().list()?.into_iter().map(|(_, d)| d).collect();
    for digest in leased {
        if let Ok(size) = store.content().size(digest) {
            roots.push(crate::store::descriptor(oci_spec::image::MediaType::ImageManifest, size, digest)?);
        }
    }
    for d in roots {
        if let Ok(top) = Digest::from_str(d.digest().as_ref()) {
            blobs.insert(top);
        }
        // A broken image keeps what it has; fsck reports it.
        let Ok(image) = store.image_of(&d) else { continue };
        if let Ok(m) = Digest::from_str(image.descriptor.digest().as_ref()) {
            blobs.insert(m);
        }
        mark_index_children(store, &d, &mut blobs);
        let (Ok(id), Ok(layers)) = (image.id(), image.layers()) else { continue };
        blobs.insert(id);
        let mut parent: Option<Digest> = None;
        for l in layers {
            keep_layer(store, &l, &mut blobs);
            let chain = chain_id(parent.iter().chain([&l.diff_id])).expect("one diffID at least");
            chains.insert(chain.clone());
            parent = Some(chain);
        }
    }
    let cache = Cache::open(store.root()).map_err(|e| Error::Io { what: "build cache", source: std::io::Error::other(e.to_string()) })?;
    for (_, entry) in cache.entries().map_err(|e| Error::Io { what: "build cache", source: std::io::Error::other(e.to_string()) })? {
        if let Some(l) = entry.layer {
            keep_layer(store, &l, &mut blobs);
        }
    }
    Ok((blobs, chains))
}

/// Marks a layer's blob, and the compressed copies a push or save made of it while it is kept.
fn keep_layer(store: &Store, layer: &crate::store::Layer, blobs: &mut BTreeSet<Digest>) {
    blobs.insert(layer.digest.clone());
    if crate::distribute::is_plain(layer) {
        blobs.extend(crate::distribute::remembered(store, &layer.diff_id));
    }
}

/// Marks the manifests an index lists (the picked platform is marked by `image_of`).
fn mark_index_children(store: &Store, d: &oci_spec::image::Descriptor, blobs: &mut BTreeSet<Digest>) {
    let Ok(digest) = Digest::from_str(d.digest().as_ref()) else { return };
    let Ok(value) = store.get_json::<serde_json::Value>(&digest, "manifest") else { return };
    for m in value.get("manifests").and_then(|m| m.as_array()).into_iter().flatten() {
        if let Some(child) = m.get("digest").and_then(|d| d.as_str()).and_then(|d| Digest::from_str(d).ok()) {
            if store.content().exists(&child) {
                blobs.insert(child);
            }
        }
    }
}

/// Removes what nothing holds: unreachable blobs and snapshots that no live lease holds,
/// expired leases, abandoned ingests, half-made snapshots, and dead processes' scratch
/// directories and mounts.
pub fn gc(store: &Store) -> Result<GcReport, Error> {
    let io = |what: &'static str| move |source: std::io::Error| Error::Io { what, source };
    let started = file_clock_now(&store.root().join("forge").join("tmp")).map_err(io("reading the file clock"))?;
    let leases = crate::lease::live(store.root()).map_err(io("reading the store's leases"))?;
    // Anything stamped at or after this is held by a live lease, or made since gc started.
    let since = leases.oldest.map_or(started, |oldest| oldest.min(started));
    let mut report = GcReport { leases_expired: leases.expired, ..GcReport::default() };
    let (keep, mut chains) = reachable(store, &leases.roots)?;
    // A kept blob that is only a snapshot's tar keeps that snapshot (and so its parents); a
    // record goes when nothing keeps its blob, or once the blob is local.
    for d in store.snapshot_blobs().list().map_err(io("listing blobs kept as snapshots"))? {
        match store.snapshot_blobs().get(&d) {
            Some(blob) if keep.contains(&d) && !store.content().exists(&d) => {
                chains.insert(blob.chain_id);
            }
            _ => {
                store.snapshot_blobs().remove_unless_newer(&d, since).map_err(io("removing a snapshot blob's record"))?;
            }
        }
    }
    for d in store.content().list()? {
        if !keep.contains(&d) {
            if let Some(size) = store.content().remove_unless_newer(&d, since)? {
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
    }
    // A remote blob's record goes with it: when nothing keeps the blob, or once it is local.
    for d in store.remote().list().map_err(io("listing remote blobs"))? {
        if !keep.contains(&d) || store.content().exists(&d) {
            store.remote().remove_unless_newer(&d, since).map_err(io("removing a remote blob's record"))?;
        }
    }
    report.snapshots_removed = remove_snapshots(store, &chains, since)?;
    report.half_made_snapshots_removed = store.snapshots().remove_abandoned_dirs(since)?;
    (report.ingests_removed, report.ingest_bytes_freed) = store.content().remove_abandoned_ingests(since)?;
    let scratch = crate::scratch::reclaim(&store.root().join("forge").join("tmp"), since).map_err(io("removing abandoned scratch directories"))?;
    report.scratch_dirs_removed = scratch.dirs;
    report.mounts_detached = scratch.mounts;
    Ok(report)
}

/// The time a file made now gets. Files are stamped by the kernel's clock, which may lag
/// `SystemTime::now()` by up to a tick (coarse timestamps): a file made just after a `now()`
/// could look older than it. Leases are compared in that same clock (see [`crate::lease`]).
fn file_clock_now(dir: &std::path::Path) -> std::io::Result<SystemTime> {
    std::fs::create_dir_all(dir)?;
    let probe = tempfile::Builder::new().prefix(".gc-clock-").tempfile_in(dir)?;
    probe.as_file().metadata()?.modified()
}

/// Removes the snapshots that are neither a prefix of a kept image's chain nor held by a lease,
/// children before parents, from one listing: deepest first, and a parent only once none of its
/// children is left.
fn remove_snapshots(store: &Store, chains: &BTreeSet<Digest>, since: SystemTime) -> Result<usize, Error> {
    let records = store.snapshots().list()?;
    let parent_of: HashMap<&str, &str> = records.iter().filter_map(|r| Some((r.key.as_str(), r.parent.as_ref()?.as_str()))).collect();
    let mut children: HashMap<&str, usize> = HashMap::new();
    for parent in parent_of.values() {
        *children.entry(parent).or_default() += 1;
    }
    fn depth<'a>(parent_of: &HashMap<&'a str, &'a str>, mut key: &'a str) -> usize {
        let mut d = 0;
        while let Some(p) = parent_of.get(key) {
            (key, d) = (p, d + 1);
            // A cycle in corrupt records.
            if d > parent_of.len() {
                break;
            }
        }
        d
    }
    let mut candidates: Vec<_> = records
        .iter()
        .filter(|r| !(r.kind == Kind::Committed && Digest::from_str(&r.key).is_ok_and(|c| chains.contains(&c))))
        // A held snapshot (a container's) is a root: its holder removes it.
        .filter(|r| r.held_by.is_none())
        .map(|r| (depth(&parent_of, &r.key), r))
        .collect();
    candidates.sort_by_key(|(d, _)| std::cmp::Reverse(*d));
    let mut removed = 0;
    for (_, r) in candidates {
        if children.get(r.key.as_str()).is_some_and(|&n| n > 0) || !store.snapshots().remove_unless_newer(&r.key, since)? {
            continue;
        }
        removed += 1;
        if let Some(p) = parent_of.get(r.key.as_str()) {
            children.entry(p).and_modify(|n| *n -= 1);
        }
    }
    Ok(removed)
}

/// Re-hashes every blob and checks every tag's image; with `repair`, removes corrupt blobs, then
/// the tags whose image cannot be read or lacks a blob (their images must be pulled or built
/// again; nothing else could make them whole).
pub fn fsck(store: &Store, repair: bool) -> Result<FsckReport, Error> {
    let mut report = FsckReport::default();
    for d in store.content().list()? {
        report.blobs_checked += 1;
        if store.content().verify(&d).is_err() {
            if repair {
                store.content().delete(&d)?;
            }
            report.corrupt.push(d);
        }
    }
    // A blob kept as a snapshot is checked as a stored one is: its tar is made again and hashed.
    let mut kept = BTreeSet::new();
    for d in store.snapshot_blobs().list().map_err(|source| Error::Io { what: "listing blobs kept as snapshots", source })? {
        let Some(blob) = store.snapshot_blobs().get(&d).filter(|_| !store.content().exists(&d)) else { continue };
        report.blobs_checked += 1;
        let hashed = blob.stream(store, std::io::sink());
        if hashed.is_ok_and(|info| info.digest == blob.digest && info.size == blob.size) {
            kept.insert(d);
            continue;
        }
        if repair {
            store.snapshot_blobs().remove(&d).map_err(|source| Error::Io { what: "removing a snapshot blob's record", source })?;
        }
        report.corrupt.push(d);
    }
    let mut remote = BTreeSet::new();
    for (name, d) in store.index().list()? {
        let problem = match store.image_of(&d).and_then(|image| image.layers()) {
            Err(e) => Some(e.to_string()),
            Ok(layers) => {
                let missing = layers.iter().filter(|l| !store.content().exists(&l.digest) && !kept.contains(&l.digest));
                let (known, lost): (Vec<_>, Vec<_>) = missing.partition(|l| store.remote().get(&l.digest).is_some());
                remote.extend(known.into_iter().map(|l| l.digest.clone()));
                lost.first().map(|l| format!("layer {} is missing", l.digest))
            }
        };
        if let Some(p) = problem {
            if repair {
                store.index().untag(&name)?;
            }
            report.broken_tags.push((name, p));
        }
    }
    report.remote = remote.into_iter().collect();
    let cache = Cache::open(store.root()).map_err(|e| Error::Io { what: "build cache", source: std::io::Error::other(e.to_string()) })?;
    report.damaged_batches = store.remote().damaged().map_err(|source| Error::Io { what: "reading remote blobs' batches", source })?;
    report.damaged_batches.extend(cache.damaged().map_err(|e| Error::Io { what: "build cache", source: std::io::Error::other(e.to_string()) })?);
    if repair {
        for (path, _) in &report.damaged_batches {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::Io { what: "removing a damaged batch", source: e }),
                _ => {}
            }
        }
    }
    Ok(report)
}
