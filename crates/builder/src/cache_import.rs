//! `--cache-from`: reads a cache `--cache-to` wrote (`cache_layout.rs`), from an OCI layout
//! directory or a registry, so the build's steps with those keys are hits.
//!
//! From a directory, entries go into the store's cache index with their layers. From a
//! registry only the metadata is read at first ([`Lazy`]): a hit needs no layer, and a layer is
//! fetched only when its content is really needed (a later step runs on it, a `--from` reads
//! it, or it is in the image the build writes). Its entries join the store's index then.
//!
//! A cache is input from elsewhere (a CI cache restored from anywhere, a registry anyone may
//! push to): every document is bounded in size and checked against its digest, every layer
//! blob against its digest as it enters the content store and then against its entry's diffID,
//! and an entry whose layer is missing or wrong is left out with a warning (its blob, correct
//! for its own digest, is left for gc): at worst the steps run. The exception is a registry
//! layer found bad only when it is fetched, after its step was taken as a hit: that fails the
//! build with an error naming the cache, and nothing of the layer is kept. Entries the store
//! already has are kept as they are.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use forge_layerstore::cache::{Cache, CacheEntry};
use forge_layerstore::digest::HashingWriter;
use forge_layerstore::remote::{RemoteBlob, RemoteSource};
use forge_layerstore::{Digest, Layer, Store};
use oci_spec::image::{ImageIndex, ImageManifest};

use crate::cache_layout::{CacheConfig, CacheFrom, CacheRegistry, CONFIG_GZIP_MEDIA_TYPE, CONFIG_MEDIA_TYPE, MAX_CONFIG, MAX_INDEX, MAX_MANIFEST, VERSION};

/// Layers fetched side by side from a registry cache.
const PARALLEL_FETCHES: usize = 4;

/// Warnings about one cache beyond this many are summed up in one line.
const MAX_WARNINGS: usize = 5;

/// Steps of registry caches whose layers are fetched only when their content is needed.
#[derive(Default)]
pub(crate) struct Lazy {
    /// By index key: the entry and the reference of the cache it came from.
    entries: HashMap<Digest, (CacheEntry, String)>,
    /// Layer digest to the cache reference that has it.
    layers: HashMap<Digest, String>,
    /// Layer digest to the compressed blob the cache holds for it, when not the layer's own.
    stored: HashMap<Digest, Layer>,
    /// Cache mounts' contents by id, and where they come from.
    mounts: HashMap<String, (Layer, Origin)>,
    /// One fetch at a time: stages in parallel may need the same layer.
    fetching: Mutex<()>,
}

/// Where a cache mount's layer is.
enum Origin {
    Local(PathBuf),
    Registry(String),
}

impl Lazy {
    /// The entry for index key `key`, if a registry cache has it.
    pub(crate) fn get(&self, key: &Digest) -> Option<CacheEntry> {
        self.entries.get(key).map(|(e, _)| e.clone())
    }

    /// Whether no registry cache gave any step.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cache a layer can be fetched from.
    pub(crate) fn origin(&self, layer: &Digest) -> Option<&str> {
        self.layers.get(layer).map(String::as_str)
    }

