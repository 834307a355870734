//! How a step makes a layer: reuse the cached result for its key, or prepare a snapshot on
//! the layers so far, let the step change it, diff the upperdir into a layer, commit the
//! snapshot and record the result in the cache; or, for a step known to miss ([`NewKeys`]),
//! make the layer first and key it after. Also read-only views of other stages' and
//! images' layers (`COPY --from`, `RUN --mount=from=`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use forge_layerstore::cache::CacheEntry;
use forge_layerstore::diff::{LayerInfo, LayerOptions, LayerSource};
use forge_layerstore::{Digest, Layer, Store};

use crate::cache_key::Inputs;
use crate::ctx::BuildCtx;
use crate::error::{At, StepErrorKind};
use crate::mount::OverlayMount;
use crate::progress::Event;
use crate::rootfs::Root;
use crate::Error;

/// The changes a layer step makes, given the snapshot's directories.
pub(crate) struct Snapshot<'s> {
    /// Lowerdirs, top-most first.
    pub(crate) lowerdirs: &'s [PathBuf],
    pub(crate) upperdir: &'s Path,
    pub(crate) workdir: &'s Path,
    /// How the step's layer is written, for a step that writes it itself.
    pub(crate) layer_opts: LayerOptions,
    /// Whether a plain layer is only hashed ([`crate::BuildOptions::lazy_layers`]).
    pub(crate) lazy: bool,
}

impl Snapshot<'_> {
    /// Mounts the snapshot read-write in forge's own namespace (for COPY, ADD, WORKDIR),
    /// returning the mount (unmounted on drop) and its root.
    pub(crate) fn mount(&self, store: &Store, at: &At) -> Result<(OverlayMount, Root), Error> {
        let mount = OverlayMount::mount_scratch(&store.tmp_dir()?, self.lowerdirs, Some((self.upperdir, self.workdir)))
            .map_err(|e| at.fail(StepErrorKind::Io, format!("mounting the rootfs: {e}")))?;
        let root = Root::open(mount.path()).map_err(|e| at.fail(StepErrorKind::Io, e.to_string()))?;
        Ok((mount, root))
    }
}

