//! Keeping a store healthy: `gc` removes what no tag or build-cache entry reaches, `fsck`
//! re-hashes every blob and checks that every tagged image is complete.
//!
//! gc never removes a blob younger than [`GC_GRACE`]: a build or pull running at the same time
//! writes blobs before it tags them, and those must survive. Snapshots are kept when they are a
//! prefix of a kept image's layer chain; others (and leftover build snapshots) are removed,
//! children before parents. Whatever a later build needs again is unpacked from its blob.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::cache::Cache;
use crate::digest::{chain_id, Digest};
use crate::snapshot::Kind;
use crate::store::{Error, Store};

/// Blobs written more recently than this are never collected.
pub const GC_GRACE: Duration = Duration::from_secs(3600);

/// What `gc` did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs_removed: usize,
    /// Their total size.
    pub bytes_freed: u64,
    /// Snapshots removed.
    pub snapshots_removed: usize,
}

/// What `fsck` found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FsckReport {
    /// Blobs re-hashed.
    pub blobs_checked: usize,
    /// Blobs whose bytes do not match their digest (removed when repairing).
    pub corrupt: Vec<Digest>,
    /// Tags whose image lacks a blob: (tag, what is wrong).
    pub broken_tags: Vec<(String, String)>,
}

impl FsckReport {
    /// No problem found.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.broken_tags.is_empty()
    }
}

/// The blobs reachable from tags (manifests, indexes, configs, layers) and the build cache,
/// plus the snapshot chain IDs of the tagged images.
fn reachable(store: &Store) -> Result<(BTreeSet<Digest>, BTreeSet<Digest>), Error> {
    let mut blobs = BTreeSet::new();
    let mut chains = BTreeSet::new();
    for (_, d) in store.index().list()? {
        if let Ok(top) = Digest::from_str(d.digest().as_ref()) {
            blobs.insert(top);
        }
        // A broken image keeps what it has; fsck reports it.
        let Ok(image) = store.image_of(&d) else { continue };
        if let Ok(m) = Digest::from_str(image.descriptor.digest().as_ref()) {
            blobs.insert(m);
        }
        mark_index_children(store, &d, &mut blobs);
        blobs.insert(image.id()?);
        let mut parent: Option<Digest> = None;
        for l in image.layers()? {
            blobs.insert(l.digest.clone());
            let chain = chain_id(parent.iter().chain([&l.diff_id])).expect("one diffID at least");
            chains.insert(chain.clone());
            parent = Some(chain);
        }
    }
    let cache = Cache::open(store.root()).map_err(|e| Error::Io { what: "build cache", source: std::io::Error::other(e.to_string()) })?;
    for (_, entry) in cache.entries().map_err(|e| Error::Io { what: "build cache", source: std::io::Error::other(e.to_string()) })? {
        if let Some(l) = entry.layer {
            blobs.insert(l.digest);
        }
    }
    Ok((blobs, chains))
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

/// Removes unreachable blobs (older than [`GC_GRACE`]) and snapshots.
pub fn gc(store: &Store) -> Result<GcReport, Error> {
    let (keep, chains) = reachable(store)?;
    let mut report = GcReport::default();
    let now = SystemTime::now();
    for d in store.content().list()? {
        if keep.contains(&d) {
            continue;
        }
        let path = store.content().path(&d);
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        let young = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).is_none_or(|age| age < GC_GRACE);
        if young {
            continue;
        }
        store.content().delete(&d)?;
        report.blobs_removed += 1;
        report.bytes_freed += meta.len();
    }
    // Children first: keep removing leaves until nothing removable is left.
    loop {
        let mut removed = false;
        for info in store.snapshots().list()? {
            let keep_it = match info.kind {
                Kind::Committed => Digest::from_str(&info.key).is_ok_and(|c| chains.contains(&c)),
                // A build snapshot whose build is gone (its process killed).
                _ => !info.key.starts_with("build-") || build_alive(&info.key),
            };
            if !keep_it && store.snapshots().remove(&info.key).is_ok() {
                report.snapshots_removed += 1;
                removed = true;
            }
        }
        if !removed {
            break;
        }
    }
    Ok(report)
}

/// Build snapshots are named `build-<pid>-...`; the build is alive while its process is.
fn build_alive(key: &str) -> bool {
    let pid = key.trim_start_matches("build-").split('-').next().and_then(|p| p.parse::<u32>().ok());
    pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
}

/// Re-hashes every blob and checks every tag's image; with `repair`, removes corrupt blobs.
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
    for (name, d) in store.index().list()? {
        let problem = match store.image_of(&d) {
            Err(e) => Some(e.to_string()),
            Ok(image) => image.layers()?.iter().find(|l| !store.content().exists(&l.digest)).map(|l| format!("layer {} is missing", l.digest)),
        };
        if let Some(p) = problem {
            report.broken_tags.push((name, p));
        }
    }
    Ok(report)
}