    /// Makes every layer of `layers` present in the store, fetching (and checking) those a
    /// registry cache has; the entries naming a fetched layer then join the store's index.
    pub(crate) fn ensure(&self, store: &Store, cache: &Cache, registry: Option<&dyn CacheRegistry>, layers: &[Layer]) -> Result<(), String> {
        if !layers.iter().any(|l| self.layers.contains_key(&l.digest) && !store.content().exists(&l.digest)) {
            return Ok(());
        }
        let registry = registry.ok_or("no registry client was given to the build")?;
        // Stages in parallel may need the same layers: one ensure at a time, its layers
        // fetched side by side.
        let _one = self.fetching.lock().unwrap();
        // Each blob once: an image may hold the same layer twice, and two writers of one blob
        // would lock each other out.
        let mut seen = std::collections::HashSet::new();
        let missing: Vec<(&Layer, &String)> = layers
            .iter()
            .filter(|l| !store.content().exists(&l.digest) && seen.insert(&l.digest))
            .filter_map(|l| Some((l, self.layers.get(&l.digest)?)))
            .collect();
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let workers: Vec<_> = missing
                .chunks(missing.len().div_ceil(PARALLEL_FETCHES).max(1))
                .map(|chunk| {
                    s.spawn(move || -> Result<(), String> {
                        for (layer, reference) in chunk {
                            let source = Source::Registry(registry, reference);
                            let stored = self.stored.get(&layer.digest);
                            take_layer(store, &source, layer, stored, Some(stored.unwrap_or(layer).size)).map_err(|e| format!("cache {reference}: {e}"))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("a layer fetch panicked".into()))).collect()
        });
        results.into_iter().collect::<Result<(), String>>()?;
        let fetched: Vec<(Digest, CacheEntry)> = self
            .entries
            .iter()
            .filter(|(key, (entry, _))| entry.layer.as_ref().is_some_and(|l| missing.iter().any(|(m, _)| m.digest == l.digest)) && cache.get(key).is_none())
            .map(|(key, (entry, _))| (key.clone(), entry.clone()))
            .collect();
        cache.put_all(&fetched).map_err(|e| e.to_string())
    }
}

impl Lazy {
    /// The registry cache that holds `layer`, while it is only there (not in the store): an
    /// entry naming it joins the store's cache at the build's end ([`Lazy::record_remote`]).
    pub(crate) fn remote_only(&self, store: &Store, layer: &Layer) -> Option<&str> {
        self.origin(&layer.digest).filter(|_| !store.content().exists(&layer.digest))
    }

    /// Records the layers of the `used` entries that are still only in a registry cache as
    /// remote blobs of the store ([`forge_layerstore::remote`]), and puts those entries into
    /// the store's index: the image is written without the bytes, which come when something
    /// reads them, and a later build in this store hits those steps without `--cache-from`.
    /// Records, then entries, each kind as one batch: the records durably (the image's
    /// manifest, written next, relies on them), the entries after them without fsync (a crash
    /// loses or tears them, which only makes their steps run again), so an entry never names
    /// a layer whose record a crash lost. Returns the layers recorded.
    pub(crate) fn record_remote(&self, store: &Store, cache: &Cache, used: &[(Digest, CacheEntry)]) -> Result<std::collections::HashSet<Digest>, String> {
        let mut blobs = Vec::new();
        let mut entries = Vec::new();
        for (key, entry) in used {
            let Some(layer) = &entry.layer else { continue };
            let Some(reference) = self.remote_only(store, layer) else { continue };
            let r = forge_layerstore::reference::ImageName::parse(reference).map_err(|e| format!("cache {reference}: {e}"))?;
            let source = RemoteSource { registry: r.registry().to_string(), repository: r.repository().to_string() };
            let blob = RemoteBlob { digest: layer.digest.clone(), size: layer.size, source, stored: self.stored.get(&layer.digest).cloned() };
            blobs.push(blob);
            entries.push((key.clone(), entry.clone()));
        }
        store.remote().record_all(&blobs).map_err(|e| format!("recording {} remote layers: {e}", blobs.len()))?;
        cache.put_all(&entries).map_err(|e| e.to_string())?;
        Ok(blobs.into_iter().map(|b| b.digest).collect())
    }

