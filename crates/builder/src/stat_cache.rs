//! The stat cache: content hashes of build-context files kept across builds, so a rebuild with
//! nothing changed stats the context but reads no file (BuildKit's contenthash cache does the
//! same). One file per context directory in the store, loaded the first time a step hashes a
//! context file: a build whose steps are all keyed without the context never reads it.
//!
//! A remembered hash is used only while the file's inode, size, mtime and ctime are all
//! unchanged. ctime cannot be set by a user (`touch -d` sets mtime and makes ctime now), so a
//! file rewritten with the same size and its mtime put back still misses. A file changed in
//! the last second is hashed but not remembered: it could change again within the same clock
//! tick without any of its times moving. Only hashes of content are kept here; cache keys
//! never see inodes or times, so keys stay the same on any machine.
//!
//! The content hash is BLAKE3, not sha256: it only ever enters forge's own cache keys (the
//! digests users see are sha256 of layers and configs), and a cold build hashes every byte
//! of the context it copies. With SHA-NI, sha256 takes 2.5 times as long here (200 MiB:
//! 0.18 s against 0.07 s, reading included).

use std::collections::HashMap;
use std::fs::Metadata;
use std::hash::BuildHasher as _;
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest as _, Sha256};

/// The first bytes of a stat cache file; another version is ignored (and replaced).
const MAGIC: &[u8; 16] = b"forge-statcache4";

/// A remembered file hash and what the file looked like when it was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    hash: [u8; 32],
}

impl Stamp {
    fn matches(&self, meta: &Metadata) -> bool {
        (self.ino, self.size, self.mtime_ns, self.ctime_ns) == (meta.ino(), meta.size(), mtime_ns(meta), ctime_ns(meta))
    }
}

fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
}

fn ctime_ns(meta: &Metadata) -> i64 {
    meta.ctime() * 1_000_000_000 + meta.ctime_nsec()
}

/// The remembered hashes of one context's files, by path relative to the context.
#[derive(Debug)]
pub(crate) struct StatCache {
    /// Where the cache is kept; `None` keeps nothing (hashes every file).
    file: Option<PathBuf>,
    /// The context directory (symlinks resolved) the paths are relative to.
    context: PathBuf,
    /// What the cache file held when this build first needed it.
    loaded: OnceLock<Loaded>,
    /// Hashes this build made, newer than the file's.
    fresh: Mutex<HashMap<Vec<u8>, Stamp>>,
    /// Whether `fresh` holds anything (to save, and to look in): set after each insert, read
    /// without its lock.
    dirty: AtomicBool,
}

/// A cache file's entries, looked up where they lie in its bytes. A map of owned paths cost a
/// load 5,000 allocations and 720 KB of fresh memory for W1's context (1.4 ms of its 25 ms
/// no-op rebuild, on a VM where a fresh page costs 3-4 µs).
#[derive(Debug, Default)]
struct Loaded {
    bytes: Vec<u8>,
    /// The offset of each entry in `bytes`, by its path's hash.
    offsets: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
}

impl Loaded {
    fn get(&self, path: &[u8]) -> Option<Stamp> {
        let hash = self.hasher.hash_one(path);
        let at = self.offsets.find(hash, |&at| path_at(&self.bytes, at as usize) == path)?;
        Some(entry_at(&self.bytes, *at as usize).1)
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], Stamp)> {
        self.offsets.iter().map(|&at| entry_at(&self.bytes, at as usize))
    }
}

impl StatCache {
    /// The cache of the context at `context` (its real path), kept under `dir` in a file named
    /// by a hash of that path. Nothing is read until the first hash is asked for.
    pub(crate) fn for_context(dir: &Path, context: &Path) -> StatCache {
        let name = hex::encode(&Sha256::digest(context.as_os_str().as_encoded_bytes())[..16]);
        StatCache { file: Some(dir.join(name)), context: context.to_path_buf(), loaded: OnceLock::new(), fresh: Mutex::default(), dirty: AtomicBool::new(false) }
    }

    fn loaded(&self) -> &Loaded {
        self.loaded.get_or_init(|| self.file.as_deref().and_then(|f| std::fs::read(f).ok()).map(decode).unwrap_or_default())
    }

