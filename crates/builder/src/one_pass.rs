//! The one-pass COPY: a directory copied to a destination that did not exist is written
//! straight into the snapshot's upperdir, and its layer tar is made from the same reads.
//!
//! When the destination is new, the merged tree below it is exactly what the copy writes, so
//! the overlay mount (where every lookup and create costs) is needed only to resolve the
//! destination and create it (copying up its parents). After that the mount is gone; each
//! source file is read once into a buffer that goes both to the new file in the upperdir and
//! to the layer. The layer starts with a scan of the upperdir as it is then (the destination's
//! parents and the empty destination) and continues with the copied entries in the order the
//! scan of the finished upperdir would give (parents first, siblings by name), each with the
//! metadata read back from its own fd: the bytes, and so the digests, are those of the diff of
//! the finished upperdir. Any other COPY goes through the mount as before (`files.rs`).

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use forge_layerstore::archive::Compression;
use forge_layerstore::diff::{LayerInfo, LayerOptions, LayerStream};
use forge_layerstore::Store;
use rustix::fs::{futimens, mkdirat, openat, utimensat, AtFlags, Mode, OFlags, Timespec, Timestamps, UTIME_OMIT};

use crate::error::{At, StepErrorKind};
use crate::files::{copy_data, set_meta, set_owner_mode, write_entry, CopyOptions, InlineFile};
use crate::rootfs::Root;
use crate::source::{Entry, Matched};
use crate::Error;

/// Files up to this size are read whole into memory once; larger ones are copied in the
/// kernel where it can and read back from the new file for the tar.
const WHOLE_FILE: usize = 1 << 20;

/// Whether the copy can take the one-pass path: one directory match, nothing inline, no
/// `--parents`, names the walk kept byte for byte, and nothing at `dest` yet. If so, creates
/// the destination through the mount and returns its path relative to the root.
pub(crate) fn claim(root: &Root, matches: &[Matched], inline: &[InlineFile], dest: &str, opts: &CopyOptions) -> io::Result<Option<String>> {
    let [m] = matches else { return Ok(None) };
    if m.remote || !m.is_dir() || !inline.is_empty() || opts.parents {
        return Ok(None);
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

/// Copies `m`'s contents into `target` (relative to `upper`, made by [`claim`]) and writes the
/// layer of the whole upperdir into `store`. The overlay must no longer be mounted. With
/// `lazy`, a plain layer is only hashed: the store makes its tar from the committed snapshot
/// when it is first read (see `forge_layerstore::snapshot_blob`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy(store: &Store, at: &At, upper: &Path, target: &str, m: &Matched, opts: &CopyOptions, layer_opts: &LayerOptions, lazy: bool) -> Result<LayerInfo, Error> {
    let diff = |e: forge_layerstore::diff::Error| Error::Store(e.into());
    if lazy && layer_opts.compression == Compression::None {
        let layer = LayerStream::new(layer_opts, io::sink()).map_err(diff)?;
        return Ok(write(at, upper, target, m, opts, layer)?.finish().map_err(diff)?.0);
    }
    let layer = write(at, upper, target, m, opts, store.stream_layer(layer_opts)?)?;
    Ok(store.commit_layer(layer)?)
}

/// [`copy`]'s copy, the layer's entries written into `layer` from the same reads.
fn write<W: Write>(at: &At, upper: &Path, target: &str, m: &Matched, opts: &CopyOptions, mut layer: LayerStream<W>) -> Result<LayerStream<W>, Error> {
    let io_fail = |what: &str, e: io::Error| at.fail(StepErrorKind::Io, format!("copying {} to /{target}: {what}: {e}", if m.rel.is_empty() { "." } else { &m.rel }));
    let upper_root = Root::open(upper).map_err(|e| io_fail("opening the snapshot", e))?;
    let target_dir = File::from(upper_root.open_at(target, OFlags::DIRECTORY | OFlags::RDONLY).map_err(|e| io_fail("opening the destination", e))?);
    let before = target_dir.metadata().map_err(|e| io_fail("reading the destination", e))?;
    let diff = |e: forge_layerstore::diff::Error| Error::Store(e.into());
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
            let mut out = File::from(create(parent, name).map_err(fail)?);
            let whole = copy_file(entry, &mut out, &mut buf, opts).map_err(fail)?;
            if whole {
                layer.append_open(path.as_bytes(), &abs, &out, None, &buf[..]).map_err(diff)?;
            } else {
                (&out).rewind().map_err(fail)?;
                layer.append_open(path.as_bytes(), &abs, &out, None, &out).map_err(diff)?;
            }
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
    // The destination keeps the time the scan saw (writing into it changed it).
    let mtime = Timespec { tv_sec: before.mtime(), tv_nsec: before.mtime_nsec() as _ };
    futimens(&target_dir, &Timestamps { last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT }, last_modification: mtime }).map_err(|e| io_fail("the destination's time", e.into()))?;
    Ok(layer)
}

fn create(parent: &impl AsFd, name: &str) -> io::Result<OwnedFd> {
    Ok(openat(parent, name, OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))?)
}

/// Copies the file `entry` into `out` and gives it its metadata. Returns true when the whole
/// content is in `buf`; else `out` holds more and must be read back.
fn copy_file(entry: &Entry, out: &mut File, buf: &mut Vec<u8>, opts: &CopyOptions) -> io::Result<bool> {
    let src = File::open(&entry.path)?;
    buf.clear();
    // One read for the content, one to see the end.
    buf.reserve((entry.meta.len() as usize).min(WHOLE_FILE) + 1);
    (&src).take(WHOLE_FILE as u64 + 1).read_to_end(buf)?;
    out.write_all(buf)?;
    let whole = buf.len() <= WHOLE_FILE;
    if !whole {
        copy_data(&src, out)?;
    }
    set_meta(&*out, entry, opts)?;
    Ok(whole)
}
