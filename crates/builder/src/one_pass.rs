//! The one-pass COPY: a directory copied to a destination that did not exist, or a file
//! copied to a name that did not, is written straight into the snapshot's upperdir, and its
//! layer tar is made from the same reads.
//!
//! When the destination is new, the merged tree below it is exactly what the copy writes, so
//! the overlay mount (where every lookup and create costs, and the kernel will not copy a
//! file's data for us) is needed only to resolve the destination and create its directories
//! (copying up its parents). After that the mount is gone; each source file is read once
//! into a buffer that goes both to the new file in the upperdir and to the layer, or, when it
//! is big, copied by the kernel while the layer reads it. The layer starts with a scan of the
//! upperdir as it is then (the destination's parents and, for a directory, the empty
//! destination) and continues with the copied entries in the order the scan of the finished
//! upperdir would give (parents first, siblings by name), each with the metadata read back
//! from its own fd: the bytes, and so the digests, are those of the diff of the finished
//! upperdir. Any other COPY goes through the mount as before (`files.rs`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use forge_layerstore::archive::Compression;
use forge_layerstore::diff::{LayerInfo, LayerOptions, LayerStream};
use forge_layerstore::Store;
use rustix::fs::{futimens, mkdirat, openat, unlinkat, utimensat, AtFlags, Mode, OFlags, Timespec, Timestamps, UTIME_OMIT};

use crate::error::{At, StepErrorKind};
use crate::files::{copy_data, dest_is_dir, set_meta, set_owner_mode, set_times, split_dest, write_entry, CopyOptions, InlineFile};
use crate::rootfs::Root;
use crate::source::{Entry, Matched};
use crate::stat_cache::StatCache;
use crate::Error;

/// Files up to this size are read whole into memory once; larger ones are copied by the
/// kernel where it can, while the tar reads them (see [`copy_file`]).
const WHOLE_FILE: usize = 1 << 20;

/// Whether the copy can take the one-pass path: one match, nothing inline, no `--parents`,
/// and either a directory whose names the walk kept byte for byte with nothing at `dest` yet,
/// or a regular file (that ADD would not extract) with nothing at the name it gets. If so,
/// creates the destination's directories through the mount and returns the path of the new
/// directory or file relative to the root.
pub(crate) fn claim(root: &Root, matches: &[Matched], inline: &[InlineFile], dest: &str, opts: &CopyOptions) -> io::Result<Option<String>> {
    let [m] = matches else { return Ok(None) };
    if m.remote || !inline.is_empty() || opts.parents {
        return Ok(None);
    }
    if !m.is_dir() {
        return claim_file(root, m, dest, opts);
    }
    // Entry names are kept as UTF-8 text; a name that is not would be renamed by the copy
    // and could collide with a sibling, which the mount path handles by replacing.
    if m.entries.iter().any(|e| e.path.to_str().is_none()) {
        return Ok(None);
    }
    if root.resolve(dest)?.is_some() {
        return Ok(None);
    }
    let dir = root.mkdir_all(dest, opts.owner.unwrap_or((0, 0)), opts.chmod.unwrap_or(0o755))?;
    drop(dir);
    let real = root.follow(dest)?;
    Ok(Some(real.trim_start_matches('/').to_string()))
}

/// [`claim`] for a file: where `copy_into` would put it, its directories made as it makes
/// them, and a file created there and removed again through the mount, which copies the
/// directory up into the upperdir with the change the copy makes to it. Anything in the way
/// (a file, a symlink, a directory that cannot be made) is left to the mount path, which
/// replaces it or reports it.
fn claim_file(root: &Root, m: &Matched, dest: &str, opts: &CopyOptions) -> io::Result<Option<String>> {
    if !m.entries[0].meta.is_file() || opts.extract_archives {
        return Ok(None);
    }
    let (dir_path, name) = if dest_is_dir(root, dest) { (format!("{}/", dest.trim_end_matches('/')), m.name()) } else { split_dest(&root.follow(dest)?) };
    let Ok(dir) = root.mkdir_all(&dir_path, opts.owner.unwrap_or((0, 0)), opts.chmod.unwrap_or(0o755)) else { return Ok(None) };
    let Ok(file) = create(&dir, &name) else { return Ok(None) };
    drop(file);
    unlinkat(&dir, name.as_str(), AtFlags::empty())?;
    let real = root.follow(&dir_path)?;
    Ok(Some(match real.trim_matches('/') {
        "" => name,
        dir => format!("{dir}/{name}"),
    }))
}

