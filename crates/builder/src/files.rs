//! Writing COPY and ADD sources into a mounted rootfs, with Docker's placement rules: a
//! directory's contents (not the directory) go to the destination; a file goes to `dest` itself
//! unless `dest` ends in `/`, already is a directory, or several sources are copied.
//!
//! Every write is relative to a directory fd opened inside the rootfs ([`Root`]), so a symlink
//! in the image cannot send a file outside it.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{
    fchown, fchmod, futimens, mkdirat, mknodat, openat, openat2, statat, symlinkat, unlinkat, utimensat, AtFlags,
    FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid,
};

use crate::error::{Fault, StepErrorKind};
use crate::rootfs::{real_path, Root};
use crate::source::{Entry, Matched};

/// How to copy.
#[derive(Debug, Clone, Default)]
pub(crate) struct CopyOptions {
    /// `--chown`, resolved; `None` keeps the source's owner for stage and image sources and
    /// uses root for the context.
    pub(crate) owner: Option<(u32, u32)>,
    /// Whether the source is the context (owned by root in the image unless `--chown`).
    pub(crate) from_context: bool,
    /// `--chmod`.
    pub(crate) chmod: Option<u32>,
    /// ADD: local tar archives are extracted instead of copied.
    pub(crate) extract_archives: bool,
    /// `--parents`: keep each match's path below the destination.
    pub(crate) parents: bool,
}

/// A file given inline (a COPY heredoc).
#[derive(Debug, Clone)]
pub(crate) struct InlineFile {
    pub(crate) name: String,
    pub(crate) content: Vec<u8>,
}

