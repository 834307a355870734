//! Who may enter the store: only its owner.
//!
//! Snapshots, build cache mounts, scratch directories and ingests hold whatever layers and RUN
//! steps put there, setuid-root binaries and device nodes included. If another local user could
//! reach them by path, `snapshots/<id>/fs/bin/su`-like files would be theirs to run. So the
//! store's root directory and its private `forge/` directory are 0700, as Docker keeps
//! `/var/lib/docker` and its layer directories closed (0710/0700) and containerd its plugin
//! directories (0700).
//!
//! Only what must be shared is: the OCI layout itself (`oci-layout`, `index.json`, `blobs/`)
//! keeps ordinary modes inside the closed root, so root tools (skopeo, umoci, podman, which run
//! as root) read it as before, and an administrator who deliberately opens the root directory
//! to share the layout still shares nothing under `forge/`.
//!
//! An existing store that is too open is tightened when it is opened, rather than refused: that
//! is what dockerd does to its root directory at every start (it sets the bits instead of trusting
//! them), and a refusal would only make every user run the same `chmod` by hand after an upgrade.
//! A directory forge may not change (owned by someone else) is an error that says so.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The mode of the store's root and of `forge/`.
pub(crate) const PRIVATE_MODE: u32 = 0o700;

/// Makes `dir` (and missing parents, with ordinary modes) and closes it to everyone but its
/// owner, tightening it when it exists with more open bits.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(PRIVATE_MODE).create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        other => other?,
    }
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_MODE)).map_err(|e| {
            io::Error::new(e.kind(), format!("{} is open to other users (mode {:o}) and could not be closed to mode 700: {e}", dir.display(), mode & 0o7777))
        })?;
    }
    Ok(())
}