    /// Fills the cache mount `id`'s directory `dir`, which does not exist yet, from a cache
    /// that has its contents; returns whether one had them. The contents are unpacked beside
    /// `dir` and renamed into place, so a failure leaves no half-filled mount.
    pub(crate) fn restore_mount(&self, store: &Store, registry: Option<&dyn CacheRegistry>, id: &str, dir: &Path) -> Result<bool, String> {
        let Some((layer, origin)) = self.mounts.get(id) else { return Ok(false) };
        let source = match origin {
            Origin::Local(src) => Source::Local(src),
            Origin::Registry(reference) => Source::Registry(registry.ok_or("no registry client was given to the build")?, reference),
        };
        take_layer(store, &source, layer, None, Some(layer.size))?;
        let parent = dir.parent().unwrap_or(Path::new("/"));
        let tmp = tempfile::Builder::new().prefix(".restore-").tempdir_in(parent).map_err(|e| e.to_string())?;
        let blob = File::open(store.content().path(&layer.digest)).map_err(|e| e.to_string())?;
        let opts = forge_layerstore::archive::ApplyOptions { whiteouts: forge_layerstore::archive::WhiteoutMode::Delete, device_nodes: false };
        forge_layerstore::archive::apply_layer(io::BufReader::new(blob), tmp.path(), &opts).map_err(|e| e.to_string())?;
        match std::fs::rename(tmp.path(), dir) {
            Ok(()) => {
                // Renamed away: nothing left for the guard to remove.
                let _ = tmp.keep();
                Ok(true)
            }
            // Another build filled it meanwhile; theirs stays.
            Err(_) if dir.exists() => Ok(true),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// What reading one cache gave: its config, `None` when there is no cache there yet, or why
/// it could not be read.
pub(crate) type CacheRead = Result<Option<Fetched>, String>;

/// The `--cache-from` caches read on a thread of their own, so the round trip to a registry
/// overlaps with other work: the build's own start, or more of it when a caller starts this
/// sooner and hands it over in [`BuildOptions::cache_prefetch`](crate::BuildOptions).
pub struct CachePrefetch {
    from: Vec<CacheFrom>,
    registry: Option<Arc<dyn CacheRegistry>>,
    reading: Mutex<Option<std::thread::JoinHandle<Vec<CacheRead>>>>,
}

impl CachePrefetch {
    /// Starts reading the caches `from` names (their manifests and configs; nothing is
    /// stored), with `registry` for those in a registry.
    pub fn start(from: Vec<CacheFrom>, registry: Option<Arc<dyn CacheRegistry>>) -> Arc<CachePrefetch> {
        let (list, client) = (from.clone(), registry.clone());
        let reading = std::thread::spawn(move || list.iter().map(|f| fetch(f, client.as_deref())).collect());
        Arc::new(CachePrefetch { from, registry, reading: Mutex::new(Some(reading)) })
    }

    /// Whether this reads exactly the caches `from` names.
    pub(crate) fn is_for(&self, from: &[CacheFrom]) -> bool {
        self.from == from
    }

    /// What was read, one result per cache; read again if an earlier build took it.
    pub(crate) fn wait(&self) -> Vec<CacheRead> {
        match self.reading.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(reading) => reading.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => self.from.iter().map(|f| fetch(f, self.registry.as_deref())).collect(),
        }
    }
}

impl std::fmt::Debug for CachePrefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachePrefetch").field("from", &self.from).finish_non_exhaustive()
    }
}

/// Reads the cache `from` names, its manifest and config, without touching the store.
fn fetch(from: &CacheFrom, registry: Option<&dyn CacheRegistry>) -> CacheRead {
    match from {
        CacheFrom::Local { src } => read_config(&Source::Local(src)),
        CacheFrom::Registry { reference } => read_config(&Source::Registry(registry.ok_or("no registry client was given to the build")?, reference)),
    }
}

/// Imports `from`, whose config a [`CachePrefetch`] read, into `store`'s `cache`, or into
/// `lazy` for a registry's layers; problems go to `warn`.
pub(crate) fn import(
    store: &Store,
    cache: &Cache,
    lazy: &mut Lazy,
    from: &CacheFrom,
    fetched: CacheRead,
    registry: Option<&dyn CacheRegistry>,
    warn: &mut dyn FnMut(String),
) {
    let name = match from {
        CacheFrom::Local { src } => format!("cache {}", src.display()),
        CacheFrom::Registry { reference } => format!("cache {reference}"),
    };
    let config = match fetched {
        Ok(Some(c)) => c,
        Ok(None) => return warn(format!("{name}: no cache there yet; building without it")),
        Err(e) => return warn(format!("{name}: {e}; building without it")),
    };
    let source = match (from, registry) {
        (CacheFrom::Local { src }, _) => Source::Local(src),
        (CacheFrom::Registry { reference }, Some(r)) => Source::Registry(r, reference),
        // Without a client `fetch` read nothing, and said so above.
        (CacheFrom::Registry { .. }, None) => return,
    };
    let mut warnings = Vec::new();
    let mut checked: HashMap<Digest, Result<(), String>> = HashMap::new();
    let mut taken = Vec::new();
    for entry in config.entries {
        // A registry's entry whose layer stays remote is only looked at after the store's own
        // entries miss (and joins them only if none has its key), so no lookup here: a fresh
        // runner's import is then one stat per entry.
        if let (Some(layer), Source::Registry(_, reference)) = (&entry.layer, &source) {
            let blob = entry.stored.as_ref().unwrap_or(layer);
            if config.layers.get(&blob.digest) != Some(&blob.size) {
                warnings.push(format!("{name}: step {} left out: layer {} is not in the cache manifest with size {}", entry.key, blob.digest, blob.size));
                continue;
            }
            if let Some(stored) = &entry.stored {
                if stored.diff_id != layer.diff_id || !forge_layerstore::distribute::is_plain(layer) {
                    warnings.push(format!("{name}: step {} left out: its stored blob {} is not a compressed form of layer {}", entry.key, stored.digest, layer.digest));
                    continue;
                }
            }
            if !store.content().exists(&layer.digest) {
                if let Some(stored) = &entry.stored {
                    lazy.stored.insert(layer.digest.clone(), stored.clone());
                }
                lazy.layers.insert(layer.digest.clone(), reference.to_string());
                lazy.entries.insert(entry.key.clone(), (CacheEntry { layer: entry.layer.clone(), inputs: entry.inputs, created: entry.created }, reference.to_string()));
                continue;
            }
        }
        if cache.get(&entry.key).is_some() {
            continue;
        }
        if let Some(layer) = &entry.layer {
            let stored = entry.stored.as_ref();
            let listed = config.layers.get(&stored.unwrap_or(layer).digest).copied();
            let result = checked.entry(layer.digest.clone()).or_insert_with(|| take_layer(store, &source, layer, stored, listed));
            if let Err(e) = result {
                warnings.push(format!("{name}: step {} left out: {e}", entry.key));
                continue;
            }
        }
        taken.push((entry.key, CacheEntry { layer: entry.layer, inputs: entry.inputs, created: entry.created }));
    }
    if let Err(e) = cache.put_all(&taken) {
        warnings.push(format!("{name}: {e}"));
    }
    for m in config.mounts {
        if config.layers.get(&m.layer.digest) != Some(&m.layer.size) {
            warnings.push(format!("{name}: cache mount {:?} left out: its layer is not in the cache manifest", m.id));
            continue;
        }
        let origin = match from {
            CacheFrom::Local { src } => Origin::Local(src.clone()),
            CacheFrom::Registry { reference } => Origin::Registry(reference.clone()),
        };
        lazy.mounts.entry(m.id).or_insert((m.layer, origin));
    }
    for f in config.from_records {
        match crate::from_memo::FromMemo::named(store, &f.id, f.layers) {
            // What this store remembers itself stays.
            Some(memo) if memo.read().is_none() => {
                if let Err(e) = memo.write(&f.records) {
                    warnings.push(format!("{name}: the records of a COPY --from: {e}"));
                }
            }
            Some(_) => {}
            None => warnings.push(format!("{name}: COPY --from records left out: {:?} is not a memo's name", f.id)),
        }
    }
    let more = warnings.len().saturating_sub(MAX_WARNINGS);
    warnings.into_iter().take(MAX_WARNINGS).for_each(&mut *warn);
    if more > 0 {
        warn(format!("{name}: {more} more steps left out"));
    }
}

/// A cache's config and the size of each layer its manifest lists.
pub(crate) struct Fetched {
    entries: Vec<crate::cache_layout::ConfigEntry>,
    mounts: Vec<crate::cache_layout::MountEntry>,
    from_records: Vec<crate::cache_layout::FromRecords>,
    layers: HashMap<Digest, u64>,
}

/// Where a cache is read from.
enum Source<'a> {
    Local(&'a Path),
    Registry(&'a dyn CacheRegistry, &'a str),
}

impl Source<'_> {
    /// The cache manifest's bytes, unchecked; `None` when there is no cache yet.
    fn manifest(&self) -> Result<Option<Vec<u8>>, String> {
        match self {
            Source::Local(src) => {
                if !src.join("index.json").exists() {
                    return Ok(None);
                }
                let index_bytes = read_bounded(&src.join("index.json"), MAX_INDEX).map_err(|e| format!("index.json: {e}"))?;
                let index: ImageIndex = serde_json::from_slice(&index_bytes).map_err(|e| format!("index.json: {e}"))?;
                let d = index.manifests().first().ok_or("index.json names no manifest")?;
                read_blob(src, d.digest().as_ref(), d.size(), MAX_MANIFEST).map(Some).map_err(|e| format!("manifest: {e}"))
            }
            Source::Registry(r, reference) => r.manifest(reference),
        }
    }