/// Copies `matches` and `inline` files to `dest` (absolute, in the image) inside `root`.
pub(crate) fn copy_into(root: &Root, matches: &[Matched], inline: &[InlineFile], dest: &str, opts: &CopyOptions) -> Result<(), Fault> {
    let io = |message: String| Fault::new(StepErrorKind::Io, message);
    let count = matches.len() + inline.len();
    let dest_is_dir = dest_is_dir(root, dest);
    // A file destination that is a symlink is written through.
    let dest_file = if dest_is_dir { dest.to_string() } else { root.follow(dest).map_err(|e| io(format!("{dest}: {e}")))? };
    if count > 1 && !dest_is_dir {
        return Err(Fault::new(
            StepErrorKind::InvalidInstruction,
            "When using COPY with more than one source file, the destination must be a directory and end with a /",
        ));
    }
    let dir_owner = opts.owner.unwrap_or((0, 0));
    // Directories the copy creates get `--chmod` too (BuildKit's CreateDestPath with a mode).
    let dir_mode = opts.chmod.unwrap_or(0o755);
    let err = |what: &str, e: io::Error| io(format!("{what}: {e}"));
    for m in matches {
        let parent_rel = if opts.parents { Path::new(&m.rel).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default() } else { String::new() };
        let base = format!("{}/{}", dest.trim_end_matches('/'), parent_rel);
        if m.is_dir() {
            let target = if opts.parents { format!("{base}/{}", Path::new(&m.rel).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()) } else { dest.to_string() };
            let dir = root.mkdir_all(&target, dir_owner, dir_mode).map_err(|e| err(&target, e))?;
            copy_tree(&dir, &m.entries, opts).map_err(|e| io(format!("copying {} to {target}: {e}", m.rel)))?;
            continue;
        }
        let entry = &m.entries[0];
        let (dir_path, file_name) = if dest_is_dir || opts.parents { (base.clone(), m.name()) } else { split_dest(&dest_file) };
        let dir = root.mkdir_all(&dir_path, dir_owner, dir_mode).map_err(|e| err(&dir_path, e))?;
        let opts_owner = opts.owner;
        if opts.extract_archives && !m.remote {
            if let Some(archive) = open_archive(&entry.path).map_err(|e| err(&m.rel, e))? {
                let target = if dest_is_dir { dir } else { root.mkdir_all(dest, dir_owner, dir_mode).map_err(|e| err(dest, e))? };
                let real = real_path(&target).map_err(|e| err(dest, e))?;
                let opts = forge_layerstore::archive::ApplyOptions { whiteouts: forge_layerstore::archive::WhiteoutMode::Delete, device_nodes: false };
                forge_layerstore::archive::apply_layer(archive, &real, &opts).map_err(|e| io(format!("extracting {}: {e}", m.rel)))?;
                if let Some(owner) = opts_owner {
                    let names = open_archive(&entry.path).map_err(|e| err(&m.rel, e))?.expect("it was an archive just above");
                    chown_unpacked(&target, names, owner).map_err(|e| io(format!("--chown of what {} unpacked: {e}", m.rel)))?;
                }
                continue;
            }
        }
        write_entry(&dir, &file_name, entry, opts).map_err(|e| io(format!("copying {} to {dir_path}/{file_name}: {e}", m.rel)))?;
    }
    for file in inline {
        let (dir_path, file_name) = if dest_is_dir { (dest.to_string(), file.name.clone()) } else { split_dest(&dest_file) };
        let dir = root.mkdir_all(&dir_path, dir_owner, dir_mode).map_err(|e| err(&dir_path, e))?;
        let fd = create_file(&dir, &file_name, 0o644).map_err(|e| err(&file_name, e))?;
        let mut f = File::from(fd);
        io::Write::write_all(&mut f, &file.content).map_err(|e| err(&file_name, e))?;
        let (uid, gid) = opts.owner.unwrap_or((0, 0));
        fchown(&f, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(|e| err(&file_name, e.into()))?;
        fchmod(&f, Mode::from_raw_mode(opts.chmod.unwrap_or(0o644))).map_err(|e| err(&file_name, e.into()))?;
    }
    Ok(())
}

/// `ADD --chown` of a local archive: every entry the archive names gets the owner, as in
/// BuildKit. Paths resolve inside `target`, so the archive's own symlinks cannot lead out.
fn chown_unpacked(target: &OwnedFd, archive: impl Read, (uid, gid): (u32, u32)) -> io::Result<()> {
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries()? {
        let entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let rel = path.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
        if rel.is_empty() || rel.rsplit('/').next().is_some_and(|n| n.starts_with(".wh.")) {
            continue;
        }
        let fd = match openat2(target, rel, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT) {
            Ok(fd) => fd,
            // An entry the extractor skipped (a device node).
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        rustix::fs::chownat(&fd, "", Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::EMPTY_PATH)?;
    }
    Ok(())
}

/// Whether `dest` names a directory: it says so (a trailing `/` or `.`) or is one.
pub(crate) fn dest_is_dir(root: &Root, dest: &str) -> bool {
    dest.ends_with('/') || dest.ends_with("/.") || dest == "." || root.is_dir(dest)
}

/// A file destination split into its directory and its name.
pub(crate) fn split_dest(dest: &str) -> (String, String) {
    let trimmed = dest.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((dir, name)) => (if dir.is_empty() { "/".into() } else { dir.into() }, name.into()),
        None => (".".into(), trimmed.into()),
    }
}

/// Copies a directory match's contents below `dir`.
fn copy_tree(dir: &OwnedFd, entries: &[Entry], opts: &CopyOptions) -> io::Result<()> {
    let mut dirs: Vec<(Option<OwnedFd>, &Entry)> = Vec::new();
    // Siblings come one after another: their parent is opened once, not once per entry (every
    // lookup through the overlay mount costs).
    let mut parent: Option<(&str, OwnedFd)> = None;
    for entry in &entries[1..] {
        let (parent_rel, name) = match entry.rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => (".", entry.rel.as_str()),
        };
        let fd = match parent.take() {
            Some((rel, fd)) if rel == parent_rel => fd,
            // Below a fresh target, symlinks are only those this copy made; resolving in the
            // target's root keeps even those inside.
            _ => openat2(dir, parent_rel, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT)?,
        };
        let parent = &parent.insert((parent_rel, fd)).1;
        if let Some(fd) = write_entry(parent, name, entry, opts)? {
            dirs.push((Some(fd), entry));
        }
    }
    // Directory times last, deepest first: writing children changes them. The destination
    // itself keeps what it had, or what it was created with: BuildKit gives it none of the
    // source directory's metadata.
    for (fd, entry) in dirs.iter().rev() {
        if let Some(fd) = fd {
            set_meta(fd, entry, opts)?;
        }
    }
    Ok(())
}

