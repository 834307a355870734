//! The crate's raw system calls: network namespaces made and entered by one thread, their
//! bind mounts, and `flock`s. (None of them needs `unsafe`: nix and rustix wrap them; they are
//! kept here so the rest reads as a script.)

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sched::{setns, unshare, CloneFlags};
use rustix::fs::{flock, FlockOperation};

/// Makes a new network namespace and keeps it alive by bind-mounting it at `path` (a new empty
/// file), as `ip netns add` does, so processes started later can join it by path.
///
/// A network namespace belongs to a thread, not to the process: a short-lived thread unshares
/// it and mounts its own `/proc/thread-self/ns/net`, and the caller's threads never leave the
/// host's namespace. (`rtnetlink::NetworkNamespace::add` forks instead, which is unsound in a
/// multi-threaded process such as forge.)
pub(crate) fn create_netns(path: &Path) -> io::Result<()> {
    OpenOptions::new().write(true).create_new(true).open(path)?;
    let target = path.to_path_buf();
    let made = std::thread::spawn(move || -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        rustix::mount::mount_bind("/proc/thread-self/ns/net", &target)?;
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")));
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Unmounts and removes a namespace file made by [`create_netns`]; the namespace itself goes
/// away with its last process. A file that is not (or no longer) mounted is just removed.
pub(crate) fn remove_netns(path: &Path) -> io::Result<()> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Runs `f` on a new thread that has entered the network namespace at `netns` (the caller's
/// own when `None`); the thread ends with `f`, so no thread of the caller changes namespace.
pub(crate) fn in_netns<T: Send>(netns: Option<&Path>, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let netns: Option<PathBuf> = netns.map(Path::to_path_buf);
    std::thread::scope(|s| {
        s.spawn(move || -> io::Result<T> {
            if let Some(path) = netns {
                let file = File::open(&path)?;
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET)?;
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the netlink thread panicked")))
    })
}

/// A held `flock`, released when dropped or when its process dies, which is how a lease tells
/// a live owner from a dead one without trusting PIDs. (The layer store has the same idea
/// privately; this crate does not depend on the store.)
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for the exclusive lock of `path` (created if missing).
    pub(crate) fn exclusive(path: &Path) -> io::Result<FileLock> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        flock(&file, FlockOperation::LockExclusive)?;
        Ok(FileLock { _file: file })
    }

    /// Takes the exclusive lock of `path` at once, or `Ok(None)` when someone holds it.
    pub(crate) fn try_exclusive(path: &Path) -> io::Result<Option<FileLock>> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The start time of process `pid` (`/proc/<pid>/stat` field 22, clock ticks since boot), so a
/// reused PID is never taken for the process a lease names. (The sandbox and the runtime read
/// the same field for their own records; this crate depends on neither.)
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Whether two paths are one file (two `ns/net` links: one namespace).
pub(crate) fn same_file(a: &Path, b: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (std::fs::metadata(a)?, std::fs::metadata(b)?);
    Ok((a.dev(), a.ino()) == (b.dev(), b.ino()))
}

/// Lets every user of the namespace at `netns` bind ports below 1024 and send ICMP echo
/// through datagram sockets, as docker sets up every container's own namespace: no port or
/// ping is the host's there, so these host defaults protect nothing inside. The values of
/// `/proc/sys/net` are those of the writing thread's namespace.
pub(crate) fn open_ports_and_ping(netns: &Path) -> io::Result<()> {
    in_netns(Some(netns), || -> io::Result<()> {
        std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")?;
        std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
    })?
}
