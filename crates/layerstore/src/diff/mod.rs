//! Layer creation: a filesystem change set becomes a deterministic OCI layer tar.
//!
//! Two sources are supported (see [`LayerSource`]):
//!
//! * an overlayfs **upperdir** after a RUN step: the upperdir already *is* the change set, so it
//!   is scanned directly ([`overlay`]); char 0:0 devices become `.wh.<name>` and opaque
//!   directories get a `.wh..wh..opq` entry;
//! * two **plain directories** (lower vs upper), for COPY layers and the rootless fallback
//!   ([`dirs`]): added and changed entries are written, removed ones become whiteouts.
//!
//! # Overlay mount options the sandbox must use
//!
//! Mount RUN steps with `redirect_dir=off,metacopy=off,index=off` (pass them explicitly even
//! where they are the module defaults):
//!
//! * `redirect_dir=off`: with redirects on, renaming a lower directory only records a
//!   `trusted.overlay.redirect` xattr pointing at the old path, so the upperdir no longer holds
//!   the directory's content and a tar of it would lose files. With it off the kernel copies the
//!   whole directory up and whiteouts the old name, which a layer can express.
//! * `metacopy=off`: with metacopy a chmod/chown copies up only metadata and the data stays in
//!   the lowerdir (`trusted.overlay.metacopy`); the diff would write an empty file. The scan
//!   refuses such files ([`Error::OverlayFeature`]) rather than produce a wrong layer.
//! * `index=off`: the inode index lets overlay keep hard links of lower files intact across
//!   copy-up; it needs a stable lower (file handles) and leaves an `index/` in workdir that a
//!   reused snapshot must not carry. Without it a copied-up hard link is a separate file in the
//!   upperdir, which is what the layer then records.
//!
//! # Determinism
//!
//! Entries are written parent first, siblings sorted by name bytes; metadata is taken as on disk
//! (mode, uid/gid, xattrs, mtime seconds) with mtimes clamped to `source_date_epoch` when given;
//! PAX records appear only when ustar cannot hold a value. The same tree gives the same diffID,
//! and with the same [`Compression`] the same digest.

pub mod dirs;
pub mod overlay;
mod stream;
mod tar_writer;
pub mod whiteout;

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::archive::compression::Compression;
use crate::digest::Digest;
pub use stream::LayerStream;
use tar_writer::{EntryMeta, Kind, TarWriter};

/// Output buffer in front of the compressor: tar writes 512-byte headers, which would otherwise
/// reach the codec (or the file, uncompressed) one block at a time.
const WRITE_BUFFER: usize = 256 * 1024;

/// Where the change set of a layer comes from.
#[derive(Debug, Clone, Copy)]
pub enum LayerSource<'a> {
    /// An overlayfs upperdir (not mounted for writing while it is read).
    OverlayUpper(&'a Path),
    /// `upper` compared with `lower`; with `lower: None` every entry of `upper` is added.
    Dirs {
        /// The tree before the change, if any.
        lower: Option<&'a Path>,
        /// The tree after the change.
        upper: &'a Path,
    },
}

/// How to write a layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerOptions {
    /// Blob compression; gzip by default.
    pub compression: Compression,
    /// When set, no entry's mtime is later than this (seconds since the epoch). The library
    /// never reads `SOURCE_DATE_EPOCH` itself: the caller passes it.
    pub source_date_epoch: Option<i64>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 of the blob.
    pub digest: Digest,
    /// Blob size in bytes.
    pub size: u64,
    /// Uncompressed tar size in bytes.
    pub uncompressed_size: u64,
    /// OCI media type matching the compression.
    pub media_type: &'static str,
}

/// Why a layer could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the source tree failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file or directory being read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the blob failed (including a file changing size while it was read).
    #[error("writing layer: {0}")]
    Write(#[source] io::Error),
    /// The upperdir uses an overlay feature whose changes a layer tar cannot express.
    #[error("{path} uses overlay {feature}; mount with redirect_dir=off,metacopy=off,index=off")]
    OverlayFeature {
        /// The offending entry.
        path: PathBuf,
        /// `redirect_dir` or `metacopy`.
        feature: &'static str,
    },
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the layer for `source` into `out` and returns its digests.
///
/// Memory stays flat: files are streamed through the tar writer, the compressor and both
/// hashers; only directory listings and the hard-link table (files with `nlink > 1`) are held.
pub fn write_layer<W: Write>(
    source: &LayerSource<'_>,
    opts: &LayerOptions,
    out: W,
) -> Result<LayerInfo, Error> {
    let mut layer = LayerStream::new(opts, out)?;
    layer.write_source(source)?;
    Ok(layer.finish()?.0)
}

/// Reads the metadata of `abs` (already lstat'ed into `st`) into an entry named `rel`.
/// Returns `None` for sockets, which a layer cannot carry (they are recreated by whoever listens).
fn read_entry(abs: &Path, rel: Vec<u8>, st: &Metadata) -> Result<Option<EntryMeta>, Error> {
    let ft = st.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File(st.len())
    } else if ft.is_symlink() {
        let target = std::fs::read_link(abs).map_err(read_err(abs))?;
        Kind::Symlink(target.as_os_str().as_bytes().to_vec())
    } else if ft.is_char_device() {
        Kind::Char(rustix::fs::major(st.rdev()), rustix::fs::minor(st.rdev()))
    } else if ft.is_block_device() {
        Kind::Block(rustix::fs::major(st.rdev()), rustix::fs::minor(st.rdev()))
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        return Ok(None);
    };
    Ok(Some(EntryMeta {
        path: rel,
        kind,
        mode: st.mode() & 0o7777,
        uid: st.uid().into(),
        gid: st.gid().into(),
        mtime: st.mtime(),
        xattrs: read_xattrs(abs)?,
    }))
}

