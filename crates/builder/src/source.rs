//! What COPY and ADD read: the build context (with `.dockerignore` applied) or another stage's
//! or image's tree. Sources are matched (wildcards included), walked and content-hashed for the
//! cache key here; `copy.rs` writes them.

use std::fs::Metadata;
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use forge_parser::dockerignore::{Dockerignore, Glob};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::cache_key::{InputKind, KeyBuilder};
use crate::error::StepErrorKind;
use crate::rootfs::Root;
use crate::stat_cache::{content_hash, StatCache};

/// A tree sources are read from.
#[derive(Debug)]
pub(crate) struct SourceTree {
    root: Root,
    /// The tree's real path (symlinks resolved), to name entries relative to it.
    dir: PathBuf,
    /// `.dockerignore` for the context; nothing for stages and images.
    ignore: Dockerignore,
    /// True for the context: files are owned by root in the image whatever they are on disk.
    pub(crate) is_context: bool,
}

/// One source argument's match.
#[derive(Debug, Clone)]
pub(crate) struct Matched {
    /// The matched path relative to the tree (`/`-separated, no leading `/`).
    pub(crate) rel: String,
    /// Everything to copy: the match itself first (`rel` = ""), then, for a directory, its
    /// contents parents first and siblings sorted.
    pub(crate) entries: Vec<Entry>,
    /// Downloaded by `ADD <url>`: copied as a file, never extracted.
    pub(crate) remote: bool,
}

impl Matched {
    /// Whether the match is a directory (its contents are copied, not it).
    pub(crate) fn is_dir(&self) -> bool {
        self.entries[0].meta.is_dir()
    }

    /// The name a file match gets in a destination directory: its last component.
    pub(crate) fn name(&self) -> String {
        std::path::Path::new(&self.rel).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| self.rel.clone())
    }
}

/// A file, directory or link to copy.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Path relative to the match (`""` for the match itself).
    pub(crate) rel: String,
    /// Where it is on the host.
    pub(crate) path: PathBuf,
    /// Its metadata (the match itself with symlinks followed, entries below without).
    pub(crate) meta: Metadata,
}

/// Why a source cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    #[error("{0:?}: not found")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{0}")]
    Pattern(String),
}