    /// The content hash of the context file at `path` with metadata `meta`, read from the file
    /// and remembered once the file's times are a second old (a file changed within the second
    /// could change again under the same times).
    pub(crate) fn read(&self, path: &Path, meta: &Metadata) -> io::Result<[u8; 32]> {
        let hash = content_hash(path)?;
        self.remember(path, meta, hash);
        Ok(hash)
    }

    /// Remembers `hash`, the content hash of the context file at `path` with metadata `meta`
    /// read by the caller, as [`StatCache::read`] remembers what it reads.
    pub(crate) fn remember(&self, path: &Path, meta: &Metadata, hash: [u8; 32]) {
        let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let (mtime_ns, ctime_ns) = (mtime_ns(meta), ctime_ns(meta));
        if now_ns - mtime_ns.max(ctime_ns) > 1_000_000_000 {
            let stamp = Stamp { ino: meta.ino(), size: meta.size(), mtime_ns, ctime_ns, hash };
            self.fresh.lock().unwrap().insert(self.rel(path).to_vec(), stamp);
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// The remembered content hash of the context file at `path`, if its stamp still matches
    /// `meta`.
    pub(crate) fn remembered(&self, path: &Path, meta: &Metadata) -> Option<[u8; 32]> {
        let rel = self.rel(path);
        // Nothing is fresh in a build that hashed nothing (a no-op rebuild): no lock per look-up.
        let fresh = if self.dirty.load(Ordering::Relaxed) { self.fresh.lock().unwrap().get(rel).copied() } else { None };
        fresh.filter(|s| s.matches(meta)).or_else(|| self.loaded().get(rel).filter(|s| s.matches(meta))).map(|s| s.hash)
    }

    /// `path` relative to the context, as the cache names it.
    fn rel<'p>(&self, path: &'p Path) -> &'p [u8] {
        // Paths under the context are made by joining onto it: its bytes are their prefix.
        let full = path.as_os_str().as_encoded_bytes();
        full.strip_prefix(self.context.as_os_str().as_encoded_bytes()).map_or(full, |r| r.strip_prefix(b"/").unwrap_or(r))
    }

    /// Writes the cache back if it changed, renamed over the old one, so a reader sees the old
    /// cache or the new one (concurrent builds of one context: the last wins); after a crash,
    /// possibly neither whole, which its checksum turns into no cache.
    pub(crate) fn save(&self) -> io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let fresh = self.fresh.lock().unwrap();
        let kept = self.loaded().iter().filter(|(path, _)| !fresh.contains_key(*path));
        let bytes = encode(kept.chain(fresh.iter().map(|(path, stamp)| (path.as_slice(), *stamp))));
        let dir = file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&bytes)?;
        // Not fsynced: a crash may leave the file empty, cut or with zeroed blocks, which its
        // checksum rejects as a whole (every file is hashed again then); fsync cost more than
        // the rest of a fully cached build on a busy disk.
        tmp.persist(file).map_err(|e| e.error)?;
        // The single cache file of earlier versions, which kept every context's entries (and
        // the paths of mounts long gone): replaced by the per-context files.
        let _ = std::fs::remove_file(dir.with_file_name("statcache.json"));
        Ok(())
    }
}

/// The content hash (BLAKE3) of a file's bytes.
pub(crate) fn content_hash(path: &Path) -> io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(hasher.finalize().into())
}

// A fixed binary layout rather than serde_json: decoding 5,000 entries as JSON took a tenth of
// a no-op rebuild of a 5,000-file context. Each entry: path length (u32 LE), path bytes, then
// inode, size, mtime and ctime (8 bytes LE each) and the 32-byte content hash. The file ends with
// the BLAKE3 hash of all bytes before it, so a torn file is never read as remembered hashes
// (BLAKE3 rather than sha256 for the reason the module doc gives; W1's cache is 440 KB).
const FIXED: usize = 4 * 8 + 32;

