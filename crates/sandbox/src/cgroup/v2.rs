//! cgroup v2: one directory under `/sys/fs/cgroup/forge/`, with the memory, cpu and pids
//! controllers enabled for it. It sits at the top level rather than under forge's own cgroup
//! because v2 forbids enabling controllers for children of a cgroup that holds processes.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{kill_procs, keyed, read, write, Usage};
use crate::spec::Limits;

#[derive(Debug)]
pub(crate) struct CgroupV2 {
    dir: PathBuf,
}

impl CgroupV2 {
    pub(crate) fn create(root: &Path, name: &str, limits: &Limits) -> io::Result<CgroupV2> {
        let parent = root.join("forge");
        std::fs::create_dir_all(&parent)?;
        let available = read(&root.join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<&str> = ["memory", "cpu", "pids"].into_iter().filter(|c| available.split(' ').any(|a| a == *c)).collect();
        let enable = wanted.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
        if !enable.is_empty() {
            // Best effort: the root usually has them enabled already.
            let _ = write(&root.join("cgroup.subtree_control"), &enable);
            write(&parent.join("cgroup.subtree_control"), &enable)?;
        }
        let dir = parent.join(name);
        std::fs::create_dir(&dir).map_err(|e| io::Error::new(e.kind(), format!("creating cgroup {}: {e}", dir.display())))?;
        let cg = CgroupV2 { dir };
        cg.apply(limits)?;
        Ok(cg)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    fn apply(&self, limits: &Limits) -> io::Result<()> {
        let d = &self.dir;
        if let Some(m) = limits.memory {
            write(&d.join("memory.max"), &m.to_string())?;
            let swap = match limits.memory_swap {
                Some(u64::MAX) => "max".to_string(),
                Some(s) => s.saturating_sub(m).to_string(),
                None => m.to_string(),
            };
            if d.join("memory.swap.max").exists() {
                write(&d.join("memory.swap.max"), &swap)?;
            }
        }
        if let Some(shares) = limits.cpu_shares {
            // The conversion runc and the kernel docs use: [2, 262144] onto [1, 10000].
            let weight = 1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142;
            write(&d.join("cpu.weight"), &weight.to_string())?;
        }
        if let Some((quota, period)) = limits.cpu_quota {
            let q = if quota < 0 { "max".to_string() } else { quota.to_string() };
            write(&d.join("cpu.max"), &format!("{q} {period}"))?;
        }
        if let Some(p) = limits.pids {
            write(&d.join("pids.max"), &p.to_string())?;
        }
        Ok(())
    }

    pub(crate) fn add(&self, pid: u32) -> io::Result<()> {
        write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    pub(crate) fn kill_all(&self) -> io::Result<()> {
        // cgroup.kill (Linux 5.14) kills atomically, forks included.
        if write(&self.dir.join("cgroup.kill"), "1").is_err() {
            let _ = write(&self.dir.join("cgroup.freeze"), "1");
            for pid in super::procs(&self.dir) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            let _ = write(&self.dir.join("cgroup.freeze"), "0");
        }
        kill_procs(&self.dir)
    }

    pub(crate) fn usage(&self) -> Usage {
        Usage {
            cpu_time: Duration::from_micros(keyed(&self.dir.join("cpu.stat"), "usage_usec").unwrap_or(0)),
            // memory.peak exists from Linux 5.19.
            peak_memory: read(&self.dir.join("memory.peak")).and_then(|s| s.parse().ok()),
            oom_killed: keyed(&self.dir.join("memory.events"), "oom_kill").is_some_and(|n| n > 0),
        }
    }
}
