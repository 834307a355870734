//! A container's files from the host: `cp` both ways, `export`, `diff` and `commit`.
//!
//! Every path a user names is resolved *inside* the container's root, as if that root were `/`:
//! `openat2(RESOLVE_IN_ROOT)` makes a symlink met on the way (`/x -> /../../../../etc`, or an
//! absolute `/x -> /etc`) land in the container's `/etc`, never the host's, and a walk never
//! follows a symlink it meets (it records it as a symlink). Files are written into a container
//! by forge-layerstore's layer applier, which places every entry the same way.
//!
//! The root is, for a stopped container, an overlay of its snapshot mounted for the operation
//! under its lock (so it cannot start meanwhile) and unmounted after; for a running one, its
//! init's root (`/proc/<pid>/root`), so its volumes and tmpfs mounts are seen as in docker.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use forge_layerstore::archive::{apply_layer, ApplyOptions, WhiteoutMode};
use forge_layerstore::diff::whiteout::{is_overlay_whiteout, WHITEOUT_PREFIX};
use forge_layerstore::snapshot::Error as SnapshotError;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::containers::{Container, Containers, Lock};
use crate::error::{io, Error};
use crate::state::{read_json, State, Status};

/// What a path inside a root is, symlinks followed inside the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Nothing there.
    Missing,
    /// A directory.
    Dir,
    /// Anything else.
    Other,
}

/// What is at a path inside a root, its last component not followed (docker's path stat, for
/// `cp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// The last component (`/` for the root).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its `st_mode`: type and permission bits.
    pub mode: u32,
    /// Its modification time, seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    /// A symlink's target, as stored.
    pub link_target: Option<String>,
}

/// A directory tree whose paths resolve inside it: a container's root or the host's `/`.
#[derive(Debug)]
pub struct Rootfs {
    fd: OwnedFd,
    /// What to say in errors.
    label: String,
    _mount: Option<ScratchMount>,
    _lock: Option<Lock>,
    /// Whether this is a running container's root rather than its mounted snapshot.
    running: bool,
    /// Whether device nodes are created when writing into it: in a container yes (as docker);
    /// on the host no, or a container's root could hand out a raw disk through a copied `b 8:0`.
    devices: bool,
}

/// An overlay mounted at a scratch directory; unmounted and removed on drop.
#[derive(Debug)]
struct ScratchMount {
    dir: tempfile::TempDir,
}

impl Drop for ScratchMount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(self.dir.path(), rustix::mount::UnmountFlags::DETACH);
    }
}

/// How files are archived out of a tree.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArchiveOptions {
    /// Follow the source path's last component when it is a symlink (`cp -L`), inside the root.
    pub follow: bool,
    /// The owner every entry gets; `None` keeps the files' own (`cp -a`).
    pub owner: Option<(u32, u32)>,
}

