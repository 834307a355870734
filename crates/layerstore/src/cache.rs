//! The builder's cache index: a step's cache key names the layer that step made, so an
//! unchanged step is skipped. Entries are small JSON files under `forge/cache/`, one per key,
//! written atomically; two builds racing on one key both write the same answer, so the last
//! rename winning is harmless. The layer blobs themselves live in the content store, which is
//! what `gc` keeps alive through these entries.
//!
//! The entries one build takes from a cache are written together as one
//! [batch](crate::batch) ([`Cache::put_all`]), not fsynced; an entry of its own, written later,
//! wins over a batch's.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::batch::Batches;
use crate::digest::Digest;
use crate::store::Layer;

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The layer the step made; `None` for a step that changed no file.
    pub layer: Option<Layer>,
    /// What went into the step's key, input by input, so that a later miss can say which
    /// input changed (`forge build --explain-cache`). Entries written before this field
    /// existed have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<KeyInput>,
    /// When the step first ran (RFC 3339): its history entry keeps that time on every cache
    /// hit, so a fully cached rebuild gives the same image, as BuildKit's does. Entries written
    /// before this field existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// One named input of a cache key, as the builder labels it: `kind` says what sort of input it
/// is (the builder's own vocabulary: instruction text, a context file, an ARG...), `name` which
/// one, `value` what it was (a digest for content, the text for an instruction). The store only
/// keeps these; it never interprets them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInput {
    /// The sort of input.
    pub kind: String,
    /// Which one of its kind.
    pub name: String,
    /// Its value when the key was made.
    pub value: String,
}

/// A cache failure.
#[derive(Debug, thiserror::Error)]
#[error("build cache {}: {source}", path.display())]
pub struct Error {
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// The cache entries of a store.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    batches: Batches<(Digest, CacheEntry)>,
}

fn key_of(item: &(Digest, CacheEntry)) -> &Digest {
    &item.0
}

impl Cache {
    /// Opens (creating if needed) the cache of the store at `root`.
    pub fn open(root: &Path) -> Result<Cache, Error> {
        let dir = root.join("forge").join("cache");
        fs::create_dir_all(&dir).map_err(|source| Error { path: dir.clone(), source })?;
        Ok(Cache { batches: Batches::open(&dir, key_of), dir })
    }

    fn path(&self, key: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    /// The entry for `key`, without its inputs ([`Cache::entries`] has them, for explaining
    /// a miss). An unreadable or corrupt entry is a miss, not an error: the step simply runs
    /// again and rewrites it.
    pub fn get(&self, key: &Digest) -> Option<CacheEntry> {
        // The inputs are skipped unread: a COPY of a 5,000-file context notes 5,000 of them,
        // and a hit, the common case, has the very inputs that made its key.
        #[derive(Deserialize)]
        struct Hit {
            layer: Option<Layer>,
            #[serde(default)]
            created: Option<String>,
        }
        let own = fs::read(self.path(key)).ok().and_then(|bytes| serde_json::from_slice::<Hit>(&bytes).ok());
        own.map(|h| CacheEntry { layer: h.layer, inputs: Vec::new(), created: h.created })
            .or_else(|| self.batches.get(key).map(|((_, entry), _)| CacheEntry { inputs: Vec::new(), ..entry }))
    }

    /// Whether the cache holds no entry, of its own or batched. A directory that cannot be
    /// read counts as holding some: the answer only ever saves a look-up that would miss.
    pub fn is_empty(&self) -> bool {
        let none = |dir: &Path, entry: fn(&str) -> bool| match fs::read_dir(dir) {
            Ok(mut list) => !list.any(|e| e.map_or(true, |e| entry(&e.file_name().to_string_lossy()))),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        };
        // A batch being written is a temporary file whose name starts with a dot.
        none(&self.dir, |name| name.ends_with(".json")) && none(&self.dir.join("batches"), |name| !name.starts_with('.'))
    }

    /// Records what the step with `key` produced.
    pub fn put(&self, key: &Digest, entry: &CacheEntry) -> Result<(), Error> {
        let path = self.path(key);
        let bytes = serde_json::to_vec(entry).map_err(|e| Error { path: path.clone(), source: e.into() })?;
        crate::atomic::write(&path, &bytes).map_err(|source| Error { path, source })
    }

    /// Records every `(key, entry)` of `entries` as one batch, whatever their number, without
    /// fsync: a crash may lose the batch, which costs only running those steps again, or tear
    /// it, which its name detects ([`crate::batch`]), so it is ignored and reported. The layer
    /// an entry names must be durable before (a blob committed to the content store, or a
    /// remote blob's record): an entry that survives a crash then never names a lost layer.
    pub fn put_all(&self, entries: &[(Digest, CacheEntry)]) -> Result<(), Error> {
        self.batches.write_unsynced(entries).map_err(|source| Error { path: self.dir.join("batches"), source })
    }

    /// Batches of entries that were ignored because they are torn or altered, and why.
    pub fn damaged(&self) -> Result<Vec<(PathBuf, String)>, Error> {
        self.batches.damaged().map_err(|source| Error { path: self.dir.join("batches"), source })
    }

    /// Every entry (a batched one with its batch's path), for garbage collection.
    pub fn entries(&self) -> Result<Vec<(PathBuf, CacheEntry)>, Error> {
        let mut out = Vec::new();
        let list = fs::read_dir(&self.dir).map_err(|source| Error { path: self.dir.clone(), source })?;
        for entry in list.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                if let Some(e) = fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                    out.push((path, e));
                }
            }
        }
        let batched = self.batches.all().map_err(|source| Error { path: self.dir.join("batches"), source })?;
        // An entry of its own hides the batch's for that key.
        let own: std::collections::HashSet<PathBuf> = out.iter().map(|(path, _)| path.clone()).collect();
        out.extend(batched.into_iter().filter(|((key, _), _)| !own.contains(&self.path(key))).map(|((_, entry), path)| (path, entry)));
        Ok(out)
    }

    /// Drops every entry.
    pub fn clear(&self) -> Result<(), Error> {
        self.batches.clear().map_err(|source| Error { path: self.dir.join("batches"), source })?;
        for (path, _) in self.entries()? {
            fs::remove_file(&path).map_err(|source| Error { path, source })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> CacheEntry {
        CacheEntry { layer: None, inputs: Vec::new(), created: None }
    }

    #[test]
    fn a_cache_is_empty_until_an_entry_of_its_own_or_a_batch_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        assert!(cache.is_empty());
        // Writes under way (their temporary files) are no entries yet.
        fs::write(cache.dir.join(".tmp-x"), b"{}").unwrap();
        fs::create_dir_all(cache.dir.join("batches")).unwrap();
        fs::write(cache.dir.join("batches/.tmp-y"), b"[]").unwrap();
        assert!(cache.is_empty());

        cache.put(&Digest::of(b"own"), &entry()).unwrap();
        assert!(!cache.is_empty());
        cache.clear().unwrap();
        assert!(cache.is_empty());

        cache.put_all(&[(Digest::of(b"batched"), entry())]).unwrap();
        assert!(!Cache::open(dir.path()).unwrap().is_empty());
    }
}