/// The layer of a step with cache key `key` on top of `parent` (the stage's layers; the key
/// of the step before is `parent_key`), and when it was first made: from the cache, or made by
/// `change` on a fresh snapshot (now). `change` returns the layer when it wrote it itself while
/// changing the snapshot (the one-pass COPY), else `None` and its upperdir is diffed.
pub(crate) fn layer_step(
    build: &BuildCtx<'_>,
    at: &At,
    parent: &[Layer],
    parent_key: &Digest,
    key: &Digest,
    mut inputs: Inputs,
    change: impl FnOnce(&Snapshot<'_>) -> Result<Option<LayerInfo>, Error>,
) -> Result<(Option<Layer>, String), Error> {
    let (store, opts) = (build.store, build.opts);
    let index_key = index_key(build, key, &mut inputs);
    let cached = if opts.no_cache { None } else { build.cache.get(&index_key).or_else(|| build.lazy.get(&index_key)) };
    if let Some(entry) = &cached {
        if entry.layer.as_ref().is_none_or(|l| store.content().exists(&l.digest) || build.lazy.origin(&l.digest).is_some() || store.remote().get(&l.digest).is_some() || store.snapshot_blobs().get(&l.digest).is_some()) {
            build.progress.event(Event::StepCached { id: at.id.clone() });
            let entry = cached.expect("matched just above");
            // An entry from before times were kept gets this build's.
            let created = entry.created.unwrap_or_else(|| crate::stage::timestamp(None));
            // The inputs that made the key are the cached step's: a `--cache-to` carries them,
            // and an entry whose layer is only in a registry cache joins the store's own cache
            // with them. Nothing else reads them on a hit.
            let read_again = !opts.cache_to.is_empty() || entry.layer.as_ref().is_some_and(|l| build.lazy.remote_only(store, l).is_some());
            let inputs = if read_again { inputs.labelled() } else { Vec::new() };
            build.used.lock().unwrap().push((index_key, CacheEntry { layer: entry.layer.clone(), inputs, created: Some(created.clone()) }));
            return Ok((entry.layer, created));
        }
    }
    let inputs = inputs.labelled();
    explain_miss(build, at, &inputs, cached.is_some());
    if cached.is_none() {
        build.new_keys.missed(key);
    }
    let made = make(build, at, parent, change)?;
    keep(build, at, parent_key, &index_key, inputs, made)
}

/// [`layer_step`] for a step that cannot hit the cache ([`NewKeys::cannot_hit`]): `change`
/// runs first and `key` gives the step's cache key and inputs after it, from what it read
/// (the one-pass COPY remembers the hashes of the files it copied, so a cold build reads
/// each file once, not once for the key and again for the copy). Returns the key too.
pub(crate) fn layer_step_keyed_after(
    build: &BuildCtx<'_>,
    at: &At,
    parent: &[Layer],
    parent_key: &Digest,
    change: impl FnOnce(&Snapshot<'_>) -> Result<Option<LayerInfo>, Error>,
    key: impl FnOnce() -> Result<(Digest, Inputs), Error>,
) -> Result<(Digest, Option<Layer>, String), Error> {
    let made = make(build, at, parent, change)?;
    let (key, mut inputs) = key()?;
    let index_key = index_key(build, &key, &mut inputs);
    let inputs = inputs.labelled();
    explain_miss(build, at, &inputs, false);
    build.new_keys.missed(&key);
    let (layer, created) = keep(build, at, parent_key, &index_key, inputs, made)?;
    Ok((key, layer, created))
}

/// The cache's key for step key `key` under the build's layer options, which are noted in
/// `inputs`.
fn index_key(build: &BuildCtx<'_>, key: &Digest, inputs: &mut Inputs) -> Digest {
    let opts = build.opts;
    crate::cache_key::note_layer_options(inputs, opts.compression, opts.source_date_epoch);
    crate::cache_key::layer_key(key, opts.compression, opts.source_date_epoch)
}

/// With `--explain-cache`, says why the step with `inputs` missed (`had_entry`: its entry was
/// found, its layer was not).
fn explain_miss(build: &BuildCtx<'_>, at: &At, inputs: &[forge_layerstore::cache::KeyInput], had_entry: bool) {
    if build.opts.explain_cache {
        let miss = crate::explain::explain(&build.cache, inputs, build.opts.no_cache, had_entry);
        build.progress.event(Event::CacheMiss { id: at.id.clone(), reason: miss.reason, changes: miss.changes });
    }
}

/// A step's change made on a fresh snapshot, not yet committed.
struct Uncommitted<'s> {
    /// Removes the snapshot unless it is committed.
    guard: SnapshotGuard<'s>,
    upper: PathBuf,
    /// The chain of the layers below.
    chain: Option<Digest>,
    info: LayerInfo,
    layer_opts: LayerOptions,
}

/// Prepares a snapshot on `parent`, lets `change` change it and diffs it (unless `change`
/// wrote the layer).
fn make<'s>(build: &BuildCtx<'s>, at: &At, parent: &[Layer], change: impl FnOnce(&Snapshot<'_>) -> Result<Option<LayerInfo>, Error>) -> Result<Uncommitted<'s>, Error> {
    let (store, opts) = (build.store, build.opts);
    build.fetch_layers(parent).map_err(|e| at.fail(StepErrorKind::Store, format!("fetching a layer of the build cache: {e}")))?;
    let chain = store.unpack(parent)?;
    let snap_key = format!("build-{}", unique());
    store.snapshots().prepare(&snap_key, chain.as_ref()).map_err(|e| at.fail(StepErrorKind::Store, e.to_string()))?;
    let guard = SnapshotGuard { store, key: Some(snap_key.clone()) };
    let dirs = store.snapshots().dirs(&snap_key).map_err(|e| at.fail(StepErrorKind::Store, e.to_string()))?;
    let (upper, work) = dirs.upper.clone().expect("an active snapshot has an upperdir");
    let layer_opts = LayerOptions { compression: opts.compression, source_date_epoch: opts.source_date_epoch };
    let written = change(&Snapshot { lowerdirs: &dirs.lowerdirs, upperdir: &upper, workdir: &work, layer_opts, lazy: opts.lazy_layers })?;
    // A step that changed nothing still makes a layer (an empty tar), as in BuildKit. A plain
    // layer is only hashed: its tar is made from the committed snapshot when first read.
    let info = match written {
        Some(info) => info,
        None if opts.lazy_layers => store.hash_layer(&upper, &layer_opts)?,
        None => store.write_layer(&LayerSource::OverlayUpper(&upper), &layer_opts)?,
    };
    Ok(Uncommitted { guard, upper, chain, info, layer_opts })
}

/// Commits `made`'s snapshot and records its layer in the cache under `index_key`, with
/// `inputs`, as an entry under `parent_key`.
fn keep(build: &BuildCtx<'_>, at: &At, parent_key: &Digest, index_key: &Digest, inputs: Vec<forge_layerstore::cache::KeyInput>, made: Uncommitted<'_>) -> Result<(Option<Layer>, String), Error> {
    let store = build.store;
    let Uncommitted { mut guard, upper, chain, info, layer_opts } = made;
    let snap_key = guard.key.clone().expect("an uncommitted snapshot");
    let hashed = !store.content().exists(&info.digest);
    let new_chain = forge_layerstore::chain_id(chain.iter().chain([&info.diff_id])).expect("one diffID at least");
    let mut ours = false;
    if !store.snapshots().exists(&new_chain).map_err(|e| at.fail(StepErrorKind::Store, e.to_string()))? {
        match store.snapshots().commit(&new_chain, &snap_key) {
            Ok(()) => (guard.key, ours) = (None, true),
            // Another build committed the same layer meanwhile; ours is dropped.
            Err(forge_layerstore::snapshot::Error::AlreadyExists(_)) => {}
            Err(e) => return Err(at.fail(StepErrorKind::Store, e.to_string())),
        }
    }
    if hashed {
        if ours {
            store.keep_as_snapshot(&info, &new_chain, &layer_opts)?;
        } else if !store.content().exists(&info.digest) {
            // A snapshot made elsewhere (unpacked from a pulled tar, say) need not stream back
            // to the same bytes: the blob is stored from this step's own upperdir.
            let written = store.write_layer(&LayerSource::OverlayUpper(&upper), &layer_opts)?;
            debug_assert_eq!(written.digest, info.digest);
        }
    }
    let layer = Some(Layer::from(&info));
    let created = crate::stage::timestamp(None);
    let entry = CacheEntry { layer: layer.clone(), inputs, created: Some(created.clone()) };
    build.cache.put(index_key, &entry).map_err(|e| at.fail(StepErrorKind::Store, e.to_string()))?;
    build.new_keys.put_under(parent_key);
    build.used.lock().unwrap().push((index_key.clone(), entry));
    Ok((layer, created))
}

/// Which steps cannot find their key in the cache, known before the key is: those whose
/// parent's key (the key of the step before) no entry is kept under. Keys chain, so that holds
/// for every key when the cache held nothing as the build began (and no registry cache was
/// imported), and for the key of a step this build made because no cache had it, until the
/// build itself puts an entry under it (the same step in another stage then finds it). With
/// `--no-cache` no step looks.
pub(crate) struct NewKeys {
    no_cache: bool,
    cache_was_empty: bool,
    /// Keys this build made on a miss, and keys it put entries under.
    seen: std::sync::Mutex<(HashSet<Digest>, HashSet<Digest>)>,
}

impl NewKeys {
    pub(crate) fn new(no_cache: bool, cache_was_empty: bool) -> NewKeys {
        NewKeys { no_cache, cache_was_empty, seen: Default::default() }
    }

    /// Whether the step after the one keyed `parent_key` cannot hit the cache.
    pub(crate) fn cannot_hit(&self, parent_key: &Digest) -> bool {
        let (missed, put_under) = &*self.seen.lock().unwrap();
        self.no_cache || ((self.cache_was_empty || missed.contains(parent_key)) && !put_under.contains(parent_key))
    }

    fn missed(&self, key: &Digest) {
        self.seen.lock().unwrap().0.insert(key.clone());
    }

    fn put_under(&self, parent_key: &Digest) {
        self.seen.lock().unwrap().1.insert(parent_key.clone());
    }
}

/// Mounts `layers` read-only at a scratch directory kept alive by `holders`; returns it.
pub(crate) fn view(build: &BuildCtx<'_>, at: &At, layers: &[Layer], holders: &mut Vec<OverlayMount>) -> Result<PathBuf, Error> {
    let store = build.store;
    build.fetch_layers(layers).map_err(|e| at.fail(StepErrorKind::Store, format!("fetching a layer of the build cache: {e}")))?;
    let chain = store.unpack(layers)?;
    let lowerdirs = match &chain {
        // A committed snapshot's dirs are its own tree plus its parents'.
        Some(c) => store.snapshots().dirs(c.as_str()).map_err(|e| at.fail(StepErrorKind::Store, e.to_string()))?.lowerdirs,
        None => Vec::new(),
    };
    let mount = OverlayMount::mount_scratch(&store.tmp_dir()?, &lowerdirs, None).map_err(|e| at.fail(StepErrorKind::Io, format!("mounting a read-only view: {e}")))?;
    let path = mount.path().to_path_buf();
    holders.push(mount);
    Ok(path)
}

/// Removes an uncommitted build snapshot, however the step ends.
struct SnapshotGuard<'s> {
    store: &'s Store,
    key: Option<String>,
}

impl Drop for SnapshotGuard<'_> {
    fn drop(&mut self) {
        if let Some(k) = &self.key {
            let _ = self.store.snapshots().remove(k);
        }
    }
}

/// A name no other build or step of this process uses.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
