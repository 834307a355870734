//! Applying a layer to a directory without ever writing outside it.
//!
//! `tar::Archive::unpack` is not used: it skips `..` entries silently, knows no whiteouts and
//! turns devices into regular files. Here every entry is placed with `*at` system calls:
//!
//! * entry names are normalised (leading `/` and `.` dropped) and any `..` component is refused;
//! * the parent directory is opened with `openat2(root, parent, RESOLVE_IN_ROOT)`, so symlinks
//!   met on the way (`a -> /`, `a -> ../..`) resolve as if `root` were `/` and can never leave it;
//!   missing parents are created one component at a time the same way;
//! * the final component is never followed: files are created `O_CREAT|O_EXCL|O_NOFOLLOW`,
//!   metadata is set with `AT_SYMLINK_NOFOLLOW`, and an existing entry in the way is removed
//!   first (unless both are directories, which merge);
//! * hard-link targets are resolved in the root the same way, so a link to `/etc/passwd` names
//!   `<root>/etc/passwd`;
//! * device nodes are created only with [`ApplyOptions::device_nodes`].

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::compression::{decompress, Compression, DecompressError};
use crate::diff::whiteout::{OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};
use crate::digest::{Digest, HashingReader};

/// What a `.wh.` entry does to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// The target holds the merged tree: `.wh.x` deletes `x`, `.wh..wh..opq` deletes the
    /// directory's content from earlier layers.
    #[default]
    Delete,
    /// The target is an overlay upperdir-to-be whose lower layers are separate lowerdirs:
    /// `.wh.x` becomes a char 0:0 device `x` and `.wh..wh..opq` the `trusted.overlay.opaque=y`
    /// xattr, exactly as the kernel would have written them.
    OverlayDevice,
}

