//! Reading the Dockerfile and `.dockerignore` as BuildKit does: each is looked up inside the
//! directory it belongs to (the Dockerfile's own directory, or the context), with symlinks
//! resolved as if that directory were `/`, so `Dockerfile -> /etc/shadow` names
//! `<dir>/etc/shadow` and never the host's file. Only regular files are read (a FIFO or
//! `/dev/zero` would block or never end), and no more than [`MAX_BUILD_FILE`] bytes of them.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use crate::rootfs::Root;

/// The largest Dockerfile or `.dockerignore` read: BuildKit's frontend bounds both by the
/// largest gRPC message it accepts (containerd's `DefaultMaxRecvMsgSize`, 16 MiB).
pub const MAX_BUILD_FILE: u64 = 16 << 20;

/// Why a Dockerfile or `.dockerignore` cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildFileError {
    /// There is no such file (after resolving symlinks inside its directory).
    #[error("not found{}", if *.symlink { " (its symlink is resolved inside its own directory, as BuildKit does)" } else { "" })]
    NotFound {
        /// The name is a symlink whose target does not exist inside the directory.
        symlink: bool,
    },
    /// It is a directory, device, FIFO or socket.
    #[error("is a {0}, not a regular file")]
    NotRegular(&'static str),
    /// It is larger than [`MAX_BUILD_FILE`].
    #[error("larger than the limit of {MAX_BUILD_FILE} bytes (16 MiB, as BuildKit)")]
    TooLarge,
    /// A Dockerfile must be UTF-8.
    #[error("not valid UTF-8")]
    NotUtf8,
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads `name` inside `dir` (symlinks resolved within `dir`); `Ok(None)` when it does not
/// exist and `optional`.
pub(crate) fn read_in(dir: &Path, name: &str, optional: bool) -> Result<Option<Vec<u8>>, BuildFileError> {
    let root = match Root::open(dir) {
        Ok(root) => root,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return if optional { Ok(None) } else { Err(BuildFileError::NotFound { symlink: false }) },
        Err(e) => return Err(e.into()),
    };
    // Non-blocking, so that opening a FIFO does not wait for a writer before it is refused.
    let file = match root.open_at(name, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY) {
        Ok(fd) => File::from(fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let symlink = std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.file_type().is_symlink());
            return if optional && !symlink { Ok(None) } else { Err(BuildFileError::NotFound { symlink }) };
        }
        Err(e) => return Err(e.into()),
    };
    let ft = file.metadata()?.file_type();
    let kind = if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("directory")
    } else if ft.is_char_device() {
        Some("character device")
    } else if ft.is_block_device() {
        Some("block device")
    } else if ft.is_fifo() {
        Some("FIFO")
    } else {
        Some("socket")
    };
    if let Some(kind) = kind {
        return Err(BuildFileError::NotRegular(kind));
    }
    if file.metadata()?.len() > MAX_BUILD_FILE {
        return Err(BuildFileError::TooLarge);
    }
    read_capped(file).map(Some)
}

/// Reads at most [`MAX_BUILD_FILE`] bytes; more is [`BuildFileError::TooLarge`] (a file that
/// grew since it was measured, or a stream).
pub fn read_capped(input: impl Read) -> Result<Vec<u8>, BuildFileError> {
    let mut bytes = Vec::new();
    input.take(MAX_BUILD_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BUILD_FILE {
        return Err(BuildFileError::TooLarge);
    }
    Ok(bytes)
}

/// Reads a Dockerfile from `input` (such as standard input for `-f -`), capped.
pub fn read_dockerfile(input: impl Read) -> Result<String, BuildFileError> {
    String::from_utf8(read_capped(input)?).map_err(|_| BuildFileError::NotUtf8)
}

/// The directory a Dockerfile path is resolved in, and its name there.
pub(crate) fn split(path: &Path) -> (PathBuf, String) {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let name = path.file_name().map_or_else(|| ".".to_string(), |n| n.to_string_lossy().into_owned());
    (dir, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_and_only_regular_files_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/shadow"), "FROM inside").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", dir.join("Dockerfile")).unwrap();
        assert_eq!(read_in(dir, "Dockerfile", false).unwrap().unwrap(), b"FROM inside");
        std::os::unix::fs::symlink("/etc/hostname", dir.join("outside")).unwrap();
        assert!(matches!(read_in(dir, "outside", true), Err(BuildFileError::NotFound { symlink: true })));
        assert!(read_in(dir, "missing", true).unwrap().is_none());
        assert!(matches!(read_in(Path::new("/dev"), "zero", false), Err(BuildFileError::NotRegular("character device"))));
        assert!(matches!(read_in(dir, "etc", false), Err(BuildFileError::NotRegular("directory"))));
        rustix::fs::mknodat(rustix::fs::CWD, dir.join("fifo"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap();
        assert!(matches!(read_in(dir, "fifo", false), Err(BuildFileError::NotRegular("FIFO"))));
        let big = File::create(dir.join("big")).unwrap();
        big.set_len(MAX_BUILD_FILE + 1).unwrap();
        assert!(matches!(read_in(dir, "big", false), Err(BuildFileError::TooLarge)));
        assert!(matches!(read_dockerfile(io::repeat(b'a')), Err(BuildFileError::TooLarge)));
    }
}