/// Copies `m` (its contents, for a directory) to `target` (relative to `upper`, made by
/// [`claim`]) and writes the layer of the whole upperdir into `store`. The overlay must no
/// longer be mounted. With `lazy`, a plain layer is only hashed: the store makes its tar
/// from the committed snapshot when it is first read (see `forge_layerstore::snapshot_blob`).
/// With `learn` (the context's stat cache, for a copy from the context), the content hash of
/// each file copied is remembered there, from the same reads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy(store: &Store, at: &At, upper: &Path, target: &str, m: &Matched, opts: &CopyOptions, layer_opts: &LayerOptions, lazy: bool, learn: Option<&StatCache>) -> Result<LayerInfo, Error> {
    let diff = |e: forge_layerstore::diff::Error| Error::Store(e.into());
    if lazy && layer_opts.compression == Compression::None {
        let layer = LayerStream::new(layer_opts, io::sink()).map_err(diff)?;
        return Ok(write(at, upper, target, m, opts, learn, layer)?.finish().map_err(diff)?.0);
    }
    let layer = write(at, upper, target, m, opts, learn, store.stream_layer(layer_opts)?)?;
    Ok(store.commit_layer(layer)?)
}

/// [`copy`]'s copy, the layer's entries written into `layer` from the same reads.
fn write<W: Write>(at: &At, upper: &Path, target: &str, m: &Matched, opts: &CopyOptions, learn: Option<&StatCache>, mut layer: LayerStream<W>) -> Result<LayerStream<W>, Error> {
    let io_fail = |what: &str, e: io::Error| at.fail(StepErrorKind::Io, format!("copying {} to /{target}: {what}: {e}", if m.rel.is_empty() { "." } else { &m.rel }));
    let upper_root = Root::open(upper).map_err(|e| io_fail("opening the snapshot", e))?;
    let diff = |e: forge_layerstore::diff::Error| Error::Store(e.into());
    if !m.is_dir() {
        let (dir_rel, name) = target.rsplit_once('/').unwrap_or((".", target));
        let dir = File::from(upper_root.open_at(dir_rel, OFlags::DIRECTORY | OFlags::RDONLY).map_err(|e| io_fail("opening the destination", e))?);
        let before = dir.metadata().map_err(|e| io_fail("reading the destination", e))?;
        layer.scan_upper(upper).map_err(diff)?;
        let out = File::from(create(&dir, name).map_err(|e| io_fail(name, e))?);
        copy_file(&m.entries[0], out, target, &upper.join(target), opts, learn, &mut Vec::new(), &mut layer, |e| io_fail(name, e))?;
        keep_time(&dir, &before).map_err(|e| io_fail("the destination's time", e))?;
        return Ok(layer);
    }
    let target_dir = File::from(upper_root.open_at(target, OFlags::DIRECTORY | OFlags::RDONLY).map_err(|e| io_fail("opening the destination", e))?);
    let before = target_dir.metadata().map_err(|e| io_fail("reading the destination", e))?;
    layer.scan_upper(upper).map_err(diff)?;

    let target_abs = upper.join(target);
    // The open directories from the destination down to the current entry's parent.
    let mut open: Vec<(&str, OwnedFd)> = vec![("", target_dir.try_clone().map_err(|e| io_fail("opening the destination", e))?.into())];
    let mut dirs: Vec<&Entry> = Vec::new();
    let mut buf = Vec::new();
    for entry in &m.entries[1..] {
        let (parent_rel, name) = entry.rel.rsplit_once('/').unwrap_or(("", entry.rel.as_str()));
        while open.last().is_some_and(|(rel, _)| *rel != parent_rel) {
            open.pop();
        }
        let parent = &open.last().ok_or_else(|| io_fail(&entry.rel, io::Error::other("an entry came before its directory")))?.1;
        let path = format!("{target}/{}", entry.rel);
        let abs = target_abs.join(&entry.rel);
        let fail = |e: io::Error| io_fail(&entry.rel, e);
        let ft = entry.meta.file_type();
        if ft.is_file() {
            let out = File::from(create(parent, name).map_err(fail)?);
            copy_file(entry, out, &path, &abs, opts, learn, &mut buf, &mut layer, fail)?;
        } else if ft.is_dir() {
            mkdirat(parent, name, Mode::from_raw_mode(0o755)).map_err(|e| fail(e.into()))?;
            let dir = File::from(openat(parent, name, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).map_err(|e| fail(e.into()))?);
            // Its times are set after its children are written (which change them); the
            // layer gets the time it will have.
            set_owner_mode(&dir, entry, opts).map_err(fail)?;
            layer.append_open(path.as_bytes(), &abs, &dir, Some(entry.meta.mtime()), io::empty()).map_err(diff)?;
            dirs.push(entry);
            open.push((entry.rel.as_str(), dir.into()));
        } else if !ft.is_socket() {
            // Symlinks, devices and FIFOs, as the mount path writes them (sockets are skipped
            // by both).
            write_entry(parent, name, entry, opts).map_err(fail)?;
            layer.append_path(path.as_bytes(), &abs).map_err(diff)?;
        }
    }
    drop(open);
    // Deepest first, as in `files.rs`; by path from the destination's fd rather than by held
    // fds, so a tree of many directories cannot run out of descriptors. Below the
    // destination there is nothing but what this copy made.
    for entry in dirs.iter().rev() {
        let t = Timespec { tv_sec: entry.meta.mtime(), tv_nsec: entry.meta.mtime_nsec() as _ };
        utimensat(&target_dir, entry.rel.as_str(), &Timestamps { last_access: t, last_modification: t }, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_fail(&entry.rel, e.into()))?;
    }
    keep_time(&target_dir, &before).map_err(|e| io_fail("the destination's time", e))?;
    Ok(layer)
}