impl SourceError {
    /// The class of a step failure this is.
    pub(crate) fn kind(&self) -> StepErrorKind {
        match self {
            SourceError::NotFound(_) => StepErrorKind::SourceNotFound,
            SourceError::Io { .. } => StepErrorKind::Io,
            SourceError::Pattern(_) => StepErrorKind::InvalidInstruction,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |source| SourceError::Io { path: path.display().to_string(), source }
}

impl SourceTree {
    /// Opens the tree at `dir`.
    pub(crate) fn open(dir: &Path, ignore: Dockerignore, is_context: bool) -> Result<SourceTree, SourceError> {
        let real = dir.canonicalize().map_err(io_err(dir))?;
        Ok(SourceTree { root: Root::open(&real).map_err(io_err(&real))?, dir: real, ignore, is_context })
    }

    /// The tree's real path.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn rel_of(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn excluded(&self, rel: &str) -> Result<bool, SourceError> {
        if rel.is_empty() || self.ignore.is_empty() {
            return Ok(false);
        }
        self.ignore.is_excluded(rel).map_err(|e| SourceError::Pattern(e.to_string()))
    }

    /// The matches of one source argument, walked, with `exclude` patterns (relative to the
    /// match) left out.
    pub(crate) fn matches(&self, source: &str, exclude: &Dockerignore) -> Result<Vec<Matched>, SourceError> {
        let cleaned = forge_parser::dockerignore::clean(source.trim_start_matches('/'));
        let rels = if Glob::has_wildcards(&cleaned) {
            let glob = Glob::new(&cleaned).map_err(|e| SourceError::Pattern(e.to_string()))?;
            let mut found = Vec::new();
            self.find(&self.dir.clone(), &glob, &mut found)?;
            if found.is_empty() {
                return Err(SourceError::NotFound(source.to_string()));
            }
            found
        } else {
            vec![if cleaned == "." { String::new() } else { cleaned }]
        };
        let mut out = Vec::new();
        for rel in rels {
            let real = self.root.resolve(&rel).map_err(io_err(Path::new(&rel)))?;
            let Some(real) = real else { return Err(SourceError::NotFound(source.to_string())) };
            let real_rel = self.rel_of(&real);
            if self.excluded(&real_rel)? {
                return Err(SourceError::NotFound(source.to_string()));
            }
            let meta = std::fs::metadata(&real).map_err(io_err(&real))?;
            let mut entries = vec![Entry { rel: String::new(), path: real.clone(), meta }];
            if entries[0].meta.is_dir() {
                self.walk(&real, "", exclude, &mut entries)?;
            }
            out.push(Matched { rel, entries, remote: false });
        }
        Ok(out)
    }

    /// Paths under `dir` that match `glob`, sorted, skipping ignored directories unread.
    fn find(&self, dir: &Path, glob: &Glob, out: &mut Vec<String>) -> Result<(), SourceError> {
        for (_, path, meta) in sorted_dir(dir)? {
            let rel = self.rel_of(&path);
            if self.excluded(&rel)? {
                if meta.is_dir() && !self.ignore.can_skip_dir(&rel).map_err(|e| SourceError::Pattern(e.to_string()))? {
                    self.find(&path, glob, out)?;
                }
                continue;
            }
            if glob.matches(&rel) {
                out.push(rel);
            } else if meta.is_dir() {
                self.find(&path, glob, out)?;
            }
        }
        Ok(())
    }

    /// Appends what is under `dir` to `out`, parents first and siblings sorted. The first
    /// directory with two subdirectories or more has them walked on two threads (a 5,000-file
    /// context spends most of a no-op rebuild in lstat), their entries joined back in order;
    /// below it, one thread each.
    fn walk(&self, dir: &Path, prefix: &str, exclude: &Dockerignore, out: &mut Vec<Entry>) -> Result<(), SourceError> {
        // Asked once: std reads the cgroup's CPU quota files each time.
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        self.walk_in(dir, prefix, exclude, out, cores > 1)
    }

    fn walk_in(&self, dir: &Path, prefix: &str, exclude: &Dockerignore, out: &mut Vec<Entry>, may_split: bool) -> Result<(), SourceError> {
        let children = sorted_dir(dir)?;
        let subdirs = children.iter().filter(|c| c.2.is_dir()).count();
        if subdirs < 2 || !may_split {
            for child in children {
                self.walk_child(child, prefix, exclude, out, may_split)?;
            }
            return Ok(());
        }
        // Split where half of the subdirectories are on each side.
        let mut seen = 0;
        let split = children.iter().position(|c| {
            seen += usize::from(c.2.is_dir());
            seen > subdirs / 2
        });
        let mut children = children;
        let second = children.split_off(split.unwrap_or(children.len()));
        let mut tail = Vec::new();
        std::thread::scope(|scope| {
            let other = scope.spawn(|| second.into_iter().try_for_each(|c| self.walk_child(c, prefix, exclude, &mut tail, false)));
            let mine = children.into_iter().try_for_each(|c| self.walk_child(c, prefix, exclude, out, false));
            let theirs = other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            mine.and(theirs)
        })?;
        out.append(&mut tail);
        Ok(())
    }

    /// One entry of a directory being walked, and what is under it.
    fn walk_child(&self, (name, path, meta): (String, PathBuf, Metadata), prefix: &str, exclude: &Dockerignore, out: &mut Vec<Entry>, may_split: bool) -> Result<(), SourceError> {
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let excluded_here = !exclude.is_empty() && exclude.is_excluded(&rel).map_err(|e| SourceError::Pattern(e.to_string()))?;
        let ignored = !self.ignore.is_empty() && self.excluded(&self.rel_of(&path))?;
        if excluded_here || ignored {
            let keep_looking = meta.is_dir()
                && !(ignored && self.ignore.can_skip_dir(&self.rel_of(&path)).map_err(|e| SourceError::Pattern(e.to_string()))?)
                && !(excluded_here && exclude.can_skip_dir(&rel).map_err(|e| SourceError::Pattern(e.to_string()))?);
            if keep_looking {
                // An exception below may re-include something; its directory comes along.
                let mut below = Vec::new();
                self.walk_in(&path, &rel, exclude, &mut below, may_split)?;
                if !below.is_empty() {
                    out.push(Entry { rel: rel.clone(), path, meta });
                    out.extend(below);
                }
            }
            return Ok(());
        }
        let is_dir = meta.is_dir();
        if is_dir {
            out.push(Entry { rel: rel.clone(), path: path.clone(), meta });
            self.walk_in(&path, &rel, exclude, out, may_split)?;
        } else {
            out.push(Entry { rel, path, meta });
        }
        Ok(())
    }
}

/// A directory's entries (name, path, lstat), sorted by name.
fn sorted_dir(dir: &Path) -> Result<Vec<(String, PathBuf, Metadata)>, SourceError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        // Relative to the directory's fd (not followed, as lstat): no walk of the whole path.
        let meta = entry.metadata().map_err(io_err(&path))?;
        out.push((entry.file_name().to_string_lossy().into_owned(), path, meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// One part of what [`records`] gives a cache key: a match's header, or one entry under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Fed {
    Match(String),
    /// The entry's path in the tree and the bytes the key takes for it.
    Entry(String, Vec<u8>),
}

/// Feeds what a COPY would write from `matches` into `key`: names, types, modes, link
/// targets and content (not mtimes, which a checkout changes), plus owners for non-context
/// trees, where they are copied. Each entry is also noted as an input of kind `kind`, named
/// by its path in the tree, valued by a digest of what it fed (the key gets the same bytes).
pub(crate) fn hash_matches(tree: &SourceTree, matches: &[Matched], cache: &StatCache, key: &mut KeyBuilder, kind: InputKind) -> Result<(), SourceError> {
    let mut entries = Vec::new();
    each_record(tree, matches, cache, |r| feed_one(r, key, &mut entries))?;
    key.note_entries(kind, entries);
    Ok(())
}

/// What [`hash_matches`] feeds a key, in order, before it is fed.
pub(crate) fn records(tree: &SourceTree, matches: &[Matched], cache: &StatCache) -> Result<Vec<Fed>, SourceError> {
    let mut out = Vec::with_capacity(matches.iter().map(|m| 1 + m.entries.len()).sum());
    each_record(tree, matches, cache, |r| out.push(r))?;
    Ok(out)
}

/// Whether [`hash_matches`] would read one context file of `matches` at most (it reads those
/// the stat cache does not remember). Stops at the second.
pub(crate) fn reads_one_context_file_at_most(matches: &[Matched], cache: &StatCache) -> bool {
    let files = matches.iter().filter(|m| !m.remote).flat_map(|m| &m.entries).filter(|e| e.meta.file_type().is_file());
    files.filter(|e| cache.remembered(&e.path, &e.meta).is_none()).nth(1).is_none()
}

/// Gives `f` each record [`hash_matches`] feeds, in order. Downloads are left out: they enter
/// the key by their digest.
fn each_record(tree: &SourceTree, matches: &[Matched], cache: &StatCache, mut f: impl FnMut(Fed)) -> Result<(), SourceError> {
    let files: Vec<&Entry> = matches.iter().filter(|m| !m.remote).flat_map(|m| &m.entries).filter(|e| e.meta.file_type().is_file()).collect();
    let mut sums = file_sums(tree, &files, cache).into_iter();
    for m in matches.iter().filter(|m| !m.remote) {
        f(Fed::Match(m.rel.clone()));
        for e in &m.entries {
            // Written in place, without the formatter (a no-op rebuild makes one record per
            // context file, and `write!` took a tenth of W1's key).
            let mut record = Vec::with_capacity(e.rel.len() + 96);
            record.extend_from_slice(e.rel.as_bytes());
            record.push(0);
            push_octal(&mut record, e.meta.mode());
            record.push(0);
            if !tree.is_context {
                let _ = write!(record, "{}:{}\0", e.meta.uid(), e.meta.gid());
            }
            let ft = e.meta.file_type();
            if ft.is_file() {
                let sum = sums.next().expect("one sum per file, in the order of `files`");
                let mut hex = [0u8; 64];
                hex::encode_to_slice(sum.map_err(io_err(&e.path))?, &mut hex).expect("64 hex digits for 32 bytes");
                record.extend_from_slice(&hex);
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&e.path).map_err(io_err(&e.path))?;
                record.extend_from_slice(target.as_os_str().as_encoded_bytes());
            } else if !ft.is_dir() {
                record.extend_from_slice(&e.meta.rdev().to_le_bytes());
            }
            record.push(0);
            let name = match (m.rel.as_str(), e.rel.as_str()) {
                ("", "") => ".".to_string(),
                (m, "") => m.to_string(),
                ("", e) => e.to_string(),
                (m, e) => [m, "/", e].concat(),
            };
            f(Fed::Entry(name, record));
        }
    }
    Ok(())
}

/// Appends `n` in octal, as `{:o}` writes it.
fn push_octal(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 11];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n & 7) as u8;
        n >>= 3;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// At most this many threads read the files a stat cache does not remember.
