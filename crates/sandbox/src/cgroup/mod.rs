//! One cgroup per step, on cgroup v1 (one directory per controller) or v2 (one unified
//! directory), detected at run time: limits, accounting, OOM detection, killing every process
//! however it forked, and removal.

mod v1;
mod v2;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spec::Limits;

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
    /// Creates the cgroup `name` with `limits`.
    pub(crate) fn create(name: &str, limits: &Limits) -> io::Result<Cgroup> {
        if is_unified(Path::new(CGROUP_ROOT))? {
            Ok(Cgroup::V2(v2::CgroupV2::create(Path::new(CGROUP_ROOT), name, limits)?))
        } else {
            Ok(Cgroup::V1(v1::CgroupV1::create(Path::new(CGROUP_ROOT), name, limits)?))
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
            // rmdir may race with the kernel still tearing down the last task.
            for _ in 0..50 {
                match std::fs::remove_dir(&p) {
                    Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => std::thread::sleep(Duration::from_millis(10)),
                    _ => break,
                }
            }
        }
    }
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