impl Rootfs {
    /// The host's own tree (for the host side of `cp`).
    pub fn host() -> Result<Rootfs, Error> {
        let fd = rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| io("opening", "/")(e.into()))?;
        Ok(Rootfs { fd, label: "the host".into(), _mount: None, _lock: None, running: false, devices: false })
    }

    /// Whether this is a running container's live root (rather than its snapshot).
    pub fn is_live(&self) -> bool {
        self.running
    }

    fn path_err(&self, what: &'static str, path: &str) -> impl FnOnce(Errno) -> Error + '_ {
        let path = format!("{path} in {}", self.label);
        move |e| io(what, path)(e.into())
    }

    /// What `path` is, symlinks on the way resolved inside the root; the last one too with
    /// `follow` (a symlink itself is [`PathKind::Other`] without).
    pub fn kind(&self, path: &str, follow: bool) -> Result<PathKind, Error> {
        let (parent, last) = match self.resolve_parent(path, follow) {
            Ok(found) => found,
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(PathKind::Missing),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&parent, &last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Ok(PathKind::Dir),
            Ok(_) => Ok(PathKind::Other),
            Err(Errno::NOENT) => Ok(PathKind::Missing),
            Err(e) => Err(self.path_err("reading", path)(e)),
        }
    }

    /// What is at `path` (its last component not followed), or `None` when nothing is.
    pub fn stat(&self, path: &str) -> Result<Option<PathStat>, Error> {
        let (parent, last) = match self.resolve_parent(path, false) {
            Ok(found) => found,
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let st = match rustix::fs::statat(&parent, &last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.path_err("reading", path)(e)),
        };
        let link_target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            let target = rustix::fs::readlinkat(&parent, &last, Vec::new()).map_err(self.path_err("reading the link", path))?;
            Some(String::from_utf8_lossy(target.as_bytes()).into_owned())
        } else {
            None
        };
        let name = clean(path).file_name().map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned());
        Ok(Some(PathStat { name, size: st.st_size as u64, mode: st.st_mode, mtime: (st.st_mtime, st.st_mtime_nsec as u32), link_target }))
    }

    /// Extracts the tar in `input` under the directory `dir` (entries rebased there, as
    /// [`rebase_archive`] does; `..` refused), owned by `owner` when given.
    pub fn extract_under(&self, input: impl Read + Send, dir: &str, owner: Option<(u32, u32)>) -> Result<(), Error> {
        if self.kind(dir, true)? != PathKind::Dir {
            return Err(Error::Copy { message: format!("{dir} in {} is not a directory", self.label) });
        }
        let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| io("making a pipe for", dir)(e.into()))?;
        let (reader, writer) = (File::from(reader), File::from(writer));
        std::thread::scope(|s| {
            let rebased = s.spawn(move || rebase_archive(input, Path::new(dir), owner, writer));
            let extracted = self.extract(reader);
            let rebased = rebased.join().unwrap_or_else(|_| Err(Error::Copy { message: "the archive's rewriting thread panicked".into() }));
            // The rewriter's error explains an extractor that saw the stream end early.
            rebased.and(extracted)
        })
    }

    /// Writes a tar of the file or tree at `path` to `out`, its top entry named `name`
    /// (relative; `""`: the top directory's entries at the archive's top, as `export` writes
    /// them).
    /// Symlinks inside are archived as symlinks, never followed.
    pub fn archive(&self, path: &str, name: &str, opts: &ArchiveOptions, out: impl Write) -> Result<(), Error> {
        let (parent, last) = self.resolve_parent(path, opts.follow)?;
        // Tar names are relative; the extracting side decides where `/` is.
        let name = name.trim_start_matches('/');
        let mut tar = tar::Builder::new(out);
        let mut walk = Walk { tar: &mut tar, owner: opts.owner, links: HashMap::new(), label: &self.label };
        walk.entry(parent.as_fd(), &last, Path::new(name)).map_err(|e| e.into_error(path))?;
        tar.finish().map_err(io("writing the archive of", path))
    }

    /// The directory holding `path`'s last component, opened inside the root, and that
    /// component (`.` for the root itself); with `follow`, a symlink last component is
    /// followed inside the root first.
    fn resolve_parent(&self, path: &str, follow: bool) -> Result<(OwnedFd, OsString), Error> {
        let mut path = clean(path);
        for _ in 0..40 {
            let (parent, last) = match path.file_name() {
                Some(last) => (path.parent().unwrap_or(Path::new("/")).to_path_buf(), last.to_os_string()),
                None => (PathBuf::from("/"), OsString::from(".")),
            };
            let dir = rustix::fs::openat2(&self.fd, rel(&parent), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), in_root())
                .map_err(self.path_err("opening the directory of", &path.to_string_lossy()))?;
            if follow {
                match rustix::fs::readlinkat(&dir, &last, Vec::new()) {
                    Ok(target) => {
                        let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                        path = clean(&parent.join(target).to_string_lossy());
                        continue;
                    }
                    Err(Errno::INVAL | Errno::NOENT) => {}
                    Err(e) => return Err(self.path_err("reading the link", &path.to_string_lossy())(e)),
                }
            }
            return Ok((dir, last));
        }
        Err(self.path_err("following", &path.to_string_lossy())(Errno::LOOP))
    }

    /// Applies the tar in `input` (entry names relative to the root) to the tree: every entry
    /// is placed inside the root, whatever symlinks are on its way (forge-layerstore's applier);
    /// device nodes are skipped on the host.
    pub fn extract(&self, input: impl Read) -> Result<(), Error> {
        let root = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        let opts = ApplyOptions { whiteouts: WhiteoutMode::Delete, device_nodes: self.devices };
        apply_layer(input, &root, &opts).map_err(|e| Error::Copy { message: format!("writing into {}: {e}", self.label) })?;
        Ok(())
    }
}