fn encode<'a>(entries: impl Iterator<Item = (&'a [u8], Stamp)>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (path, s) in entries {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
        for n in [s.ino.to_le_bytes(), s.size.to_le_bytes(), s.mtime_ns.to_le_bytes(), s.ctime_ns.to_le_bytes()] {
            out.extend_from_slice(&n);
        }
        out.extend_from_slice(&s.hash);
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// The entries of a cache file; a file of another version, cut short or altered gives none.
fn decode(bytes: Vec<u8>) -> Loaded {
    let Some((body, sum)) = bytes.split_last_chunk::<32>() else { return Loaded::default() };
    if blake3::hash(body) != *sum || !body.starts_with(MAGIC) || body.len() > u32::MAX as usize {
        return Loaded::default();
    }
    // Paths are short: room for about as many entries as there are, without growing.
    let mut loaded = Loaded { offsets: hashbrown::HashTable::with_capacity(body.len() / (FIXED + 4 + 24)), ..Loaded::default() };
    let mut at = MAGIC.len();
    while at < body.len() {
        let Some(len) = body[at..].first_chunk::<4>() else { return Loaded::default() };
        let len = u32::from_le_bytes(*len) as usize;
        if body.len() - at - 4 < len + FIXED {
            return Loaded::default();
        }
        // Unique: `encode` writes each path once, and the checksum says this is what it wrote.
        let hash = loaded.hasher.hash_one(path_at(body, at));
        loaded.offsets.insert_unique(hash, at as u32, |&o| loaded.hasher.hash_one(path_at(body, o as usize)));
        at += 4 + len + FIXED;
    }
    loaded.bytes = bytes;
    loaded
}

/// The path of the entry at `at` in a checked cache file's bytes.
fn path_at(bytes: &[u8], at: usize) -> &[u8] {
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
    &bytes[at + 4..at + 4 + len]
}

/// The path and stamp of the entry at `at` in a checked cache file's bytes.
fn entry_at(bytes: &[u8], at: usize) -> (&[u8], Stamp) {
    let path = path_at(bytes, at);
    let fixed = &bytes[at + 4 + path.len()..at + 4 + path.len() + FIXED];
    let n = |i: usize| <[u8; 8]>::try_from(&fixed[i * 8..i * 8 + 8]).expect("8 bytes");
    let stamp = Stamp {
        ino: u64::from_le_bytes(n(0)),
        size: u64::from_le_bytes(n(1)),
        mtime_ns: i64::from_le_bytes(n(2)),
        ctime_ns: i64::from_le_bytes(n(3)),
        hash: fixed[32..].try_into().expect("32 bytes"),
    };
    (path, stamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn set_mtime(path: &Path, secs: i64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)).unwrap();
    }

    /// A file last changed more than a second ago, so the cache remembers it.
    fn old_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        set_mtime(&path, 1_000_000_000);
        path
    }

    /// The hash a build takes for `path`: remembered, or read (as `source::file_sums` does).
    fn hash_of(cache: &StatCache, path: &Path) -> String {
        let meta = std::fs::symlink_metadata(path).unwrap();
        hex::encode(cache.remembered(path, &meta).unwrap_or_else(|| cache.read(path, &meta).unwrap()))
    }

    fn hash_hex(b: &[u8]) -> String {
        blake3::hash(b).to_hex().to_string()
    }

    #[test]
    fn a_remembered_hash_survives_a_reload_and_is_used_while_the_stamp_matches() {
        let ctx = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let path = old_file(ctx.path(), "a", b"hello");
        // ctime is now; the cache remembers only once the file is a second old.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let cache = StatCache::for_context(store.path(), ctx.path());
        assert_eq!(hash_of(&cache, &path), hash_hex(b"hello"));
        cache.save().unwrap();
        let reloaded = StatCache::for_context(store.path(), ctx.path());
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let stamp = reloaded.loaded().get(b"a").unwrap();
        assert!(stamp.matches(&meta));
        assert_eq!(hex::encode(stamp.hash), hash_hex(b"hello"));
        // A chmod changes only the ctime: the stamp no longer matches.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!stamp.matches(&std::fs::symlink_metadata(&path).unwrap()));
    }

    #[test]
    fn same_size_and_mtime_put_back_still_misses() {
        let ctx = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let path = old_file(ctx.path(), "a", b"aaaa");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let cache = StatCache::for_context(store.path(), ctx.path());
        assert_eq!(hash_of(&cache, &path), hash_hex(b"aaaa"));
        cache.save().unwrap();
        // Same size, same mtime (as `touch -d` would put back), other bytes.
        std::fs::write(&path, b"bbbb").unwrap();
        set_mtime(&path, 1_000_000_000);
        let reloaded = StatCache::for_context(store.path(), ctx.path());
        assert_eq!(hash_of(&reloaded, &path), hash_hex(b"bbbb"));
    }

    #[test]
    fn a_file_changed_within_the_last_second_is_not_remembered() {
        let ctx = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let path = ctx.path().join("new");
        std::fs::write(&path, b"x").unwrap();
        let cache = StatCache::for_context(store.path(), ctx.path());
        assert_eq!(hash_of(&cache, &path), hash_hex(b"x"));
        assert!(cache.fresh.lock().unwrap().is_empty());
        cache.save().unwrap();
        assert_eq!(std::fs::read_dir(store.path()).unwrap().count(), 0, "nothing to save");
    }

    #[test]
    fn contexts_have_separate_caches_and_a_damaged_file_is_ignored() {
        let store = tempfile::tempdir().unwrap();
        let one = StatCache::for_context(store.path(), Path::new("/ctx/one"));
        let two = StatCache::for_context(store.path(), Path::new("/ctx/two"));
        assert_ne!(one.file, two.file);
        let stamp = Stamp { ino: 7, size: 3, mtime_ns: 1, ctime_ns: 2, hash: [9; 32] };
        let map = HashMap::from([(b"dir/f".to_vec(), stamp), (b"g".to_vec(), stamp)]);
        let bytes = encode(map.iter().map(|(p, s)| (p.as_slice(), *s)));
        assert_eq!(decoded(&bytes), map);
        // Cut short anywhere: at most the whole entries before the cut, never a wrong one.
        for cut in 0..bytes.len() {
            for (path, stamp) in decoded(&bytes[..cut]) {
                assert_eq!(map.get(&path), Some(&stamp), "cut at {cut}");
            }
        }
        assert!(decoded(b"forge-statcache0rest").is_empty());
        // Zeroed blocks (a crash after an unsynced write) or any altered byte: nothing.
        for at in MAGIC.len()..bytes.len() {
            let mut altered = bytes.clone();
            altered[at] ^= 0x5a;
            assert!(decoded(&altered).is_empty(), "byte {at} altered");
        }
        let mut zeroed = bytes.clone();
        zeroed[MAGIC.len()..].fill(0);
        assert!(decoded(&zeroed).is_empty());
    }

    fn decoded(bytes: &[u8]) -> HashMap<Vec<u8>, Stamp> {
        decode(bytes.to_vec()).iter().map(|(p, s)| (p.to_vec(), s)).collect()
    }

    /// A save keeps what the file held and this build did not hash again, and replaces what it
    /// did; look-ups see this build's hashes before the file's.
    #[test]
    fn a_save_merges_this_builds_hashes_into_the_files() {
        let ctx = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let (a, b) = (old_file(ctx.path(), "a", b"a1"), old_file(ctx.path(), "b", b"b1"));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let first = StatCache::for_context(store.path(), ctx.path());
        assert_eq!((hash_of(&first, &a), hash_of(&first, &b)), (hash_hex(b"a1"), hash_hex(b"b1")));
        first.save().unwrap();

        std::fs::write(&b, b"b2").unwrap();
        set_mtime(&b, 1_000_000_001);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = StatCache::for_context(store.path(), ctx.path());
        assert_eq!(hash_of(&second, &b), hash_hex(b"b2"));
        let meta_b = std::fs::symlink_metadata(&b).unwrap();
        assert_eq!(second.remembered(&b, &meta_b).map(hex::encode), Some(hash_hex(b"b2")));
        second.save().unwrap();

        let third = StatCache::for_context(store.path(), ctx.path());
        assert_eq!(third.loaded().iter().count(), 2);
        let meta_a = std::fs::symlink_metadata(&a).unwrap();
        assert_eq!(third.remembered(&a, &meta_a).map(hex::encode), Some(hash_hex(b"a1")));
        assert_eq!(third.remembered(&b, &meta_b).map(hex::encode), Some(hash_hex(b"b2")));
    }
}
