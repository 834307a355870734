//! Mounting an overlay with the new mount API: one `lowerdir+` per layer, so images of 100+
//! layers fit where the one-page `lowerdir=a:b:...` option string would not. Shared by the
//! sandbox's rootfs and the builder's own mounts (COPY, ADD, WORKDIR, read-only views).

use std::io;
use std::path::{Path, PathBuf};

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{openat, Mode, OFlags, CWD};
use rustix::mount::{fsconfig_create, fsconfig_set_fd, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount, FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};

/// The most lower layers one overlay stacks: the kernel's `OVL_MAX_STACK` (500; a 501st
/// `lowerdir+` fails with EINVAL). Docker stops at 125 layers (moby's `maxLayerDepth`, sized
/// for graph drivers that pass every layer in one page of mount options); forge adds layers
/// one `lowerdir+` at a time, so only the kernel's own limit applies, and an image may have
/// up to this many layers.
pub const MAX_LAYERS: usize = 500;

/// An overlay asked for more than [`MAX_LAYERS`] lower layers. It is the source of the
/// `io::Error` [`mount_overlay`] returns (`ErrorKind::InvalidInput`), for callers to tell it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{layers} layers: the layer limit was reached (overlayfs stacks at most {MAX_LAYERS} layers, the kernel's OVL_MAX_STACK)")]
pub struct TooManyLayers {
    /// How many were asked for.
    pub layers: usize,
}

/// Mounts `lowerdirs` (top-most first, at least one, at most [`MAX_LAYERS`]) at `target`,
/// writable with `upper` = (upperdir, workdir), read-only without. `index`, `redirect_dir`
/// and `metacopy` are off: the layer differ needs an upperdir that tells the whole truth (see
/// forge-layerstore's `diff`). An error names the step and path that failed.
pub fn mount_overlay(lowerdirs: &[PathBuf], upper: Option<(&Path, &Path)>, target: &Path) -> io::Result<()> {
    mount_overlay_with(lowerdirs, upper, target, false)
}

/// [`mount_overlay`] with an upperdir that is scratch (a build step's, committed after the
/// step or thrown away): mounted `volatile`, so neither a copy-up nor the unmount syncs.
/// Overlay's unmount otherwise syncs the whole filesystem under the upperdir, everything
/// anyone wrote there: a COPY of one small file after a RUN that wrote 512 MiB took 0.2 s.
/// The workdir is not mounted again (overlay refuses a workdir a volatile mount used).
pub fn mount_scratch_overlay(lowerdirs: &[PathBuf], upper: (&Path, &Path), target: &Path) -> io::Result<()> {
    mount_overlay_with(lowerdirs, Some(upper), target, true)
}

/// [`mount_overlay`], `volatile` when the upperdir may be lost in a crash (see
/// [`RunSpec::volatile_upper`](crate::RunSpec::volatile_upper)).
pub(crate) fn mount_overlay_with(lowerdirs: &[PathBuf], upper: Option<(&Path, &Path)>, target: &Path, volatile: bool) -> io::Result<()> {
    if lowerdirs.len() > MAX_LAYERS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, TooManyLayers { layers: lowerdirs.len() }));
    }
    mount_with(upper.is_some(), volatile, target, |fs| {
        for l in lowerdirs {
            fsconfig_set_string(fs, "lowerdir+", l).map_err(ctx(format!("overlay lowerdir {}", l.display())))?;
        }
        if let Some((upperdir, workdir)) = upper {
            fsconfig_set_string(fs, "upperdir", upperdir).map_err(ctx(format!("overlay upperdir {}", upperdir.display())))?;
            fsconfig_set_string(fs, "workdir", workdir).map_err(ctx(format!("overlay workdir {}", workdir.display())))?;
        }
        Ok(())
    })
}

