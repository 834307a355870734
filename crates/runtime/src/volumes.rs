//! Volumes and a container's mounts (docker's `-v`, `--mount`, `--tmpfs`).
//!
//! A named volume is a directory of the store, `<store>/forge/volumes/<name>/_data` (docker's
//! local driver's layout), with `volume.json` beside it. It is made on first use, and filled
//! then with what the image has at the mount's target, as docker does. A volume that any
//! container (running or not) names cannot be removed; `<store>/forge/volumes.lock` serialises
//! the check with the creates that name volumes.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use forge_layerstore::Store;
use serde::{Deserialize, Serialize};

use crate::containers::Containers;
use crate::error::{io, Error};
use crate::state::{now, read_json, write_json};

/// One mount of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountSpec {
    /// What is mounted.
    pub source: MountSource,
    /// The absolute path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl MountSpec {
    /// docker's `-v SRC:DST[:OPTS]` (the API's `Binds`): SRC an absolute host path (made when
    /// missing, as docker's `-v` does), a volume's name, or nothing for an anonymous volume;
    /// OPTS among `ro`, `rw`, `nocopy`, `z`, `Z`. A relative path is the caller's to resolve.
    pub fn from_volume_flag(spec: &str) -> Result<MountSpec, Error> {
        let bad = |reason: String| Error::Invalid { what: "volume", value: spec.into(), reason };
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, target, opts) = match parts[..] {
            // An anonymous volume: the runtime names it.
            [target] => ("", target, ""),
            [src, dst] => (src, dst, ""),
            [src, dst, opts] => (src, dst, opts),
            _ => return Err(bad("expected SRC:DST[:OPTS]".into())),
        };
        let (mut read_only, mut nocopy) = (false, false);
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => read_only = true,
                "rw" => read_only = false,
                "nocopy" => nocopy = true,
                // SELinux relabelling: nothing to do without SELinux.
                "z" | "Z" => {}
                other => return Err(bad(format!("unknown option {other:?}: forge knows ro, rw, nocopy, z and Z"))),
            }
        }
        let source = if src.is_empty() {
            MountSource::Volume { name: String::new(), nocopy }
        } else if src.starts_with('/') {
            let path = PathBuf::from(src);
            if !path.exists() {
                fs::create_dir_all(&path).map_err(io("creating the bind source", &path))?;
            }
            MountSource::Bind(path)
        } else if src.starts_with('.') {
            return Err(bad("a relative bind source: give an absolute path".into()));
        } else {
            MountSource::Volume { name: src.to_string(), nocopy }
        };
        Ok(MountSpec { source, target: target.to_string(), read_only })
    }
}

/// What a mount mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountSource {
    /// A host file or directory.
    Bind(PathBuf),
    /// A named volume of the store (made on first use).
    Volume {
        /// Its name; empty for an anonymous volume, which [`crate::Containers::create`] names.
        name: String,
        /// Do not fill a new volume with the image's files at the target (`volume-nocopy`).
        nocopy: bool,
    },
    /// A fresh tmpfs of at most this many bytes (the kernel's default: half the memory).
    Tmpfs(Option<u64>),
}

/// A volume as `volume inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// Always `local`.
    pub driver: String,
    /// Where its files are.
    pub mountpoint: PathBuf,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// `local`, as docker's.
    pub scope: String,
    /// Made for one container without a name (`-v /path`): removed with it when it was made
    /// with `--rm`.
    #[serde(default)]
    pub anonymous: bool,
    /// The user's `KEY=VALUE` labels (compose finds its volumes by them).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The volumes of a store.
#[derive(Debug)]
pub struct Volumes {
    dir: PathBuf,
    containers: Containers,
}

/// The exclusive lock on the volumes: held while a create checks and takes volumes, or a remove
/// checks that no container names one.
pub(crate) struct VolumesLock {
    _file: File,
}

impl Volumes {
    /// The volumes of `store`.
    pub fn open(store: &Store) -> Result<Volumes, Error> {
        let dir = store.root().join("forge/volumes");
        fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        Ok(Volumes { dir, containers: Containers::open(store)? })
    }

