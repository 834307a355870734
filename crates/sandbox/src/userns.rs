//! User namespaces for `--userns=remap`: the container's ids 0..size are host ids
//! `host_uid..`/`host_gid..`, so its root is an unprivileged user on the host.
//!
//! The image's layers stay as they are on disk (owned by host root): the overlay is made of
//! idmapped mounts of them (`mount_setattr(MOUNT_ATTR_IDMAP)`), which show disk id N as host id
//! `host_uid + N`, and write host id `host_uid + N` back as N. A container's writable layer
//! therefore holds the same ids as without the remap, and `commit`/`diff` need no shift.
//!
//! Order, all in the init (see `init.rs`): the namespace is made first (by a throwaway child,
//! whose maps the init writes as host root), the filesystem is built as host root with the
//! file-system ids of the container's root (so the mountpoints the sandbox creates in the
//! rootfs land as root-owned on disk), and only then does PID 1 join the namespace, with new
//! UTS, IPC and (without the host's network) network namespaces owned by it, so the container's
//! root keeps its capabilities over its hostname and its loopback.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Gid, Uid};
use serde::{Deserialize, Serialize};

use crate::sys;

/// A container's id mapping: container ids `0..size` are host ids `host_uid..host_uid+size`
/// (and the same for groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    /// The host uid of the container's root.
    pub host_uid: u32,
    /// The host gid of the container's root group.
    pub host_gid: u32,
    /// How many ids are mapped (65536 for a docker-style range).
    pub size: u32,
}

impl IdMapping {
    /// The host gid of the container's gid `gid` (for mount options that take a host id).
    pub(crate) fn host_gid_of(&self, gid: u32) -> u32 {
        self.host_gid + gid
    }
}

/// One line of `/etc/subuid` or `/etc/subgid`: `name` (a user name or uid) may use the ids
/// `start..start+count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubordinateRange {
    /// The user name or uid.
    pub name: String,
    /// The first id.
    pub start: u64,
    /// How many.
    pub count: u64,
}

/// Parses a subordinate-id file (`name:start:count` lines, `#` comments); a malformed line
/// is an error naming it (a file forge cannot read is one it must not append to).
pub fn subordinate_ranges(text: &str) -> Result<Vec<SubordinateRange>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("line {}: {line:?} is not name:start:count", i + 1);
        let mut f = line.split(':');
        let (Some(name), Some(start), Some(count), None) = (f.next(), f.next(), f.next(), f.next()) else { return Err(bad()) };
        let (start, count) = (start.parse::<u64>().map_err(|_| bad())?, count.parse::<u64>().map_err(|_| bad())?);
        out.push(SubordinateRange { name: name.to_string(), start, count });
    }
    Ok(out)
}

/// Makes a user namespace with `map` and returns a descriptor of it; nothing is in it once
/// this returns. Called by the single-threaded init, as host root.
pub(crate) fn create(map: &IdMapping) -> Result<OwnedFd, String> {
    // A user namespace's maps can only be written from outside it, by a process with
    // CAP_SETUID over the parent namespace: a child unshares, the init writes its maps.
    let (ready_read, ready_write) = crate::sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (done_read, done_write) = crate::sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    match sys::fork_single_threaded().map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(ready_read);
            drop(done_write);
            let mut ready_write = ready_write;
            let ok = unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = ready_write.write_all(if ok { b"1" } else { b"0" });
            drop(ready_write);
            // Holds the namespace alive until the init has its descriptor (end of file).
            let _ = (&done_read).read(&mut [0u8; 1]);
            sys::exit_now(0);
        }
        ForkResult::Parent { child } => {
            drop(ready_write);
            drop(done_read);
            let result = (|| {
                let mut ok = [0u8; 1];
                (&ready_read).read_exact(&mut ok).map_err(|e| format!("waiting for the user namespace: {e}"))?;
                if ok[0] != b'1' {
                    return Err("unsharing a user namespace failed".to_string());
                }
                let proc_dir = Path::new("/proc").join(child.as_raw().to_string());
                std::fs::write(proc_dir.join("uid_map"), format!("0 {} {}\n", map.host_uid, map.size)).map_err(|e| format!("writing the uid map: {e}"))?;
                std::fs::write(proc_dir.join("gid_map"), format!("0 {} {}\n", map.host_gid, map.size)).map_err(|e| format!("writing the gid map: {e}"))?;
                let ns = std::fs::File::open(proc_dir.join("ns/user")).map_err(|e| format!("opening the user namespace: {e}"))?;
                Ok(OwnedFd::from(ns))
            })();
            drop(done_write);
            let _ = waitpid(child, None);
            result
        }
    }
}

/// A detached copy of the mount at `path` that shows its files' owners through `userns`'s
/// maps, for overlay layers.
pub(crate) fn idmapped(path: &Path, userns: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    use rustix::mount::{open_tree, OpenTreeFlags};
    let ctx = |what: &'static str| move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()));
    let tree = open_tree(rustix::fs::CWD, path, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC).map_err(|e| ctx("cloning the mount of")(e.into()))?;
    sys::set_idmap(tree.as_fd(), userns).map_err(ctx("idmapping"))?;
    Ok(tree)
}

/// Runs `f` with the file-system ids of the container's root and every capability effective,
/// so files it creates through the idmapped overlay are owned by root inside, and host paths
/// (scratch files, bind sources) stay reachable.
pub(crate) fn as_container_root<T>(map: &IdMapping, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    nix::unistd::setfsgid(Gid::from_raw(map.host_gid));
    nix::unistd::setfsuid(Uid::from_raw(map.host_uid));
    // Leaving file-system uid 0 clears the file capabilities (DAC_OVERRIDE...) from the
    // effective set; they are still permitted.
    let permitted = caps::read(None, caps::CapSet::Permitted).map_err(|e| format!("reading capabilities: {e}"))?;
    caps::set(None, caps::CapSet::Effective, &permitted).map_err(|e| format!("raising capabilities: {e}"))?;
    let out = f();
    nix::unistd::setfsuid(Uid::from_raw(0));
    nix::unistd::setfsgid(Gid::from_raw(0));
    out
}

/// PID 1 joins the container's user namespace as its root, and gets the namespaces its root
/// must own: UTS and IPC, and the network unless it is the host's.
pub(crate) fn enter(userns: BorrowedFd<'_>, own_network: bool) -> Result<(), String> {
    setns(userns, CloneFlags::CLONE_NEWUSER).map_err(|e| format!("joining the user namespace: {e}"))?;
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups in the user namespace: {e}"))?;
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(|e| format!("setgid 0 in the user namespace: {e}"))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(|e| format!("setuid 0 in the user namespace: {e}"))?;
    let mut flags = CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if own_network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| format!("unsharing namespaces in the user namespace: {e}"))
}