    /// A small blob (at most `max` bytes), checked against `digest` and `size`. Read into
    /// memory only: the store keeps what the cache's entries name, not the cache's own
    /// documents, which a later import reads again anyway.
    fn small_blob(&self, digest: &str, size: u64, max: u64) -> Result<Vec<u8>, String> {
        match self {
            Source::Local(src) => read_blob(src, digest, size, max),
            Source::Registry(r, reference) => {
                if size > max {
                    return Err(format!("{size} bytes, more than the {max} a cache may use"));
                }
                let digest = Digest::from_str(digest).map_err(|e| e.to_string())?;
                // The client checks too; this check does not depend on which client it is.
                verified(r.blob(reference, &digest, size, max)?, &digest, size)
            }
        }
    }

    /// Puts a layer blob into the store, verified by digest and size.
    fn layer(&self, store: &Store, layer: &Layer) -> Result<(), String> {
        let fail = |e: &dyn std::fmt::Display| format!("layer {}: {e}", layer.digest);
        match self {
            Source::Local(src) => {
                let path = blob_path(src, &layer.digest);
                let mut writer = store.content().writer(layer.digest.as_str()).map_err(|e| fail(&e))?;
                let mut blob = File::open(&path).map_err(|e| fail(&e))?;
                // A resumed ingest has bytes already; the rest follows them.
                std::io::Seek::seek(&mut blob, io::SeekFrom::Start(writer.offset())).map_err(|e| fail(&e))?;
                io::copy(&mut blob, &mut writer).map_err(|e| fail(&e))?;
                writer.commit(Some(layer.size), Some(&layer.digest)).map_err(|e| fail(&e))?;
                Ok(())
            }
            Source::Registry(r, reference) => r.pull_blob(store, reference, &layer.digest, layer.size).map_err(|e| fail(&e)),
        }
    }
}