const READERS: usize = 16;

/// The content hashes of `files`, in order. The ones the stat cache does not remember are read
/// on up to [`READERS`] threads: the disk serves several reads at once, and a context that is
/// not in the page cache (on this VM, pages untouched for a minute are paged out) read one file
/// at a time waits on one disk read per file. W1's 5,000 files: 0.46 s to `cat` one by one,
/// 0.21 s on sixteen.
fn file_sums(tree: &SourceTree, files: &[&Entry], cache: &StatCache) -> Vec<io::Result<[u8; 32]>> {
    // Only the context's files are remembered: other trees are mounted at a new place each
    // build, so their paths never come back.
    let hash = |e: &Entry| if tree.is_context { cache.read(&e.path, &e.meta) } else { content_hash(&e.path) };
    let mut sums: Vec<Option<io::Result<[u8; 32]>>> =
        files.iter().map(|e| if tree.is_context { cache.remembered(&e.path, &e.meta).map(Ok) } else { None }).collect();
    let missing: Vec<usize> = (0..files.len()).filter(|&i| sums[i].is_none()).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let read = || {
        let mut done = Vec::new();
        while let Some(&i) = missing.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
            done.push((i, hash(files[i])));
        }
        done
    };
    let done: Vec<(usize, io::Result<[u8; 32]>)> = if missing.len() < 2 {
        read()
    } else {
        std::thread::scope(|scope| {
            let others: Vec<_> = (1..missing.len().min(READERS)).map(|_| scope.spawn(read)).collect();
            let mut done = read();
            for other in others {
                done.extend(other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            }
            done
        })
    };
    for (i, sum) in done {
        sums[i] = Some(sum);
    }
    sums.into_iter().map(|s| s.expect("each file remembered or read")).collect()
}

