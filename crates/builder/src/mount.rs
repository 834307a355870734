//! Overlay mounts in forge's own mount namespace, for the steps that change a rootfs without a
//! sandbox (COPY, ADD, WORKDIR) and for reading another stage's tree (`COPY --from`).
//!
//! Overlays go through `forge_sandbox::mount_overlay` (the new mount API, one `lowerdir+` per
//! layer), the same call the sandbox mounts its rootfs with; writable ones are `volatile`, as a
//! RUN step's rootfs is. The mount is detached when the guard drops, so an error never leaves
//! it behind.

use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{mount, mount_remount, move_mount, open_tree, unmount, MountFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags};

/// A mounted overlay (or, for a single read-only layer, a bind mount); unmounted on drop.
#[derive(Debug)]
pub(crate) struct OverlayMount {
    target: PathBuf,
    /// Whether the mount point was made for this mount (and is removed, never recursively).
    owns_dir: bool,
}

impl OverlayMount {
    /// Mounts `lowerdirs` (top-most first) with `upper` = (upperdir, workdir), or read-only
    /// without it, at `target`.
    pub(crate) fn mount(lowerdirs: &[PathBuf], upper: Option<(&Path, &Path)>, target: &Path) -> io::Result<OverlayMount> {
        match (lowerdirs, upper) {
            // Nothing below an upperdir (FROM scratch): the upperdir is the whole tree.
            ([], Some((upperdir, _))) => {
                bind(upperdir, target, false)?;
                return Ok(OverlayMount { target: target.to_path_buf(), owns_dir: false });
            }
            // Overlay needs two lowerdirs when it has no upperdir; one layer is a bind.
            ([only], None) => {
                bind(only, target, true)?;
                return Ok(OverlayMount { target: target.to_path_buf(), owns_dir: false });
            }
            ([], None) => return Ok(OverlayMount { target: target.to_path_buf(), owns_dir: false }),
            _ => {}
        }
        match upper {
            // Every upperdir here is a step's scratch (its snapshot, committed after the step,
            // or a writable bind's, thrown away).
            Some(upper) => forge_sandbox::mount_scratch_overlay(lowerdirs, upper, target)?,
            None => forge_sandbox::mount_overlay(lowerdirs, None, target)?,
        }
        Ok(OverlayMount { target: target.to_path_buf(), owns_dir: false })
    }

    /// Mounts like [`OverlayMount::mount`] at a new directory under `parent`, removed again
    /// (with `rmdir`, so never through the mount) when the guard drops.
    pub(crate) fn mount_scratch(parent: &Path, lowerdirs: &[PathBuf], upper: Option<(&Path, &Path)>) -> io::Result<OverlayMount> {
        let dir = tempfile::Builder::new().prefix("mnt-").tempdir_in(parent)?.keep();
        match OverlayMount::mount(lowerdirs, upper, &dir) {
            Ok(mut m) => {
                m.owns_dir = true;
                Ok(m)
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// Where it is mounted.
    pub(crate) fn path(&self) -> &Path {
        &self.target
    }
}

fn bind(source: &Path, target: &Path, readonly: bool) -> io::Result<()> {
    let tree = open_tree(CWD, source, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC)?;
    move_mount(&tree, "", CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
    if readonly {
        mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")?;
    }
    Ok(())
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        // An empty view (no layers) mounted nothing; unmount fails with EINVAL, harmlessly.
        let _ = unmount(&self.target, UnmountFlags::DETACH);
        if self.owns_dir {
            let _ = std::fs::remove_dir(&self.target);
        }
    }
}

/// A private tmpfs holding one file, for a secret held in memory: its bytes live in RAM only
/// and vanish when the guard drops (unmounted, then its empty mount point removed).
#[derive(Debug)]
pub(crate) struct TmpfsFile {
    dir: PathBuf,
    file: PathBuf,
}

impl TmpfsFile {
    /// Mounts a tmpfs at a new directory under `parent` and writes `content` to a file in it
    /// with `mode` and `owner` (uid, gid).
    pub(crate) fn new(parent: &Path, content: &[u8], mode: u32, owner: (u32, u32)) -> io::Result<TmpfsFile> {
        let dir = tempfile::Builder::new().prefix("secret-").tempdir_in(parent)?.keep();
        // Room for the content and the inode; a tmpfs cannot be smaller than a page anyway.
        let data = std::ffi::CString::new(format!("mode=0700,size={}", content.len() + 8192)).expect("no NUL in numbers");
        if let Err(e) = mount("tmpfs", &dir, "tmpfs", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, Some(data.as_c_str())) {
            let _ = std::fs::remove_dir(&dir);
            return Err(e.into());
        }
        let guard = TmpfsFile { file: dir.join("secret"), dir };
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            use std::os::unix::fs::PermissionsExt;
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&guard.file)?;
            f.write_all(content)?;
            std::os::unix::fs::fchown(&f, Some(owner.0), Some(owner.1))?;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        Ok(guard)
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.file
    }
}

impl Drop for TmpfsFile {
    fn drop(&mut self) {
        let _ = unmount(&self.dir, UnmountFlags::DETACH);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