fn read_config(source: &Source<'_>) -> Result<Option<Fetched>, String> {
    let Some(manifest_bytes) = source.manifest()? else { return Ok(None) };
    if manifest_bytes.len() as u64 > MAX_MANIFEST {
        return Err(format!("manifest: more than {MAX_MANIFEST} bytes"));
    }
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| format!("manifest: {e}"))?;
    let media_type = manifest.config().media_type().to_string();
    if media_type != CONFIG_MEDIA_TYPE && media_type != CONFIG_GZIP_MEDIA_TYPE {
        return Err(format!("not a forge build cache (config media type {media_type})"));
    }
    let config_bytes = match manifest.config().data() {
        // Carried in the manifest: no request for the blob.
        Some(data) => {
            let digest = Digest::from_str(manifest.config().digest().as_ref()).map_err(|e| format!("cache config: {e}"))?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| format!("cache config in the manifest: {e}"))?;
            verified(bytes, &digest, manifest.config().size()).map_err(|e| format!("cache config in the manifest: {e}"))?
        }
        None => source.small_blob(manifest.config().digest().as_ref(), manifest.config().size(), MAX_CONFIG).map_err(|e| format!("cache config: {e}"))?,
    };
    let config_bytes = if media_type == CONFIG_GZIP_MEDIA_TYPE { gunzip(&config_bytes, MAX_CONFIG).map_err(|e| format!("cache config: {e}"))? } else { config_bytes };
    let config: CacheConfig = serde_json::from_slice(&config_bytes).map_err(|e| format!("cache config: {e}"))?;
    if config.version != VERSION {
        return Err(format!("cache config version {} (this forge reads {VERSION})", config.version));
    }
    let mut layers = HashMap::new();
    for l in manifest.layers() {
        let digest = Digest::from_str(l.digest().as_ref()).map_err(|e| format!("manifest: {e}"))?;
        layers.insert(digest, l.size());
    }
    Ok(Some(Fetched { entries: config.entries, mounts: config.mounts, from_records: config.from_records, layers }))
}

/// `bytes` gunzipped, refused past `max` bytes: a small blob may unpack to a huge one. Every
/// member, as the store reads gzip (`cat a.gz b.gz` is one valid stream).
fn gunzip(bytes: &[u8], max: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes).take(max + 1).read_to_end(&mut out).map_err(|e| format!("not gzip: {e}"))?;
    if out.len() as u64 > max {
        return Err(format!("more than {max} bytes once unpacked"));
    }
    Ok(out)
}

