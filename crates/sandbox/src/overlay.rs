//! Mounting an overlay with the new mount API: one `lowerdir+` per layer, so images of 100+
//! layers fit where the one-page `lowerdir=a:b:...` option string would not. Shared by the
//! sandbox's rootfs and the builder's own mounts (COPY, ADD, WORKDIR, read-only views).

use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};

/// Mounts `lowerdirs` (top-most first, at least one) at `target`, writable with
/// `upper` = (upperdir, workdir), read-only without. `index`, `redirect_dir` and `metacopy` are
/// off: the layer differ needs an upperdir that tells the whole truth (see forge-layerstore's
/// `diff`). An error names the step and path that failed.
pub fn mount_overlay(lowerdirs: &[PathBuf], upper: Option<(&Path, &Path)>, target: &Path) -> io::Result<()> {
    let ctx = |what: String| move |e: rustix::io::Errno| io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}"));
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(ctx("fsopen overlay".into()))?;
    for l in lowerdirs {
        fsconfig_set_string(&fs, "lowerdir+", l).map_err(ctx(format!("overlay lowerdir {}", l.display())))?;
    }
    if let Some((upperdir, workdir)) = upper {
        fsconfig_set_string(&fs, "upperdir", upperdir).map_err(ctx(format!("overlay upperdir {}", upperdir.display())))?;
        fsconfig_set_string(&fs, "workdir", workdir).map_err(ctx(format!("overlay workdir {}", workdir.display())))?;
    }
    for (k, v) in [("index", "off"), ("redirect_dir", "off"), ("metacopy", "off")] {
        fsconfig_set_string(&fs, k, v).map_err(ctx(format!("overlay {k}={v}")))?;
    }
    fsconfig_create(&fs).map_err(ctx("creating the overlay".into()))?;
    let attrs = if upper.is_some() { MountAttrFlags::empty() } else { MountAttrFlags::MOUNT_ATTR_RDONLY };
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(ctx("fsmount".into()))?;
    move_mount(&mnt, "", CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH).map_err(ctx(format!("attaching the overlay at {}", target.display())))?;
    Ok(())
}