impl Containers {
    /// The root of `container` for reading (`write: false`) or writing files into it.
    ///
    /// A stopped container's snapshot is mounted for as long as the handle lives, under the
    /// container's lock; a running container's root is its init's.
    pub fn rootfs(&self, container: &Container, write: bool) -> Result<Rootfs, Error> {
        let id = container.id();
        if let Some(lock) = self.try_lock(id)? {
            return self.mounted(container, write, Some(lock));
        }
        let state: State = read_json(&self.dir_of(id).join("state.json"))?;
        if state.status != Status::Running || state.pid == 0 {
            return Err(Error::WrongStatus { id: id.into(), status: state.status, what: "another forge command is using it; try again" });
        }
        let proc_root = format!("/proc/{}/root", state.pid);
        let fd = rustix::fs::open(&proc_root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| io("opening the root of", &proc_root)(e.into()))?;
        // Opened before checking: a PID reused after the check cannot slip in.
        if crate::sys::start_time(state.pid) != Some(state.pid_start) {
            return Err(Error::WrongStatus { id: id.into(), status: Status::Exited, what: "it exited while its files were being opened" });
        }
        Ok(Rootfs { fd, label: format!("container {}", container.short_id()), _mount: None, _lock: None, running: true, devices: true })
    }

    /// The container's own files, without its mounts (`export`): its writable layer over the
    /// image's, mounted read-only; a running container's files may change while they are read.
    pub fn snapshot_view(&self, container: &Container) -> Result<Rootfs, Error> {
        let lock = self.try_lock(container.id())?;
        self.mounted(container, false, lock)
    }

    fn mounted(&self, container: &Container, write: bool, lock: Option<Lock>) -> Result<Rootfs, Error> {
        let dirs = self.snapshot_dirs(container)?;
        let (upper, work) = dirs.upper.clone().expect("checked by snapshot_dirs");
        let dir = tempfile::Builder::new().prefix("forge-cp-").tempdir_in(self.scratch()?).map_err(io("making a mountpoint for", container.id()))?;
        let mounted = if write {
            forge_sandbox::mount_overlay(&dirs.lowerdirs, Some((&upper, &work)), dir.path())
        } else {
            // The writable layer on top of the image's, read-only: nothing can change it.
            let layers: Vec<PathBuf> = std::iter::once(upper).chain(dirs.lowerdirs).collect();
            forge_sandbox::mount_overlay(&layers, None, dir.path())
        };
        mounted.map_err(io("mounting the container's files at", dir.path()))?;
        let mount = ScratchMount { dir };
        let fd = rustix::fs::open(mount.dir.path(), OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| io("opening", mount.dir.path())(e.into()))?;
        Ok(Rootfs { fd, label: format!("container {}", container.short_id()), _mount: Some(mount), _lock: lock, running: false, devices: true })
    }

    /// The container's writable layer as a read-only tree of its own, with the image's layers
    /// below it (for `diff` and `commit`), and the lock that keeps it from starting.
    fn snapshot_dirs(&self, container: &Container) -> Result<forge_layerstore::snapshot::OverlayDirs, Error> {
        let dirs = self.store().snapshots().dirs(&container.config.snapshot).map_err(|source| Error::Snapshot { what: "finding the container's writable layer", source })?;
        if dirs.upper.is_none() || dirs.lowerdirs.is_empty() {
            return Err(Error::Snapshot { what: "finding the container's writable layer", source: SnapshotError::NotFound(container.config.snapshot.clone()) });
        }
        Ok(dirs)
    }

    fn scratch(&self) -> Result<PathBuf, Error> {
        self.store().tmp_dir().map_err(|source| Error::Store { what: "making scratch space", source })
    }

    /// docker's `diff`: what the container changed, `(kind, path)` sorted by path, kind `A`
    /// added, `C` changed, `D` deleted.
    pub fn changes(&self, container: &Container) -> Result<Vec<(char, String)>, Error> {
        let dirs = self.snapshot_dirs(container)?;
        let (upper, _) = dirs.upper.clone().expect("checked by snapshot_dirs");
        let mut out = BTreeMap::new();
        changes_in(&upper, Path::new("/"), &dirs.lowerdirs, &mut out)?;
        Ok(out.into_iter().map(|(p, k)| (k, p)).collect())
    }