    pub(crate) fn lock(&self) -> Result<VolumesLock, Error> {
        // Beside the volumes' directory, where no volume name can take its place.
        Ok(VolumesLock { _file: crate::sys::lock_exclusive(&self.dir.with_file_name("volumes.lock"))? })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Makes volume `name` (a new random name when `None`, docker's anonymous volume); an
    /// existing one is returned as it is.
    /// `labels` are kept with a new volume.
    pub fn create(&self, name: Option<&str>, labels: std::collections::BTreeMap<String, String>) -> Result<Volume, Error> {
        let _lock = self.lock()?;
        self.create_locked(name, false, labels)
    }

    pub(crate) fn create_locked(&self, name: Option<&str>, anonymous: bool, labels: std::collections::BTreeMap<String, String>) -> Result<Volume, Error> {
        let name = match name {
            Some(n) => {
                validate_name(n)?;
                n.to_string()
            }
            None => crate::containers::new_id()?,
        };
        if let Ok(v) = self.get(&name) {
            return Ok(v);
        }
        let volume = Volume { name: name.clone(), driver: "local".into(), mountpoint: self.path(&name).join("_data"), created_at: now(), scope: "local".into(), anonymous, labels };
        // Made whole aside, then renamed: a listing never sees half a volume.
        let new = self.dir.join(format!(".new-{name}"));
        let _ = fs::remove_dir_all(&new);
        let made = fs::create_dir_all(new.join("_data"))
            .map_err(io("creating", &new))
            .and_then(|()| write_json(&new.join("volume.json"), &volume))
            .and_then(|()| fs::rename(&new, self.path(&name)).map_err(io("renaming into place", &new)));
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&new);
            return Err(e);
        }
        crate::events::volume(self.containers.store().root(), "create", &name);
        Ok(volume)
    }