/// How to apply a layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Whiteout encoding of the target.
    pub whiteouts: WhiteoutMode,
    /// Create block and char device entries; when false they are skipped (and counted).
    pub device_nodes: bool,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// Compression detected from the blob's magic bytes.
    pub compression: Compression,
    /// sha256 of the uncompressed tar stream, to check against the expected diffID.
    pub diff_id: Digest,
    /// Uncompressed size.
    pub uncompressed_size: u64,
    /// Entries read (not counting PAX headers).
    pub entries: u64,
    /// Device entries skipped because [`ApplyOptions::device_nodes`] was off.
    pub skipped_devices: u64,
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The blob's compression cannot be read.
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    /// The tar stream is malformed or ends early.
    #[error("reading layer tar: {0}")]
    Tar(#[source] io::Error),
    /// An entry name or link target would leave the root (`..`) or is not a usable name.
    #[error("refusing entry {path:?}: {reason}")]
    UnsafePath {
        /// The name as found in the tar.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An entry type forge does not apply (e.g. GNU sparse files).
    #[error("entry {path:?} has unsupported tar type {kind:?}")]
    UnsupportedEntry {
        /// The entry's name.
        path: String,
        /// The tar type flag.
        kind: char,
    },
    /// A filesystem operation failed.
    #[error("{op} {path:?} under {root}: {source}")]
    Fs {
        /// What was being done.
        op: &'static str,
        /// The entry path relative to the root.
        path: String,
        /// The target root.
        root: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Applies the layer in `blob` (gzip, zstd or plain, detected) onto the directory `root`.
pub fn apply_layer(
    blob: impl Read,
    root: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats, ExtractError> {
    let (compression, tar_stream) = decompress(blob)?;
    let mut hashed = HashingReader::new(tar_stream);
    let root_fd = rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ExtractError::Fs {
        op: "open",
        path: String::new(),
        root: root.into(),
        source: e.into(),
    })?;
    let mut ap = Applier {
        root,
        root_fd,
        opts,
        written: HashSet::new(),
        dir_times: Vec::new(),
        entries: 0,
        skipped_devices: 0,
    };
    {
        let mut archive = tar::Archive::new(&mut hashed);
        for entry in archive.entries().map_err(ExtractError::Tar)? {
            let entry = entry.map_err(ExtractError::Tar)?;
            ap.entry(entry)?;
        }
    }
    ap.finish_dir_times()?;
    // Hash the padding after the end-of-archive blocks too: the diffID covers the whole stream.
    io::copy(&mut hashed, &mut io::sink()).map_err(ExtractError::Tar)?;
    let (_, diff_id, uncompressed_size) = hashed.finish();
    Ok(ApplyStats {
        compression,
        diff_id,
        uncompressed_size,
        entries: ap.entries,
        skipped_devices: ap.skipped_devices,
    })
}

struct Applier<'a> {
    root: &'a Path,
    root_fd: OwnedFd,
    opts: &'a ApplyOptions,
    /// Paths this layer created: an opaque marker clears only what earlier layers left.
    written: HashSet<Vec<u8>>,
    /// Directory mtimes, set last because creating children changes them.
    dir_times: Vec<(Vec<u8>, i64)>,
    entries: u64,
    skipped_devices: u64,
}

/// A normalised entry path split into parent components and base name.
struct Target {
    full: Vec<u8>,
    parent: Vec<u8>,
    name: Vec<u8>,
}

fn normalize(raw: &[u8]) -> Result<Option<Target>, ExtractError> {
    let unsafe_path = |reason| ExtractError::UnsafePath {
        path: String::from_utf8_lossy(raw).into_owned(),
        reason,
    };
    if raw.contains(&0) {
        return Err(unsafe_path("NUL byte in name"));
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_path("'..' component")),
            c => parts.push(c),
        }
    }
    let Some(name) = parts.pop() else {
        return Ok(None);
    };
    let parent = parts.join(&b'/');
    let full = if parent.is_empty() {
        name.to_vec()
    } else {
        [&parent[..], b"/", name].concat()
    };
    Ok(Some(Target {
        full,
        parent,
        name: name.to_vec(),
    }))
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

impl Applier<'_> {
    fn fs_err(&self, op: &'static str, path: &[u8]) -> impl FnOnce(Errno) -> ExtractError + '_ {
        let path = String::from_utf8_lossy(path).into_owned();
        move |e| ExtractError::Fs {
            op,
            path,
            root: self.root.to_path_buf(),
            source: e.into(),
        }
    }

    fn entry(&mut self, mut entry: tar::Entry<'_, impl Read>) -> Result<(), ExtractError> {
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        self.entries += 1;
        let Some(t) = normalize(&raw)? else {
            // The root itself ("./"): its metadata belongs to whoever made the target.
            return Ok(());
        };

        if t.name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(&t);
        }

        let parent = self.open_parent(&t.parent, true)?;
        let header = entry.header().clone();
        let mode = header.mode().map_err(ExtractError::Tar)? & 0o7777;
        let uid = header.uid().map_err(ExtractError::Tar)?;
        let gid = header.gid().map_err(ExtractError::Tar)?;
        let mtime = header.mtime().map_err(ExtractError::Tar)? as i64;
        let xattrs = pax_xattrs(&mut entry)?;
        let name = os(&t.name);

        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                    _ => {
                        self.remove_at(&parent, &t.name, &t.full)?;
                        rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
                            .map_err(self.fs_err("mkdir", &t.full))?;
                    }
                }
                self.dir_times.push((t.full.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.remove_at(&parent, &t.name, &t.full)?;
                let fd = rustix::fs::openat(
                    &parent,
                    name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(self.fs_err("create", &t.full))?;
                let mut file = File::from(fd);
                io::copy(&mut entry, &mut file).map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::InvalidData
                    | io::ErrorKind::InvalidInput => ExtractError::Tar(e),
                    _ => ExtractError::Fs {
                        op: "write",
                        path: lossy(&t.full),
                        root: self.root.into(),
                        source: e,
                    },
                })?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| ExtractError::UnsafePath {
                        path: lossy(&raw),
                        reason: "symlink without target",
                    })?;
                // The target is stored as data, never resolved here; later entries that pass
                // through it are resolved inside the root by openat2.
                let target = target.into_owned();
                self.remove_at(&parent, &t.name, &t.full)?;
                rustix::fs::symlinkat(os(&target), &parent, name)
                    .map_err(self.fs_err("symlink", &t.full))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| ExtractError::UnsafePath {
                        path: lossy(&raw),
                        reason: "hard link without target",
                    })?;
                let Some(src) = normalize(&target)? else {
                    return Err(ExtractError::UnsafePath {
                        path: lossy(&raw),
                        reason: "hard link to the root",
                    });
                };
                let src_parent = self.open_parent(&src.parent, false)?;
                let src_st =
                    rustix::fs::statat(&src_parent, os(&src.name), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(self.fs_err("stat link target", &src.full))?;
                if FileType::from_raw_mode(src_st.st_mode) == FileType::Directory {
                    return Err(ExtractError::UnsafePath {
                        path: lossy(&raw),
                        reason: "hard link to a directory",
                    });
                }
                let same_inode = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| st.st_ino == src_st.st_ino && st.st_dev == src_st.st_dev);
                if !same_inode {
                    self.remove_at(&parent, &t.name, &t.full)?;
                    // No AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself.
                    rustix::fs::linkat(&src_parent, os(&src.name), &parent, name, AtFlags::empty())
                        .map_err(self.fs_err("link", &t.full))?;
                }
                // A hard link shares the first entry's inode and metadata.
                self.written.insert(t.full);
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if ft != FileType::Fifo && !self.opts.device_nodes {
                    self.skipped_devices += 1;
                    return Ok(());
                }
                // Device numbers are read only for devices: writers often leave them blank
                // for fifos.
                let (major, minor) = if ft == FileType::Fifo {
                    (0, 0)
                } else {
                    (
                        header
                            .device_major()
                            .map_err(ExtractError::Tar)?
                            .unwrap_or(0),
                        header
                            .device_minor()
                            .map_err(ExtractError::Tar)?
                            .unwrap_or(0),
                    )
                };
                self.remove_at(&parent, &t.name, &t.full)?;
                rustix::fs::mknodat(
                    &parent,
                    name,
                    ft,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(self.fs_err("mknod", &t.full))?;
            }
            other => {
                return Err(ExtractError::UnsupportedEntry {
                    path: lossy(&raw),
                    kind: other.as_byte() as char,
                })
            }
        }

        // Owner before mode (chown clears setuid/setgid) and before xattrs (chown drops
        // security.capability); content was written before both for the same reason.
        rustix::fs::chownat(
            &parent,
            name,
            Some(rustix::fs::Uid::from_raw(uid as u32)),
            Some(rustix::fs::Gid::from_raw(gid as u32)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(self.fs_err("chown", &t.full))?;
        if kind != tar::EntryType::Symlink {
            // Linux cannot chmod a symlink; its mode is always 0777.
            rustix::fs::chmodat(&parent, name, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(self.fs_err("chmod", &t.full))?;
        }
        if !xattrs.is_empty() {
            let proc_path = fd_path(&parent, &t.name);
            for (k, v) in &xattrs {
                rustix::fs::lsetxattr(&proc_path, os(k), v, rustix::fs::XattrFlags::empty())
                    .map_err(self.fs_err("setxattr", &t.full))?;
            }
        }
        if kind != tar::EntryType::Directory {
            let ts = Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            };
            rustix::fs::utimensat(
                &parent,
                name,
                &Timestamps {
                    last_access: ts,
                    last_modification: ts,
                },
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(self.fs_err("utimes", &t.full))?;
        }
        self.written.insert(t.full);
        Ok(())
    }

    fn whiteout(&mut self, t: &Target) -> Result<(), ExtractError> {
        self.check_whiteout_name(t)?;
        let parent = match self.opts.whiteouts {
            WhiteoutMode::OverlayDevice => self.open_parent(&t.parent, true)?,
            // Deleting below a directory that does not exist (or is not one) is a no-op.
            WhiteoutMode::Delete => match rustix::fs::openat2(
                &self.root_fd,
                os(if t.parent.is_empty() { b"." } else { &t.parent }),
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
                Err(e) => return Err(self.fs_err("open directory", &t.parent)(e)),
            },
        };
        if t.name == OPAQUE_MARKER {
            match self.opts.whiteouts {
                WhiteoutMode::OverlayDevice => {
                    rustix::fs::lsetxattr(
                        fd_path(&parent, b"."),
                        OVERLAY_OPAQUE_XATTR,
                        b"y",
                        rustix::fs::XattrFlags::empty(),
                    )
                    .map_err(self.fs_err("set opaque xattr", &t.parent))?;
                }
                WhiteoutMode::Delete => self.clear_dir(&parent, &t.parent)?,
            }
            return Ok(());
        }
        let victim = &t.name[WHITEOUT_PREFIX.len()..];
        if victim.starts_with(WHITEOUT_PREFIX) {
            // `.wh..wh.*` other than the opaque marker are aufs internals (plinks etc.): no meaning here.
            return Ok(());
        }
        let victim_full = if t.parent.is_empty() {
            victim.to_vec()
        } else {
            [&t.parent[..], b"/", victim].concat()
        };
        self.remove_at(&parent, victim, &victim_full)?;
        if self.opts.whiteouts == WhiteoutMode::OverlayDevice {
            rustix::fs::mknodat(
                &parent,
                os(victim),
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(self.fs_err("mknod whiteout", &victim_full))?;
        }
        Ok(())
    }

    /// Refuses `.wh.`, `.wh..` and `.wh...`: they would name the directory itself or its parent.
    fn check_whiteout_name(&self, t: &Target) -> Result<(), ExtractError> {
        if t.name == OPAQUE_MARKER {
            return Ok(());
        }
        match &t.name[WHITEOUT_PREFIX.len()..] {
            b"" | b"." | b".." => Err(ExtractError::UnsafePath {
                path: lossy(&t.full),
                reason: "whiteout of no name, '.' or '..'",
            }),
            _ => Ok(()),
        }
    }

    /// Opens the directory `rel` (may be empty: the root) with every symlink on the way resolved
    /// inside the root. With `create`, missing components are made (mode 0755, as tar does).
    fn open_parent(&self, rel: &[u8], create: bool) -> Result<OwnedFd, ExtractError> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let path: &[u8] = if rel.is_empty() { b"." } else { rel };
        match rustix::fs::openat2(&self.root_fd, os(path), flags, Mode::empty(), resolve) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(e) => return Err(self.fs_err("open directory", rel)(e)),
        }
        let mut cur = rustix::fs::openat2(&self.root_fd, ".", flags, Mode::empty(), resolve)
            .map_err(self.fs_err("open root", b""))?;
        let mut prefix_end = 0;
        for comp in rel.split(|&b| b == b'/') {
            prefix_end += comp.len();
            let prefix = &rel[..prefix_end];
            prefix_end += 1;
            cur =
                match rustix::fs::openat2(&self.root_fd, os(prefix), flags, Mode::empty(), resolve)
                {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => {
                        // EEXIST here means the component is a symlink whose target is
                        // missing: refused rather than guessed at.
                        rustix::fs::mkdirat(&cur, os(comp), Mode::from_raw_mode(0o755)).map_err(
                            |e| match e {
                                Errno::EXIST => {
                                    self.fs_err("parent is a dangling symlink", prefix)(e)
                                }
                                e => self.fs_err("mkdir", prefix)(e),
                            },
                        )?;
                        rustix::fs::openat2(
                            &self.root_fd,
                            os(prefix),
                            flags,
                            Mode::empty(),
                            resolve,
                        )
                        .map_err(self.fs_err("open directory", prefix))?
                    }
                    Err(e) => return Err(self.fs_err("open directory", prefix)(e)),
                };
        }
        Ok(cur)
    }

    /// Removes whatever is at `parent/name` (recursively for a directory); absent is fine.
    fn remove_at(&self, parent: &OwnedFd, name: &[u8], full: &[u8]) -> Result<(), ExtractError> {
        match rustix::fs::statat(parent, os(name), AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.fs_err("stat", full)(e)),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                let dir = rustix::fs::openat(
                    parent,
                    os(name),
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(self.fs_err("open directory", full))?;
                self.clear_children(&dir, full, None)?;
                rustix::fs::unlinkat(parent, os(name), AtFlags::REMOVEDIR)
                    .map_err(self.fs_err("rmdir", full))
            }
            Ok(_) => rustix::fs::unlinkat(parent, os(name), AtFlags::empty())
                .map_err(self.fs_err("unlink", full)),
        }
    }

    /// Opaque marker in delete mode: drop the children that earlier layers put in `dir`.
    fn clear_dir(&self, dir: &OwnedFd, rel: &[u8]) -> Result<(), ExtractError> {
        self.clear_children(dir, rel, Some(&self.written))
    }

    /// Removes the children of `dir` except those whose full path is in `keep`.
    fn clear_children(
        &self,
        dir: &OwnedFd,
        rel: &[u8],
        keep: Option<&HashSet<Vec<u8>>>,
    ) -> Result<(), ExtractError> {
        // Names are collected first: deleting while a directory stream is open may skip entries.
        let mut names = Vec::new();
        for ent in rustix::fs::Dir::read_from(dir).map_err(self.fs_err("read directory", rel))? {
            let ent = ent.map_err(self.fs_err("read directory", rel))?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        for n in names {
            let full = if rel.is_empty() {
                n.clone()
            } else {
                [rel, b"/", &n[..]].concat()
            };
            if keep.is_some_and(|k| k.contains(&full)) {
                continue;
            }
            self.remove_at(dir, &n, &full)?;
        }
        Ok(())
    }

    fn finish_dir_times(&self) -> Result<(), ExtractError> {
        for (path, mtime) in &self.dir_times {
            let fd = rustix::fs::openat2(
                &self.root_fd,
                os(path),
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            );
            // A later entry of the same layer may have replaced or removed the directory.
            let Ok(fd) = fd else { continue };
            let ts = Timespec {
                tv_sec: *mtime,
                tv_nsec: 0,
            };
            rustix::fs::futimens(
                &fd,
                &Timestamps {
                    last_access: ts,
                    last_modification: ts,
                },
            )
            .map_err(self.fs_err("utimes", path))?;
        }
        Ok(())
    }
}

/// `/proc/self/fd/<dir>/<name>`: lets path-only calls (lsetxattr) act on `name` inside an
/// already-resolved directory without resolving the parents again; the final component is
/// still not followed because the call is the `l` variant.
fn fd_path(dir: &impl AsFd, name: &[u8]) -> PathBuf {
    let fd: BorrowedFd<'_> = dir.as_fd();
    let mut p = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ));
    p.push(os(name));
    p
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Extended attributes as (name, value) pairs.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The `SCHILY.xattr.*` records of the entry's PAX header.
fn pax_xattrs(entry: &mut tar::Entry<'_, impl Read>) -> Result<Xattrs, ExtractError> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(ExtractError::Tar)? {
        for ext in exts {
            let ext = ext.map_err(ExtractError::Tar)?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                out.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}
