//! Path operations confined to a root directory (an image's mounted tree or the build context).
//!
//! Both trees are untrusted: a base image may hold `/app -> /etc` or `/etc/passwd -> /host`, a
//! context may hold `link -> /root/.ssh`. Every lookup goes through `openat2` with
//! `RESOLVE_IN_ROOT`, so the kernel resolves `..` and symlinks as if the directory were `/`,
//! the way a process chrooted there would see them; nothing outside can be read or written.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{fchown, mkdirat, openat2, Gid, Mode, OFlags, ResolveFlags, Uid, CWD};

/// A directory treated as `/`.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
}

/// The components of `path` with `.` and empty parts dropped (`..` is left for the kernel to
/// clamp at the root).
fn relative(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

impl Root {
    /// Opens `dir` as a root.
    pub(crate) fn open(dir: &Path) -> io::Result<Root> {
        let fd = openat2(CWD, dir, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::empty())?;
        Ok(Root { fd })
    }

    /// Opens `path` (inside the root, symlinks followed within it) with `flags`.
    pub(crate) fn open_at(&self, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
        Ok(openat2(&self.fd, relative(path), flags | OFlags::CLOEXEC, Mode::empty(), IN_ROOT)?)
    }

    /// Opens a file for reading.
    pub(crate) fn open_file(&self, path: &str) -> io::Result<File> {
        Ok(File::from(self.open_at(path, OFlags::RDONLY)?))
    }

    /// The real path on the host of `path` inside the root, symlinks resolved within the root;
    /// `None` when it does not exist. Walking the result without following symlinks stays
    /// inside the root.
    pub(crate) fn resolve(&self, path: &str) -> io::Result<Option<PathBuf>> {
        match self.open_at(path, OFlags::PATH) {
            Ok(fd) => real_path(&fd).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `path` inside the root with symlinks followed (within the root) when it exists, else
    /// `path` itself: a COPY onto an existing symlink writes through it, as BuildKit does.
    pub(crate) fn follow(&self, path: &str) -> io::Result<String> {
        let Some(real) = self.resolve(path)? else { return Ok(path.to_string()) };
        let top = real_path(&self.fd)?;
        Ok(match real.strip_prefix(&top) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => path.to_string(),
        })
    }

    /// Opens directory `path`, creating missing components with `mode`, owned by `owner`.
    pub(crate) fn mkdir_all(&self, path: &str, owner: (u32, u32), mode: u32) -> io::Result<OwnedFd> {
        let rel = relative(path);
        let mut done = String::new();
        let mut dir = self.open_at(".", OFlags::DIRECTORY | OFlags::RDONLY)?;
        if rel == "." {
            return Ok(dir);
        }
        for part in rel.split('/') {
            if !done.is_empty() {
                done.push('/');
            }
            done.push_str(part);
            dir = match self.open_at(&done, OFlags::DIRECTORY | OFlags::RDONLY) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Created relative to the parent's fd, never through a path, so a symlink
                    // swapped in meanwhile cannot redirect it.
                    match mkdirat(&dir, part, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    let fd = self.open_at(&done, OFlags::DIRECTORY | OFlags::RDONLY)?;
                    fchown(&fd, Some(Uid::from_raw(owner.0)), Some(Gid::from_raw(owner.1)))?;
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
                    fd
                }
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("/{done} exists and is not a directory")));
                }
                Err(e) => return Err(e),
            };
        }
        Ok(dir)
    }

    /// Whether `path` is a directory (following symlinks within the root).
    pub(crate) fn is_dir(&self, path: &str) -> bool {
        self.open_at(path, OFlags::DIRECTORY | OFlags::PATH).is_ok()
    }
}

/// Where an open fd points, read back from `/proc/self/fd`.
pub(crate) fn real_path(fd: &impl AsFd) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_dotdot_stay_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "inside").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", root.join("etc/up")).unwrap();
        let r = Root::open(&root).unwrap();
        let read = |p: &str| io::read_to_string(r.open_file(p).unwrap()).unwrap();
        assert_eq!(read("/link/passwd"), "inside");
        assert_eq!(read("etc/up"), "inside");
        assert_eq!(read("../../etc/passwd"), "inside");
        let made = r.mkdir_all("/link/new/dir", (0, 0), 0o755).unwrap();
        assert_eq!(real_path(&made).unwrap(), root.join("etc/new/dir").canonicalize().unwrap());
        assert!(root.join("etc/new/dir").is_dir());
        assert!(r.resolve("/nope").unwrap().is_none());
        assert_eq!(r.follow("etc/up").unwrap(), "/etc/passwd");
        assert_eq!(r.follow("/nope").unwrap(), "/nope");
        std::fs::write(root.join("file"), "").unwrap();
        assert!(r.mkdir_all("/file/x", (0, 0), 0o755).unwrap_err().to_string().contains("not a directory"));
    }
}