/// Gives the directory `dir` back the modification time `before` had, which the scan saw
/// (writing into it changed it).
fn keep_time(dir: &File, before: &std::fs::Metadata) -> io::Result<()> {
    let mtime = Timespec { tv_sec: before.mtime(), tv_nsec: before.mtime_nsec() as _ };
    Ok(futimens(dir, &Timestamps { last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT }, last_modification: mtime })?)
}

fn create(parent: &impl AsFd, name: &str) -> io::Result<OwnedFd> {
    Ok(openat(parent, name, OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))?)
}

/// Copies the file `entry` into the new file `out` (at `abs`), gives it its metadata, and
/// appends it to `layer` as `path`; with `learn`, remembers its content hash there. A file up
/// to [`WHOLE_FILE`] is read once into `buf` for all three. A bigger
/// one is copied by the kernel on another thread while the layer reads the source; its
/// header is written before the data is all there, from the metadata the file is given first
/// (its size by truncation, its owner and mode) and the time it is given last. The source
/// must then be unchanged, so that the layer holds exactly the bytes the snapshot does.
#[allow(clippy::too_many_arguments)]
fn copy_file<W: Write>(
    entry: &Entry,
    out: File,
    path: &str,
    abs: &Path,
    opts: &CopyOptions,
    learn: Option<&StatCache>,
    buf: &mut Vec<u8>,
    layer: &mut LayerStream<W>,
    fail: impl Fn(io::Error) -> Error,
) -> Result<(), Error> {
    let diff = |e: forge_layerstore::diff::Error| Error::Store(e.into());
    let src = File::open(&entry.path).map_err(&fail)?;
    buf.clear();
    // One read for the content, one to see the end.
    buf.reserve((entry.meta.len() as usize).min(WHOLE_FILE) + 1);
    (&src).take(WHOLE_FILE as u64 + 1).read_to_end(buf).map_err(&fail)?;
    (&out).write_all(buf).map_err(&fail)?;
    if buf.len() <= WHOLE_FILE {
        set_meta(&out, entry, opts).map_err(&fail)?;
        layer.append_open(path.as_bytes(), abs, &out, None, &buf[..]).map_err(diff)?;
        if let Some(cache) = learn {
            cache.remember(&entry.path, &entry.meta, blake3::hash(buf).into());
        }
        return Ok(());
    }
    let before = src.metadata().map_err(&fail)?;
    out.set_len(before.len()).map_err(&fail)?;
    set_owner_mode(&out, entry, opts).map_err(&fail)?;
    // The layer reads the same open file as the copy (a path opened again could name another
    // file by then), at offsets of its own.
    let rest = ReadAt { file: &src, at: buf.len() as u64 };
    let mut to = out.try_clone().map_err(&fail)?;
    let mut content = Hashing { read: (&buf[..]).chain(rest), hasher: learn.map(|_| blake3::Hasher::new()) };
    let (copied, appended) = std::thread::scope(|s| {
        let copier = s.spawn(|| copy_data(&src, &mut to));
        let appended = layer.append_open(path.as_bytes(), abs, &out, Some(entry.meta.mtime()), &mut content);
        (copier.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), appended)
    });
    copied.map_err(&fail)?;
    appended.map_err(diff)?;
    set_times(&out, entry).map_err(&fail)?;
    let after = src.metadata().map_err(&fail)?;
    let unchanged = |m: &std::fs::Metadata| (m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec());
    if unchanged(&after) != unchanged(&before) || out.metadata().map_err(&fail)?.len() != before.len() {
        return Err(fail(io::Error::other("the source changed while it was copied")));
    }
    if let (Some(cache), Some(hasher)) = (learn, content.hasher) {
        cache.remember(&entry.path, &entry.meta, hasher.finalize().into());
    }
    Ok(())
}

/// Hashes what is read through it, when it has a hasher.
struct Hashing<R> {
    read: R,
    hasher: Option<blake3::Hasher>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Reads `file` from `at` on, by `pread`: the file's own offset is left to another reader.
struct ReadAt<'f> {
    file: &'f File,
    at: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}