/// [`mount_overlay`] over idmapped mounts of the layers (see `crate::userns`): each lowerdir
/// and the directory holding the upperdir and workdir (which overlayfs wants on one mount) is
/// cloned and idmapped through `userns`, and handed to overlayfs by descriptor.
pub(crate) fn mount_overlay_idmapped(lowerdirs: &[PathBuf], upper: (&Path, &Path), target: &Path, userns: BorrowedFd<'_>, volatile: bool) -> io::Result<()> {
    if lowerdirs.len() > MAX_LAYERS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, TooManyLayers { layers: lowerdirs.len() }));
    }
    let (upperdir, workdir) = upper;
    let parent = match (upperdir.parent(), workdir.parent()) {
        (Some(a), Some(b)) if a == b => a,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("an idmapped overlay needs its upperdir {} and workdir {} in one directory", upperdir.display(), workdir.display()))),
    };
    let lowers = lowerdirs.iter().map(|l| crate::userns::idmapped(l, userns)).collect::<io::Result<Vec<_>>>()?;
    let shared = crate::userns::idmapped(parent, userns)?;
    let sub = |p: &Path| -> io::Result<OwnedFd> {
        let name = p.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} has no name", p.display())))?;
        Ok(openat(&shared, name, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?)
    };
    let (upper_fd, work_fd) = (sub(upperdir)?, sub(workdir)?);
    mount_with(true, volatile, target, |fs| {
        for (l, fd) in lowerdirs.iter().zip(&lowers) {
            fsconfig_set_fd(fs, "lowerdir+", fd).map_err(ctx(format!("overlay idmapped lowerdir {}", l.display())))?;
        }
        fsconfig_set_fd(fs, "upperdir", &upper_fd).map_err(ctx(format!("overlay idmapped upperdir {}", upperdir.display())))?;
        fsconfig_set_fd(fs, "workdir", &work_fd).map_err(ctx(format!("overlay idmapped workdir {}", workdir.display())))?;
        Ok(())
    })
}

/// An errno with what failed.
fn ctx(what: String) -> impl FnOnce(rustix::io::Errno) -> io::Error {
    move |e| io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}"))
}

/// Creates an overlay whose layers `layers` configures and attaches it at `target`.
fn mount_with(writable: bool, volatile: bool, target: &Path, layers: impl FnOnce(&OwnedFd) -> io::Result<()>) -> io::Result<()> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(ctx("fsopen overlay".into()))?;
    layers(&fs)?;
    // In a user namespace (rootless forge) overlayfs may not use trusted.* xattrs: it keeps
    // its own under user.overlay.* (which the layer differ reads too), and refuses an explicit
    // `redirect_dir=off` there; `nofollow` creates no redirects either.
    let rootless = crate::rootless::in_user_namespace();
    if rootless {
        fsconfig_set_flag(&fs, "userxattr").map_err(ctx("overlay userxattr".into()))?;
    }
    let redirect = if rootless { "nofollow" } else { "off" };
    for (k, v) in [("index", "off"), ("redirect_dir", redirect), ("metacopy", "off")] {
        fsconfig_set_string(&fs, k, v).map_err(ctx(format!("overlay {k}={v}")))?;
    }
    if volatile {
        fsconfig_set_flag(&fs, "volatile").map_err(ctx("overlay volatile".into()))?;
    }
    fsconfig_create(&fs).map_err(ctx("creating the overlay".into()))?;
    let attrs = if writable { MountAttrFlags::empty() } else { MountAttrFlags::MOUNT_ATTR_RDONLY };
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(ctx("fsmount".into()))?;
    move_mount(&mnt, "", CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH).map_err(ctx(format!("attaching the overlay at {}", target.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_layers_than_overlayfs_stacks_is_a_typed_error_before_any_mount() {
        let lowers: Vec<PathBuf> = (0..=MAX_LAYERS).map(|i| PathBuf::from(format!("/nonexistent/{i}"))).collect();
        let err = mount_overlay(&lowers, None, Path::new("/nonexistent/target")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let typed = err.get_ref().and_then(|e| e.downcast_ref::<TooManyLayers>());
        assert_eq!(typed, Some(&TooManyLayers { layers: MAX_LAYERS + 1 }));
        assert!(err.to_string().contains("the layer limit was reached"), "{err}");
    }
}