/// Writes one entry named `name` in `parent`. Returns the fd of a directory (whose metadata is
/// set later, after its children).
pub(crate) fn write_entry(parent: &OwnedFd, name: &str, entry: &Entry, opts: &CopyOptions) -> io::Result<Option<OwnedFd>> {
    let ft = entry.meta.file_type();
    if ft.is_file() {
        // Most files are new: create first, and look at what is there only when that fails.
        let fd = match create_file(parent, name, 0o600) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                make_room(parent, name, false)?;
                create_file(parent, name, 0o600)?
            }
            r => r?,
        };
        let mut out = File::from(fd);
        copy_data(&File::open(&entry.path)?, &mut out)?;
        set_meta(&out, entry, opts)?;
        return Ok(None);
    }
    let existing = make_room(parent, name, ft.is_dir())?;
    if ft.is_dir() {
        if !existing {
            mkdirat(parent, name, Mode::from_raw_mode(0o755))?;
        }
        let fd = openat(parent, name, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
        return Ok(Some(fd));
    }
    if ft.is_symlink() {
        let target = std::fs::read_link(&entry.path)?;
        symlinkat(&target, parent, name)?;
        let (uid, gid) = owner(entry, opts);
        rustix::fs::chownat(parent, name, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::SYMLINK_NOFOLLOW)?;
        utimensat(parent, name, &times(entry), AtFlags::SYMLINK_NOFOLLOW)?;
        return Ok(None);
    }
    let kind = if ft.is_fifo() {
        FileType::Fifo
    } else if ft.is_char_device() {
        FileType::CharacterDevice
    } else if ft.is_block_device() {
        FileType::BlockDevice
    } else {
        // Sockets cannot be copied; Docker skips them too.
        return Ok(None);
    };
    mknodat(parent, name, kind, Mode::from_raw_mode(entry.meta.mode() & 0o7777), entry.meta.rdev())?;
    let fd = openat(parent, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    let (uid, gid) = owner(entry, opts);
    rustix::fs::chownat(&fd, "", Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::EMPTY_PATH)?;
    Ok(None)
}

/// Clears the way for an entry `name` in `parent`: a directory stays for a directory (returns
/// true), a directory cannot be replaced by anything else, and any other entry is removed.
fn make_room(parent: &OwnedFd, name: &str, for_dir: bool) -> io::Result<bool> {
    let Ok(st) = statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) else { return Ok(false) };
    match (FileType::from_raw_mode(st.st_mode) == FileType::Directory, for_dir) {
        (true, true) => Ok(true),
        (true, false) => Err(io::Error::other(format!("cannot replace directory {name:?} with a non-directory"))),
        _ => {
            unlinkat(parent, name, AtFlags::empty())?;
            Ok(false)
        }
    }
}

/// The pairs of filesystems (source device, destination device) between which the kernel
/// refused `copy_file_range`. std's `io::copy` tries it for every file and falls back to
/// `sendfile` per call, which doubles the syscalls of a COPY of many small files where it is
/// refused (overlayfs refuses it); here the first refusal decides for the pair. A COPY through
/// the overlay mount is refused, and one written straight into the upperdir, on the
/// context's filesystem, is not.
static COPY_FILE_RANGE_REFUSED: std::sync::Mutex<Vec<(u64, u64)>> = std::sync::Mutex::new(Vec::new());

