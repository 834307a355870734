//! Joining a sandbox that runs (`forge exec`): its namespaces, its root and its cgroups, so a
//! second command sees what the first one sees and is limited and accounted with it.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

/// The sandbox's PID 1 (in the caller's PID namespace): the first child of the init whose PID
/// [`crate::Event::Started`] reported. The init's first stage stays outside the new PID
/// namespace; PID 1 holds every namespace and the root the command sees.
fn pid1(init: u32) -> io::Result<u32> {
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))?;
    children.split_whitespace().next().and_then(|p| p.parse().ok()).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("the sandbox of init {init} runs no process")))
}

/// The namespaces joined, in nsenter's order; the mount namespace before the cgroup one, so
/// the cgroup namespace's view is taken inside the sandbox's mounts.
const NAMESPACES: [(&str, CloneFlags); 6] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
];

/// In the init's first stage (single-threaded, as joining a mount namespace requires): joins
/// the namespaces of the sandbox of `init` and enters its root. Processes forked afterwards
/// are in its PID namespace.
pub(crate) fn join(init: u32) -> Result<(), String> {
    let target = pid1(init).map_err(|e| format!("finding the sandbox's processes: {e}"))?;
    // Everything is opened before the first join: /proc then still shows the host's view.
    let open = |what: &str| File::open(format!("/proc/{target}/{what}")).map_err(|e| format!("opening /proc/{target}/{what}: {e}"));
    let root = open("root")?;
    let namespaces = NAMESPACES.iter().map(|(name, flag)| Ok((open(&format!("ns/{name}"))?, *flag, *name))).collect::<Result<Vec<_>, String>>()?;
    for (fd, flag, name) in &namespaces {
        nix::sched::setns(fd.as_fd(), *flag).map_err(|e| format!("joining the {name} namespace: {e}"))?;
    }
    // Joining a mount namespace leaves this process's root where it was: the sandbox's root
    // is its PID 1's, reached through the descriptor opened before.
    nix::unistd::fchdir(&root).map_err(|e| format!("entering the sandbox's root: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("entering the sandbox's root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("entering the sandbox's root: {e}"))?;
    Ok(())
}

/// Puts `pid` into every cgroup of the sandbox of `init` (before it starts anything, so all
/// it starts is accounted and limited there). Fails when it finds none of forge's.
pub(crate) fn join_cgroups(init: u32, pid: u32) -> io::Result<()> {
    let target = pid1(init)?;
    let list = std::fs::read_to_string(format!("/proc/{target}/cgroup"))?;
    let mut joined = 0;
    for line in list.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else { continue };
        if path == "/" {
            continue;
        }
        let root = Path::new(crate::cgroup::ROOT);
        let mounts: Vec<PathBuf> = if controllers.is_empty() {
            // The v2 hierarchy: a hybrid host's `unified`, or the root of a pure v2 host.
            vec![root.join("unified"), root.to_path_buf()]
        } else {
            vec![root.join(controllers.trim_start_matches("name="))]
        };
        let rel = path.trim_start_matches('/');
        if let Some(dir) = mounts.iter().map(|m| m.join(rel)).find(|d| d.join("cgroup.procs").exists()) {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string()).map_err(|e| io::Error::new(e.kind(), format!("joining {}: {e}", dir.display())))?;
            joined += 1;
        }
    }
    if joined == 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("the sandbox of init {init} is in no cgroup forge made")));
    }
    Ok(())
}