    /// The container's writable layer (its upperdir), for `commit`; a running container's
    /// files may change while it is read, as in docker's `commit --pause=false`.
    pub fn writable_layer(&self, container: &Container) -> Result<PathBuf, Error> {
        Ok(self.snapshot_dirs(container)?.upper.expect("checked by snapshot_dirs").0)
    }
}

/// Walks an upperdir: a whiteout is a deletion, an entry some lower layer has is a change,
/// anything else an addition (with everything below it).
fn changes_in(dir: &Path, at: &Path, lowers: &[PathBuf], out: &mut BTreeMap<String, char>) -> Result<(), Error> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(io("listing", dir))?.collect::<Result<_, _>>().map_err(io("listing", dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = at.join(entry.file_name());
        let meta = entry.path().symlink_metadata().map_err(io("reading", entry.path()))?;
        let shown = path.to_string_lossy().into_owned();
        if is_overlay_whiteout(&meta) {
            out.insert(shown, 'D');
            continue;
        }
        let relative = path.strip_prefix("/").expect("absolute");
        let in_lower = lowers.iter().any(|l| l.join(relative).symlink_metadata().is_ok());
        out.insert(shown, if in_lower { 'C' } else { 'A' });
        if meta.is_dir() {
            changes_in(&entry.path(), &path, lowers, out)?;
        }
    }
    Ok(())
}

/// `path` made absolute and lexically clean: `.` and `..` resolved as in the root (`/..` is
/// `/`), as docker cleans the paths it is given.
fn clean(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn rel(path: &Path) -> &Path {
    match path.strip_prefix("/") {
        Ok(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// A tar writer walking a tree by file descriptors: each entry is opened relative to its
/// parent's descriptor without following symlinks, so no symlink (nor one swapped in by a
/// running container meanwhile) can lead the walk out of the tree.
struct Walk<'a, W: Write> {
    tar: &'a mut tar::Builder<W>,
    owner: Option<(u32, u32)>,
    /// Files with several links already written: (device, inode) → their name.
    links: HashMap<(u64, u64), PathBuf>,
    label: &'a str,
}

/// A walk's failure, with the entry it met.
struct WalkError {
    name: PathBuf,
    what: &'static str,
    source: io::Error,
}

impl WalkError {
    fn into_error(self, top: &str) -> Error {
        let name = if self.name.as_os_str().is_empty() { PathBuf::from(top) } else { self.name };
        Error::Io { what: self.what, path: name, source: self.source }
    }
}

impl<W: Write> Walk<'_, W> {
    fn entry(&mut self, dir: BorrowedFd<'_>, name: &OsStr, tar_name: &Path) -> Result<(), WalkError> {
        let err = |what: &'static str| move |e: io::Error| WalkError { name: tar_name.to_path_buf(), what, source: e };
        if name.as_bytes().starts_with(WHITEOUT_PREFIX) {
            return Err(err("copying")(io::Error::new(io::ErrorKind::InvalidInput, format!("{}: names starting with \".wh.\" mean deletions in image layers and cannot be copied", self.label))));
        }
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| err("reading")(e.into()))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        let mut header = tar::Header::new_gnu();
        header.set_mode(st.st_mode & 0o7777);
        let (uid, gid) = self.owner.unwrap_or((st.st_uid, st.st_gid));
        header.set_uid(uid.into());
        header.set_gid(gid.into());
        header.set_mtime(st.st_mtime.max(0) as u64);
        header.set_size(0);
        let top = tar_name.as_os_str().is_empty();
        match kind {
            FileType::Directory => {
                let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).map_err(|e| err("opening")(e.into()))?;
                if !top {
                    header.set_entry_type(tar::EntryType::Directory);
                    self.tar.append_data(&mut header, tar_name, io::empty()).map_err(err("archiving"))?;
                }
                let mut names = Vec::new();
                for e in rustix::fs::Dir::read_from(&fd).map_err(|e| err("listing")(e.into()))? {
                    let e = e.map_err(|e| err("listing")(e.into()))?;
                    let n = e.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        names.push(OsStr::from_bytes(n).to_os_string());
                    }
                }
                names.sort();
                for n in names {
                    self.entry(fd.as_fd(), &n, &tar_name.join(&n))?;
                }
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| err("reading the link")(e.into()))?;
                header.set_entry_type(tar::EntryType::Symlink);
                self.tar.append_link(&mut header, tar_name, OsStr::from_bytes(target.as_bytes())).map_err(err("archiving"))?;
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)) {
                        header.set_entry_type(tar::EntryType::Link);
                        let first = first.clone();
                        return self.tar.append_link(&mut header, tar_name, first).map_err(err("archiving"));
                    }
                    self.links.insert((st.st_dev, st.st_ino), tar_name.to_path_buf());
                }
                let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).map_err(|e| err("opening")(e.into()))?;
                let file = File::from(fd);
                let size = file.metadata().map_err(err("reading"))?.len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(size);
                // A file that shrinks while it is read (a running container's) is padded with
                // zeros, one that grows cut: the archive stays well formed.
                let data = (&file).take(size).chain(io::repeat(0)).take(size);
                self.tar.append_data(&mut header, tar_name, data).map_err(err("archiving"))?;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                header.set_entry_type(match kind {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                header.set_device_major(rustix::fs::major(st.st_rdev)).map_err(err("archiving"))?;
                header.set_device_minor(rustix::fs::minor(st.st_rdev)).map_err(err("archiving"))?;
                self.tar.append_data(&mut header, tar_name, io::empty()).map_err(err("archiving"))?;
            }
            // Sockets and the like have no place in an archive (docker skips them too).
            _ => {}
        }
        Ok(())
    }
}