    /// Volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume, Error> {
        validate_name(name)?;
        match read_json(&self.path(name).join("volume.json")) {
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Err(Error::NoSuchVolume(name.into())),
            other => other,
        }
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, Error> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io("listing", &self.dir))? {
            let name = e.map_err(io("listing", &self.dir))?.file_name().to_string_lossy().into_owned();
            if validate_name(&name).is_ok() {
                match self.get(&name) {
                    Ok(v) => out.push(v),
                    Err(Error::NoSuchVolume(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The IDs of the containers that name volume `name`.
    fn users(&self, name: &str) -> Result<Vec<String>, Error> {
        let named = |m: &MountSpec| matches!(&m.source, MountSource::Volume { name: n, .. } if n == name);
        Ok(self.containers.list()?.into_iter().filter(|c| c.config.mounts.iter().any(named)).map(|c| c.config.id).collect())
    }

    /// Removes volume `name` and its files; refused while a container names it.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let _lock = self.lock()?;
        self.get(name)?;
        let users = self.users(name)?;
        if !users.is_empty() {
            return Err(Error::VolumeInUse { name: name.into(), containers: users });
        }
        self.remove_locked(name)
    }

    fn remove_locked(&self, name: &str) -> Result<(), Error> {
        let aside = self.dir.join(format!(".rm-{name}"));
        fs::rename(self.path(name), &aside).map_err(io("removing", self.path(name)))?;
        crate::events::volume(self.containers.store().root(), "destroy", name);
        fs::remove_dir_all(&aside).map_err(io("removing", &aside))
    }

    /// Removes the anonymous volumes among `mounts` that no container names any more: those of
    /// a removed container (made with `--rm`, or removed with `rm -v`).
    pub fn remove_anonymous(&self, mounts: &[MountSpec]) -> Result<(), Error> {
        let _lock = self.lock()?;
        for m in mounts {
            let MountSource::Volume { name, .. } = &m.source else { continue };
            if self.get(name).is_ok_and(|v| v.anonymous) && self.users(name)?.is_empty() {
                self.remove_locked(name)?;
            }
        }
        Ok(())
    }

    /// Removes every volume no container names; returns their names.
    pub fn prune(&self) -> Result<Vec<String>, Error> {
        let _lock = self.lock()?;
        let mut removed = Vec::new();
        for v in self.list()? {
            if self.users(&v.name)?.is_empty() {
                self.remove_locked(&v.name)?;
                removed.push(v.name);
            }
        }
        Ok(removed)
    }
}

/// docker's rule for volume names, the same as for containers.
fn validate_name(name: &str) -> Result<(), Error> {
    crate::containers::check_name("volume name", name)
}

/// Checks a container's mounts: absolute targets, none twice, none at `/`.
pub(crate) fn check_mounts(mounts: &[MountSpec]) -> Result<(), Error> {
    for (i, m) in mounts.iter().enumerate() {
        let bad = |reason: &str| Err(Error::Invalid { what: "mount target", value: m.target.clone(), reason: reason.into() });
        if !m.target.starts_with('/') {
            return bad("it must be an absolute path");
        }
        if m.target.trim_end_matches('/').is_empty() {
            return bad("the root cannot be a mount");
        }
        if mounts[..i].iter().any(|o| o.target.trim_end_matches('/') == m.target.trim_end_matches('/')) {
            return bad("it is mounted twice");
        }
        if let MountSource::Volume { name, .. } = &m.source {
            validate_name(name)?;
        }
    }
    Ok(())
}

/// Fills an empty new volume directory `data` with what the image (its layer directories,
/// top-most first) has at `target`: a read-only overlay of the layers, the target resolved
/// inside it as if it were `/` (a symlink in the image cannot lead out of it), copied by tar
/// without following symlinks, owners and modes kept.
pub(crate) fn copy_up(lowerdirs: &[PathBuf], target: &str, data: &Path, scratch: &Path) -> Result<(), Error> {
    if lowerdirs.is_empty() || fs::read_dir(data).map_err(io("reading", data))?.next().is_some() {
        return Ok(());
    }
    // One layer is the image's whole tree already (and overlayfs wants two to stack read-only).
    if let [layer] = lowerdirs {
        return copy_dir(layer, target, data);
    }
    let mnt = tempfile::Builder::new().prefix("forge-volume-").tempdir_in(scratch).map_err(io("making a mountpoint in", scratch))?;
    forge_sandbox::mount_overlay(lowerdirs, None, mnt.path()).map_err(io("mounting the image's layers at", mnt.path()))?;
    let copied = copy_dir(mnt.path(), target, data);
    let _ = rustix::mount::unmount(mnt.path(), rustix::mount::UnmountFlags::DETACH);
    copied
}

fn copy_dir(root: &Path, target: &str, data: &Path) -> Result<(), Error> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let root_fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| io("opening", root)(e.into()))?;
    let relative = target.trim_start_matches('/');
    let dir = match rustix::fs::openat2(&root_fd, relative, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS) {
        Ok(fd) => fd,
        // Nothing there (or not a directory): nothing to copy.
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(()),
        Err(e) => return Err(io("opening in the image", target)(e.into())),
    };
    let source = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| io("making a pipe for", data)(e.into()))?;
    let (reader, writer) = (File::from(reader), File::from(writer));
    let pack = std::thread::scope(|s| {
        let packer = s.spawn(|| {
            let mut tar = tar::Builder::new(writer);
            tar.follow_symlinks(false);
            tar.append_dir_all(".", &source).and_then(|()| tar.finish())
        });
        let mut unpack = tar::Archive::new(reader);
        unpack.set_preserve_ownerships(true);
        unpack.set_preserve_permissions(true);
        unpack.set_preserve_mtime(true);
        unpack.set_unpack_xattrs(true);
        let unpacked = unpack.unpack(data);
        drop(unpack);
        let packed = packer.join().unwrap_or_else(|_| Err(std::io::Error::other("the copying thread panicked")));
        unpacked.and(packed)
    });
    pack.map_err(io("copying the image's files into the volume", data))
}
