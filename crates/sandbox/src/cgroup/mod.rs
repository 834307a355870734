//! One cgroup per step, on cgroup v1 (one directory per controller) or v2 (one unified
//! directory), detected at run time: limits, device rules, accounting, OOM detection, killing
//! every process however it forked, and removal.
//!
//! A step's cgroup is named after the forge process that made it (`<pid>-<start time>-<n>`),
//! so cgroups a killed forge left behind are recognised, emptied and removed the next time any
//! forge process makes one.

mod control;
mod devices;
mod v1;
mod v2;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spec::Limits;

pub use control::{ControlError, ControlGroup, Stats};

/// The cgroup v1 controllers a sandbox's cgroup is made in.
pub(crate) use v1::CONTROLLERS as V1_CONTROLLERS;

/// Where cgroups are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A step's cgroup.
#[derive(Debug)]
pub(crate) enum Cgroup {
    V1(v1::CgroupV1),
    V2(v2::CgroupV2),
}

/// What a step used.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Usage {
    pub(crate) cpu_time: Duration,
    pub(crate) peak_memory: Option<u64>,
    pub(crate) oom_killed: bool,
}

impl Cgroup {
    /// Creates a step's cgroup with `limits` and Docker's device rules (every device when
    /// `all_devices`: a privileged container), after removing the ones dead forge processes
    /// left beside it.
    pub(crate) fn create(limits: &Limits, all_devices: bool) -> io::Result<Cgroup> {
        let name = Owner::current().name();
        if is_unified(Path::new(CGROUP_ROOT))? {
            Ok(Cgroup::V2(v2::CgroupV2::create(Path::new(CGROUP_ROOT), &name, limits, all_devices)?))
        } else {
            Ok(Cgroup::V1(v1::CgroupV1::create(Path::new(CGROUP_ROOT), &name, limits, all_devices)?))
        }
    }

    /// Moves process `pid` (and so its future children) into the cgroup.
    pub(crate) fn add(&self, pid: u32) -> io::Result<()> {
        match self {
            Cgroup::V1(c) => c.add(pid),
            Cgroup::V2(c) => c.add(pid),
        }
    }

    /// Kills every process in the cgroup and waits until it is empty.
    pub(crate) fn kill_all(&self) -> io::Result<()> {
        match self {
            Cgroup::V1(c) => c.kill_all(),
            Cgroup::V2(c) => c.kill_all(),
        }
    }

    /// CPU time, peak memory and whether the OOM killer fired.
    pub(crate) fn usage(&self) -> Usage {
        match self {
            Cgroup::V1(c) => c.usage(),
            Cgroup::V2(c) => c.usage(),
        }
    }

    /// Every directory of the cgroup (for tests and diagnostics).
    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V1(c) => c.paths(),
            Cgroup::V2(c) => vec![c.path().to_path_buf()],
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = self.kill_all();
        for p in self.paths() {
            remove(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Owner;

    #[test]
    fn owners_are_read_back_from_names() {
        let me = Owner::current();
        assert_eq!(Owner::of(&me.name()), Some(me));
        assert!(me.is_alive());
        assert_eq!(Owner::of("12-7"), Some(Owner { pid: 12, start: None }));
        for name in ["forge", "12", "a-1-2", "1-2-3-4", "-1-2"] {
            assert_eq!(Owner::of(name), None, "{name}");
        }
        // The same pid with another start time is a process that reused the pid.
        assert!(!Owner { start: me.start.map(|s| s + 1), ..me }.is_alive());
    }
}

/// Removes an empty cgroup directory; rmdir may race with the kernel still tearing down the
/// last task.
fn remove(dir: &Path) {
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => std::thread::sleep(Duration::from_millis(10)),
            _ => break,
        }
    }
}

/// The forge process a cgroup belongs to: its pid and start time (clock ticks since boot), so
/// a recycled pid does not pass for the owner. Names from forge versions before the start
/// time was recorded (`<pid>-<n>`) have only the pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid: u32,
    start: Option<u64>,
}

impl Owner {
    fn current() -> Owner {
        let pid = std::process::id();
        Owner { pid, start: start_time(pid) }
    }

    /// A fresh cgroup name for this owner.
    fn name(self) -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        match self.start {
            Some(start) => format!("{}-{start}-{n}", self.pid),
            None => format!("{}-{n}", self.pid),
        }
    }

    /// The owner named in a cgroup's name, if it has one of the two forms.
    fn of(name: &str) -> Option<Owner> {
        let numbers: Vec<u64> = name.split('-').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        match numbers[..] {
            [pid, start, _] => Some(Owner { pid: u32::try_from(pid).ok()?, start: Some(start) }),
            [pid, _] => Some(Owner { pid: u32::try_from(pid).ok()?, start: None }),
            _ => None,
        }
    }

    fn is_alive(self) -> bool {
        match self.start {
            Some(start) => start_time(self.pid) == Some(start),
            None => Path::new(&format!("/proc/{}", self.pid)).exists(),
        }
    }
}

/// Field 22 of `/proc/<pid>/stat`: when the process started.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; the fields after it do not.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Empties and removes the cgroups in `parents` whose forge process is gone (killed before it
/// could clean up). Returns how many it removed.
fn remove_orphans(parents: &[PathBuf]) -> usize {
    let mut orphans = Vec::new();
    for parent in parents {
        let Ok(entries) = std::fs::read_dir(parent) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if Owner::of(&name).is_some_and(|o| !o.is_alive()) {
                orphans.push(e.path());
            }
        }
    }
    // Thaw, then kill in every hierarchy, then remove: a frozen process cannot die (forge may
    // have been killed while it froze the step), and on v1 a process sits in one directory per
    // controller, each of which must be empty before it goes.
    for dir in &orphans {
        let _ = write(&dir.join("freezer.state"), "THAWED");
        let _ = write(&dir.join("cgroup.freeze"), "0");
    }
    for dir in &orphans {
        let _ = kill_procs(dir);
    }
    for dir in &orphans {
        remove(dir);
    }
    orphans.iter().filter(|d| !d.exists()).count()
}

/// Removes what killed forge processes left in the cgroup hierarchies this process would use.
pub(crate) fn remove_leftovers() -> io::Result<usize> {
    let root = Path::new(CGROUP_ROOT);
    let parents = if is_unified(root)? { vec![v2::parent(root)] } else { v1::parents(root)? };
    Ok(remove_orphans(&parents))
}

/// Whether `root` is a cgroup2 mount (a pure v2 host) rather than a tmpfs of v1 hierarchies.
fn is_unified(root: &Path) -> io::Result<bool> {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let st = rustix::fs::statfs(root)?;
    Ok(st.f_type as i64 == CGROUP2_SUPER_MAGIC)
}

/// Writes a control file, naming it in the error.
fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value).map_err(|e| io::Error::new(e.kind(), format!("writing {value:?} to {}: {e}", path.display())))
}

/// Reads a control file as trimmed text (`None` when it does not exist).
fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The value of `key` in a flat-keyed control file (`memory.events`, `cpu.stat`...).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    read(path)?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The pids listed in a `cgroup.procs`.
fn procs(dir: &Path) -> Vec<i32> {
    read(&dir.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.parse().ok()).collect()
}

/// Sends SIGKILL to every process of `dir` until none is left (or a few seconds pass: a process
/// in uninterruptible sleep cannot be hurried).
fn kill_procs(dir: &Path) -> io::Result<()> {
    for _ in 0..500 {
        let pids = procs(dir);
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(io::Error::other(format!("processes of {} did not die", dir.display())))
}