/// Rewrites the tar in `input` into `out` with every entry (and hard-link target) moved under
/// `prefix`; entries naming `..` or whiteouts are refused. Ownership becomes `owner` when given.
pub fn rebase_archive(input: impl Read, prefix: &Path, owner: Option<(u32, u32)>, out: impl Write) -> Result<(), Error> {
    let bad = |message: String| Error::Copy { message };
    let mut archive = tar::Archive::new(input);
    let mut tar = tar::Builder::new(out);
    let entries = archive.entries().map_err(|e| bad(format!("reading the archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading the archive: {e}")))?;
        let name = entry.path().map_err(|e| bad(format!("reading the archive: {e}")))?.into_owned();
        let moved = under(prefix, &name).ok_or_else(|| bad(format!("refusing archive entry {name:?}: it names a parent directory or a whiteout")))?;
        let mut header = entry.header().clone();
        if let Some((uid, gid)) = owner {
            header.set_uid(uid.into());
            header.set_gid(gid.into());
        }
        let kind = header.entry_type();
        let written = if kind.is_hard_link() || kind.is_symlink() {
            let target = entry.link_name().map_err(|e| bad(format!("reading the archive: {e}")))?.ok_or_else(|| bad(format!("archive entry {name:?} is a link without a target")))?.into_owned();
            let target = if kind.is_hard_link() { under(prefix, &target).ok_or_else(|| bad(format!("refusing hard link {name:?} to {target:?}")))? } else { target };
            tar.append_link(&mut header, &moved, target)
        } else if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() || kind.is_gnu_longname() || kind.is_gnu_longlink() {
            continue;
        } else {
            tar.append_data(&mut header, &moved, &mut entry)
        };
        written.map_err(|e| bad(format!("rewriting archive entry {name:?}: {e}")))?;
    }
    tar.finish().map_err(|e| bad(format!("rewriting the archive: {e}")))
}

fn under(prefix: &Path, name: &Path) -> Option<PathBuf> {
    let mut out = rel(prefix).to_path_buf();
    for c in name.components() {
        match c {
            Component::Normal(n) if n.as_bytes().starts_with(WHITEOUT_PREFIX) => return None,
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_inside_the_root() {
        assert_eq!(clean("../../etc/./passwd"), PathBuf::from("/etc/passwd"));
        assert_eq!(clean("/a/b/../../../.."), PathBuf::from("/"));
        assert_eq!(rel(&clean("/")), Path::new("."));
        assert_eq!(under(Path::new("/dst"), Path::new("./a/b")), Some(PathBuf::from("dst/a/b")));
        assert_eq!(under(Path::new("/dst"), Path::new("a/../../x")), None);
        assert_eq!(under(Path::new("/dst"), Path::new("a/.wh.x")), None);
    }
}