/// Copies the rest of `from` (from its offset) to `to` (at its offset).
pub(crate) fn copy_data(from: &File, to: &mut File) -> io::Result<()> {
    let refused = || COPY_FILE_RANGE_REFUSED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // The devices are looked up only once something was refused: most builds never pay for it.
    let pair = if refused().is_empty() { None } else { Some((from.metadata()?.dev(), to.metadata()?.dev())) };
    if pair.is_none_or(|p| !refused().contains(&p)) {
        let mut copied = 0u64;
        loop {
            match rustix::fs::copy_file_range(from, None, &*to, None, 1 << 30) {
                // Nothing copied from a file with more to give: refused (procfs-like files).
                Ok(0) if copied == 0 && from.metadata()?.len() > io::Seek::stream_position(&mut &*from)? => break,
                Ok(0) => return Ok(()),
                Ok(n) => copied += n as u64,
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::XDEV | rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) if copied == 0 => break,
                Err(e) => return Err(e.into()),
            }
        }
        let pair = match pair {
            Some(p) => p,
            None => (from.metadata()?.dev(), to.metadata()?.dev()),
        };
        refused().push(pair);
    }
    // A plain loop: one read and one write per small file.
    let mut buf = [0u8; 64 << 10];
    let mut from = from;
    loop {
        match io::Read::read(&mut from, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => io::Write::write_all(to, &buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn create_file(parent: &OwnedFd, name: &str, mode: u32) -> io::Result<OwnedFd> {
    Ok(openat(parent, name, OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::from_raw_mode(mode))?)
}

fn owner(entry: &Entry, opts: &CopyOptions) -> (u32, u32) {
    match opts.owner {
        Some(o) => o,
        None if opts.from_context => (0, 0),
        None => (entry.meta.uid(), entry.meta.gid()),
    }
}

fn times(entry: &Entry) -> Timestamps {
    let t = Timespec { tv_sec: entry.meta.mtime(), tv_nsec: entry.meta.mtime_nsec() as _ };
    Timestamps { last_access: t, last_modification: t }
}

/// Owner, mode (after `--chmod`) and times of a file or directory.
pub(crate) fn set_meta(fd: &impl std::os::fd::AsFd, entry: &Entry, opts: &CopyOptions) -> io::Result<()> {
    set_owner_mode(fd, entry, opts)?;
    set_times(fd, entry)
}

/// The source's times, which writing into a file or directory changes: set last.
pub(crate) fn set_times(fd: &impl std::os::fd::AsFd, entry: &Entry) -> io::Result<()> {
    Ok(futimens(fd, &times(entry))?)
}

/// Owner and mode (after `--chmod`) of a file or directory.
pub(crate) fn set_owner_mode(fd: &impl std::os::fd::AsFd, entry: &Entry, opts: &CopyOptions) -> io::Result<()> {
    let (uid, gid) = owner(entry, opts);
    fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    // chown clears setuid bits, so the mode comes after it.
    fchmod(fd, Mode::from_raw_mode(opts.chmod.unwrap_or(entry.meta.mode() & 0o7777)))?;
    Ok(())
}

/// Opens `path` as a tar archive (plain, gzip, bzip2, xz or zstd) if it is one.
fn open_archive(path: &Path) -> io::Result<Option<Box<dyn Read>>> {
    let (_, mut reader) = forge_layerstore::archive::sniff(io::BufReader::new(File::open(path)?))?;
    // A tar has "ustar" at offset 257 of its first header; anything else is copied as a file.
    let mut header = vec![0u8; 512];
    let mut got = 0;
    while got < header.len() {
        match reader.read(&mut header[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            // A file that merely starts like a compressed stream is not an archive.
            Err(_) => return Ok(None),
        }
    }
    if got < 512 || &header[257..262] != b"ustar" {
        return Ok(None);
    }
    Ok(Some(Box::new(io::Cursor::new(header).chain(reader))))
}
