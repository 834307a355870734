//! cgroup v1: a directory per controller, nested under the cgroup forge itself runs in (so a
//! limit on forge also bounds its steps).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{kill_procs, keyed, read, write, Usage};
use crate::spec::Limits;

/// The controllers a step's cgroup is made in.
pub(crate) const CONTROLLERS: [&str; 8] = ["memory", "cpu", "cpuacct", "pids", "freezer", "devices", "cpuset", "blkio"];

#[derive(Debug)]
pub(crate) struct CgroupV1 {
    /// (controller, directory) for each mounted controller.
    dirs: Vec<(&'static str, PathBuf)>,
}

/// Our own cgroup path in `controller`'s hierarchy, from /proc/self/cgroup.
fn own_path(controller: &str) -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            ctrls.split(',').any(|c| c == controller).then(|| path.to_string())
        })
        .unwrap_or_else(|| "/".into())
}

/// (controller, the `forge` directory steps' cgroups go in) for each mounted controller.
fn controller_parents(root: &Path) -> io::Result<Vec<(&'static str, PathBuf)>> {
    let mut out: Vec<(&'static str, PathBuf)> = Vec::new();
    for c in CONTROLLERS {
        let mount = root.join(c);
        if !mount.join("cgroup.procs").exists() {
            continue;
        }
        // Joint mounts (cpu,cpuacct) appear twice through symlinks; one directory is enough.
        let canonical = mount.canonicalize()?;
        if out.iter().any(|(_, d)| d.starts_with(&canonical)) {
            continue;
        }
        out.push((c, canonical.join(own_path(c).trim_start_matches('/')).join("forge")));
    }
    Ok(out)
}

/// The directories steps' cgroups go in, one per hierarchy.
pub(crate) fn parents(root: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(controller_parents(root)?.into_iter().map(|(_, d)| d).collect())
}

impl CgroupV1 {
    pub(crate) fn create(root: &Path, name: &str, limits: &Limits, all_devices: bool) -> io::Result<CgroupV1> {
        let parents = controller_parents(root)?;
        super::remove_orphans(&parents.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>());
        let mut dirs = Vec::new();
        for (c, parent) in parents {
            let dir = parent.join(name);
            std::fs::create_dir_all(&dir).map_err(|e| io::Error::new(e.kind(), format!("creating cgroup {}: {e}", dir.display())))?;
            if c == "cpuset" {
                inherit_cpuset(&dir)?;
            }
            dirs.push((c, dir));
        }
        let cg = CgroupV1 { dirs };
        if let Err(e) = cg.apply(limits, all_devices) {
            for (_, d) in &cg.dirs {
                let _ = std::fs::remove_dir(d);
            }
            return Err(e);
        }
        Ok(cg)
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs.iter().find(|(c, _)| *c == controller).map(|(_, d)| d.as_path())
    }

    fn apply(&self, limits: &Limits, all_devices: bool) -> io::Result<()> {
        let needs = |controller: &str, flag: &str| {
            self.dir(controller).ok_or_else(|| io::Error::other(format!("the cgroup v1 {controller} controller is not mounted: {flag} cannot be applied")))
        };
        if limits.memory_reservation.is_some() || limits.oom_kill_disable {
            needs("memory", "--memory-reservation or --oom-kill-disable")?;
        }
        if let Some(mem) = self.dir("memory") {
            if let Some(r) = limits.memory_reservation {
                write(&mem.join("memory.soft_limit_in_bytes"), &r.to_string())?;
            }
            if limits.oom_kill_disable {
                write(&mem.join("memory.oom_control"), "1")?;
            }
            if let Some(m) = limits.memory {
                write(&mem.join("memory.limit_in_bytes"), &m.to_string())?;
                // Docker's rule: without --memory-swap, swap may equal the memory limit.
                let swap = match limits.memory_swap {
                    Some(u64::MAX) => None,
                    Some(s) => Some(s),
                    None => Some(m.saturating_mul(2)),
                };
                if let (Some(s), true) = (swap, mem.join("memory.memsw.limit_in_bytes").exists()) {
                    write(&mem.join("memory.memsw.limit_in_bytes"), &s.to_string())?;
                }
            }
        }
        if let Some(cpu) = self.dir("cpu") {
            if let Some(s) = limits.cpu_shares {
                write(&cpu.join("cpu.shares"), &s.to_string())?;
            }
            if let Some((quota, period)) = limits.cpu_quota {
                write(&cpu.join("cpu.cfs_period_us"), &period.to_string())?;
                write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        if let Some(cpus) = &limits.cpuset_cpus {
            write(&needs("cpuset", "--cpuset-cpus")?.join("cpuset.cpus"), cpus)?;
        }
        if let Some(weight) = limits.blkio_weight {
            let blkio = needs("blkio", "--blkio-weight")?;
            // CFQ had blkio.weight; since Linux 5.0 only BFQ has weights, and only when it is
            // built in and chosen for a disk.
            let file = ["blkio.weight", "blkio.bfq.weight"].into_iter().map(|f| blkio.join(f)).find(|f| f.exists()).ok_or_else(|| {
                io::Error::other("this kernel has no block I/O weights (no blkio.weight or blkio.bfq.weight: the BFQ I/O scheduler is not available): --blkio-weight cannot be applied")
            })?;
            write(&file, &weight.to_string())?;
        }
        if let (Some(pids), Some(max)) = (self.dir("pids"), limits.pids) {
            write(&pids.join("pids.max"), &max.to_string())?;
        }
        match self.dir("devices") {
            // A new cgroup inherits its parent's rules: the host's, every device.
            Some(_) if all_devices => {}
            Some(devices) => {
                write(&devices.join("devices.deny"), "a")?;
                for rule in super::devices::DEFAULT {
                    // A rule the parent cgroup does not grant (forge itself in a container)
                    // cannot be granted here; the step simply goes without that device.
                    let _ = write(&devices.join("devices.allow"), &rule.to_string());
                }
            }
            // Without the controller a step could read the host's disks: refuse to run.
            None => return Err(io::Error::other("the cgroup v1 devices controller is not mounted: forge cannot limit a step's device access")),
        }
        Ok(())
    }

    pub(crate) fn add(&self, pid: u32) -> io::Result<()> {
        for (_, d) in &self.dirs {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    pub(crate) fn kill_all(&self) -> io::Result<()> {
        // Freezing first stops a fork bomb from outrunning the kill loop.
        let freezer = self.dir("freezer");
        if let Some(f) = freezer {
            let _ = write(&f.join("freezer.state"), "FROZEN");
        }
        let dir = self.dirs.first().map(|(_, d)| d.clone());
        match &dir {
            Some(d) => {
                for pid in super::procs(d) {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
                if let Some(f) = freezer {
                    let _ = write(&f.join("freezer.state"), "THAWED");
                }
                kill_procs(d)
            }
            None => Ok(()),
        }
    }

    pub(crate) fn usage(&self) -> Usage {
        let mut u = Usage::default();
        if let Some(acct) = self.dir("cpuacct").or(self.dir("cpu")) {
            if let Some(ns) = read(&acct.join("cpuacct.usage")).and_then(|s| s.parse::<u64>().ok()) {
                u.cpu_time = Duration::from_nanos(ns);
            }
        }
        if let Some(mem) = self.dir("memory") {
            u.peak_memory = read(&mem.join("memory.max_usage_in_bytes")).and_then(|s| s.parse().ok());
            u.oom_killed = keyed(&mem.join("memory.oom_control"), "oom_kill").is_some_and(|n| n > 0);
        }
        u
    }

    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.clone()).collect()
    }
}

/// A new cpuset cgroup starts with no CPUs and no memory nodes, and takes no process until it
/// has both: `dir` and the `forge` directory above it get their parent's.
fn inherit_cpuset(dir: &Path) -> io::Result<()> {
    let forge = dir.parent().expect("a step's cgroup is under forge's");
    for d in [forge, dir] {
        let parent = d.parent().expect("under the hierarchy's root");
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if read(&d.join(file)).unwrap_or_default().is_empty() {
                write(&d.join(file), &read(&parent.join(file)).unwrap_or_default())?;
            }
        }
    }
    Ok(())
}