/// A blob of the layout, at most `max` bytes, checked against `size` and `digest`.
fn read_blob(src: &Path, digest: &str, size: u64, max: u64) -> Result<Vec<u8>, String> {
    if size > max {
        return Err(format!("{size} bytes, more than the {max} a cache may use"));
    }
    let digest = Digest::from_str(digest).map_err(|e| e.to_string())?;
    verified(read_bounded(&blob_path(src, &digest), max).map_err(|e| e.to_string())?, &digest, size)
}

/// `bytes` if they are `size` bytes hashing to `digest`.
fn verified(bytes: Vec<u8>, digest: &Digest, size: u64) -> Result<Vec<u8>, String> {
    if bytes.len() as u64 != size || Digest::of(&bytes) != *digest {
        return Err(format!("blob {digest} does not match its digest or size"));
    }
    Ok(bytes)
}

fn blob_path(src: &Path, digest: &Digest) -> std::path::PathBuf {
    src.join("blobs").join(digest.algorithm()).join(digest.hex())
}

/// Reads at most `max` bytes; a longer file is an error, not a truncated read.
fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::other(format!("{}: more than {max} bytes", path.display())));
    }
    Ok(bytes)
}

/// Puts `layer`'s blob in the store (unless there already) from the cache's blob of it, after
/// checking that the manifest lists that with its size (`listed`): `stored` when the cache
/// holds the layer compressed (expanded here), else the layer's own. Then checks that,
/// uncompressed, it has its entry's diffID.
fn take_layer(store: &Store, source: &Source<'_>, layer: &Layer, stored: Option<&Layer>, listed: Option<u64>) -> Result<(), String> {
    let blob = stored.unwrap_or(layer);
    if listed != Some(blob.size) {
        return Err(format!("layer {} is not in the cache manifest with size {}", blob.digest, blob.size));
    }
    if !store.content().exists(&layer.digest) {
        if !store.content().exists(&blob.digest) {
            source.layer(store, blob)?;
        }
        if let Some(stored) = stored {
            forge_layerstore::distribute::expand(store, stored, layer).map_err(|e| format!("layer {}: {e}", stored.digest))?;
        }
    }
    let diff_id = diff_id(&store.content().path(&layer.digest)).map_err(|e| format!("layer {}: {e}", layer.digest))?;
    if diff_id != layer.diff_id {
        return Err(format!("layer {}: its content's diffID is {diff_id}, not {}", layer.digest, layer.diff_id));
    }
    Ok(())
}

/// The sha256 of a layer blob's uncompressed tar.
fn diff_id(path: &Path) -> Result<Digest, String> {
    let (_, mut tar) = forge_layerstore::archive::decompress(io::BufReader::new(File::open(path).map_err(|e| e.to_string())?)).map_err(|e| e.to_string())?;
    let mut hasher = HashingWriter::new(io::sink());
    io::copy(&mut tar, &mut hasher).map_err(|e| e.to_string())?;
    Ok(hasher.finish().1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefetch_taken_by_one_build_is_read_again_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let from = vec![CacheFrom::Local { src: dir.path().join("not-yet") }, CacheFrom::Registry { reference: "reg.example/app:cache".into() }];
        let prefetch = CachePrefetch::start(from.clone(), None);
        assert!(prefetch.is_for(&from) && !prefetch.is_for(&from[..1]));
        for _ in 0..2 {
            let read = prefetch.wait();
            assert!(matches!(read[0], Ok(None)), "a cache not written yet is no error");
            assert_eq!(read[1].as_ref().err().map(String::as_str), Some("no registry client was given to the build"));
        }
    }

    #[test]
    fn gunzip_reads_every_member_and_refuses_past_its_bound() {
        let gz = |b: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::Write::write_all(&mut e, b).unwrap();
            e.finish().unwrap()
        };
        let two = [gz(b"{\"a\":"), gz(b"1}")].concat();
        assert_eq!(gunzip(&two, 64).unwrap(), b"{\"a\":1}");
        assert_eq!(gunzip(&gz(&[b' '; 65]), 64).unwrap_err(), "more than 64 bytes once unpacked");
        assert!(gunzip(b"{}", 64).unwrap_err().starts_with("not gzip"));
    }
}