/// Feeds `records` into `key`, each entry noted as an input of kind `kind`.
pub(crate) fn feed(records: Vec<Fed>, key: &mut KeyBuilder, kind: InputKind) {
    let mut entries = Vec::with_capacity(records.len());
    for r in records {
        feed_one(r, key, &mut entries);
    }
    key.note_entries(kind, entries);
}

/// Feeds one record into `key`; an entry goes on to `entries`, to be noted.
fn feed_one(r: Fed, key: &mut KeyBuilder, entries: &mut Vec<(String, Vec<u8>)>) {
    match r {
        Fed::Match(rel) => key.hasher().update(format!("match {rel}\0")),
        Fed::Entry(name, record) => {
            key.hasher().update(&record);
            entries.push((name, record));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rels(tree: &SourceTree, exclude: &Dockerignore, may_split: bool) -> Vec<String> {
        let mut out = Vec::new();
        tree.walk_in(tree.dir(), "", exclude, &mut out, may_split).unwrap();
        out.into_iter().map(|e| e.rel).collect()
    }

    #[test]
    fn files_read_on_several_threads_are_fed_in_walk_order_beside_remembered_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d/e")).unwrap();
        let names: Vec<String> = (0..3 * READERS).map(|i| ["", "d/", "d/e/"][i % 3].to_string() + &format!("f{i:03}")).collect();
        for name in &names {
            std::fs::write(dir.path().join(name), format!("content of {name}")).unwrap();
        }
        std::os::unix::fs::symlink("d/f001", dir.path().join("link")).unwrap();
        let tree = SourceTree::open(dir.path(), Dockerignore::default(), true).unwrap();
        let matches = tree.matches(".", &Dockerignore::default()).unwrap();
        let cache = StatCache::for_context(store.path(), tree.dir());
        // Every other file remembered (the cache keeps a file once its times are a second
        // old); `file_sums` reads the rest.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        for e in matches[0].entries.iter().filter(|e| e.meta.is_file()).step_by(2) {
            cache.read(&e.path, &e.meta).unwrap();
        }
        let fed = records(&tree, &matches, &cache).unwrap();
        let mut files = 0;
        for r in &fed {
            let Fed::Entry(name, record) = r else { continue };
            if let Some(name) = names.iter().find(|n| *n == name) {
                let sum = blake3::hash(format!("content of {name}").as_bytes()).to_hex();
                assert!(record.windows(64).any(|w| w == sum.as_bytes()), "{name}: {:?}", String::from_utf8_lossy(record));
                files += 1;
            }
        }
        assert_eq!(files, names.len());
        // A file gone since the walk: an error that names it.
        std::fs::remove_file(dir.path().join("d/e/f002")).unwrap();
        let fresh = StatCache::for_context(store.path(), Path::new("/elsewhere"));
        let err = records(&tree, &matches, &fresh).unwrap_err().to_string();
        assert!(err.contains("d/e/f002"), "{err}");
    }

    #[test]
    fn octal_is_written_as_the_formatter_writes_it() {
        for n in [0, 7, 8, 0o644, 0o100755, 0o170000, u32::MAX] {
            let mut out = b"x".to_vec();
            push_octal(&mut out, n);
            assert_eq!(out, format!("x{n:o}").into_bytes());
        }
    }

    #[test]
    fn the_walk_on_two_threads_gives_the_order_of_one() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["a", "b/x", "b/y/z", "c", "d/e", "f"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        for f in ["0", "a/1", "b/2", "b/x/3", "b/y/z/4", "c/5", "d/e/6", "f/7", "g"] {
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        let ignore = Dockerignore::parse("b/y\n!b/y/z/4\nc\n").unwrap();
        let tree = SourceTree::open(dir.path(), ignore, true).unwrap();
        for exclude in [Dockerignore::default(), Dockerignore::new(["d", "*/3"]).unwrap()] {
            let one = rels(&tree, &exclude, false);
            assert_eq!(rels(&tree, &exclude, true), one);
            // Parents first, siblings sorted, the ignored directory back for its re-included file.
            let mut sorted = one.clone();
            sorted.sort();
            assert_eq!(one, sorted);
            assert!(one.contains(&"b/y/z/4".to_string()) && !one.contains(&"c/5".to_string()), "{one:?}");
        }
    }
}