/// Extended attributes as (name, value) pairs.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// All xattrs of `abs` (not following a final symlink), sorted by name. The namespaces are
/// whatever the filesystem returns: security.capability, user.*, and trusted.* as root.
fn read_xattrs(abs: &Path) -> Result<Xattrs, Error> {
    xattrs_with(
        abs,
        |buf| rustix::fs::llistxattr(abs, buf),
        |name, buf| rustix::fs::lgetxattr(abs, name, buf),
    )
}

/// [`read_xattrs`] of an open file or directory (no path lookup); `abs` names it in errors.
fn read_xattrs_fd(fd: &File, abs: &Path) -> Result<Xattrs, Error> {
    xattrs_with(
        abs,
        |buf| rustix::fs::flistxattr(fd, buf),
        |name, buf| rustix::fs::fgetxattr(fd, name, buf),
    )
}

fn xattrs_with(
    abs: &Path,
    mut list: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
    mut get: impl FnMut(&std::ffi::OsStr, &mut [u8]) -> rustix::io::Result<usize>,
) -> Result<Xattrs, Error> {
    let names = match xattr_buf(&mut list) {
        Ok(n) => n,
        // Filesystems without xattr support have, by definition, none.
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(read_err(abs)(e.into())),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::OsStr::from_bytes(name);
        match xattr_buf(|buf| get(cname, buf)) {
            Ok(value) => out.push((name.to_vec(), value)),
            // Removed between list and get.
            Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(read_err(abs)(e.into())),
        }
    }
    out.sort();
    Ok(out)
}

/// Runs an xattr call into a buffer that grows on ERANGE. (A zero-length probe for the size
/// returns 0 through rustix's slice buffers, so the size is found by growing instead.)
fn xattr_buf(
    mut call: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    // Linux caps both a value and a name list at 64 KiB.
    let mut size = 4096;
    loop {
        let mut buf = vec![0u8; size];
        match call(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) if size < 1 << 20 => size *= 4,
            Err(e) => return Err(e),
        }
    }
}

/// Hard-link grouping among the files written to one layer: the first path seen for a
/// (dev, inode) is written as a file, later ones as links to it.
#[derive(Default)]
pub(crate) struct HardLinks {
    first: HashMap<(u64, u64), Vec<u8>>,
}

impl HardLinks {
    /// Turns `entry` into a hard link if an earlier entry of this layer is the same inode.
    fn link_or_record(&mut self, entry: &mut EntryMeta, st: &Metadata) {
        if !matches!(entry.kind, Kind::File(_)) || st.nlink() < 2 {
            return;
        }
        match self.first.get(&(st.dev(), st.ino())) {
            Some(target) => {
                entry.kind = Kind::HardLink(target.clone());
                // The inode's xattrs travel with the first entry; a link entry has none.
                entry.xattrs.clear();
            }
            None => {
                self.first.insert((st.dev(), st.ino()), entry.path.clone());
            }
        }
    }
}

/// Appends `entry`, streaming the file at `abs` when it is a regular file.
fn append_entry<W: Write>(
    tar: &mut TarWriter<W>,
    abs: &Path,
    entry: &EntryMeta,
) -> Result<(), Error> {
    if let Kind::File(_) = entry.kind {
        // O_NOFOLLOW: the entry was lstat'ed as a regular file; if it was swapped for a symlink
        // since, fail rather than archive whatever it points at.
        let file = File::options()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(abs)
            .map_err(read_err(abs))?;
        tar.append(entry, file).map_err(Error::Write)
    } else {
        tar.append(entry, io::empty()).map_err(Error::Write)
    }
}

/// Joins a layer-relative parent path and a base name.
fn child_path(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        p.extend_from_slice(parent);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The names in directory `dir`, sorted by bytes (readdir order is not stable across runs).
fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, Error> {
    let mut names = std::fs::read_dir(dir)
        .map_err(read_err(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err(dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}
