//! cgroup v2: one directory under `/sys/fs/cgroup/forge/`, with the memory, cpu and pids
//! controllers enabled for it and Docker's device rules as an eBPF program. It sits at the top
//! level rather than under forge's own cgroup because v2 forbids enabling controllers for
//! children of a cgroup that holds processes.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{kill_procs, keyed, read, write, Usage};
use crate::spec::Limits;

#[derive(Debug)]
pub(crate) struct CgroupV2 {
    dir: PathBuf,
}

/// The directory steps' cgroups go in.
pub(crate) fn parent(root: &Path) -> PathBuf {
    root.join("forge")
}

impl CgroupV2 {
    pub(crate) fn create(root: &Path, name: &str, limits: &Limits, all_devices: bool) -> io::Result<CgroupV2> {
        let parent = parent(root);
        std::fs::create_dir_all(&parent)?;
        super::remove_orphans(std::slice::from_ref(&parent));
        let available = read(&root.join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &&str| available.split(' ').any(|a| a == *c);
        let wanted: Vec<&str> = ["memory", "cpu", "pids"].into_iter().filter(has).collect();
        let enable = wanted.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
        if !enable.is_empty() {
            // Best effort: the root usually has them enabled already.
            let _ = write(&root.join("cgroup.subtree_control"), &enable);
            write(&parent.join("cgroup.subtree_control"), &enable)?;
        }
        // Only for --cpuset-cpus and --blkio-weight, which say so when their files are missing:
        // a host that cannot enable them still runs everything else.
        for optional in ["cpuset", "io"].into_iter().filter(has) {
            let _ = write(&root.join("cgroup.subtree_control"), &format!("+{optional}"));
            let _ = write(&parent.join("cgroup.subtree_control"), &format!("+{optional}"));
        }
        let dir = parent.join(name);
        std::fs::create_dir(&dir).map_err(|e| io::Error::new(e.kind(), format!("creating cgroup {}: {e}", dir.display())))?;
        let cg = CgroupV2 { dir };
        // Without a device program every device is allowed: only for a privileged container.
        let devices = || if all_devices { Ok(()) } else { cg.limit_devices() };
        if let Err(e) = cg.apply(limits).and_then(|()| devices()) {
            let _ = std::fs::remove_dir(&cg.dir);
            return Err(e);
        }
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
        if let Some(r) = limits.memory_reservation {
            write(&d.join("memory.low"), &r.to_string())?;
        }
        if limits.oom_kill_disable {
            return Err(io::Error::other("cgroup v2 cannot keep the OOM killer off: --oom-kill-disable needs a cgroup v1 host"));
        }
        if let Some(cpus) = &limits.cpuset_cpus {
            let file = d.join("cpuset.cpus");
            if !file.exists() {
                return Err(io::Error::other("the cgroup v2 cpuset controller is not available: --cpuset-cpus cannot be applied"));
            }
            write(&file, cpus)?;
        }
        if let Some(weight) = limits.blkio_weight {
            // BFQ takes blkio's 10..1000 as is; io.weight (blk-iocost) counts 1..10000 around 100.
            let (file, value) = if d.join("io.bfq.weight").exists() {
                ("io.bfq.weight", u32::from(weight))
            } else {
                ("io.weight", 1 + (u32::from(weight) - 10) * 9999 / 990)
            };
            if !d.join(file).exists() {
                return Err(io::Error::other("the cgroup v2 io controller has no weights here: --blkio-weight cannot be applied"));
            }
            write(&d.join(file), &value.to_string())?;
        }
        Ok(())
    }

    /// Attaches the device program. The cgroup keeps it loaded; it goes with the directory.
    fn limit_devices(&self) -> io::Result<()> {
        let program = crate::sys::load_device_program(&super::devices::program(&super::devices::DEFAULT))?;
        let dir = rustix::fs::open(&self.dir, rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())?;
        crate::sys::attach_device_program(dir.as_fd(), program.as_fd())
            .map_err(|e| io::Error::new(e.kind(), format!("attaching the device program to {}: {e}", self.dir.display())))
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;

    /// A cgroup2 hierarchy to try the device program on: the host's, or on a hybrid host the
    /// empty one beside the v1 controllers (device programs need no controller).
    fn unified_root() -> PathBuf {
        let root = Path::new(super::super::CGROUP_ROOT);
        if super::super::is_unified(root).unwrap() {
            root.to_path_buf()
        } else {
            root.join("unified")
        }
    }

    #[test]
    fn the_device_program_denies_disks_and_allows_pseudo_devices() {
        if !rustix::process::geteuid().is_root() {
            panic!("this test needs root (cgroups, mknod)");
        }
        let scratch = tempfile::tempdir().unwrap();
        let disk = scratch.path().join("loop");
        // A block device node (a loop device's numbers), as a step could make or a layer ship.
        let made = Command::new("mknod").arg(&disk).args(["b", "7", "0"]).status().unwrap();
        assert!(made.success());
        let name = format!("test-devices-{}", std::process::id());
        let cg = super::super::Cgroup::V2(CgroupV2::create(&unified_root(), &name, &Limits::default(), false).unwrap());
        // The shell waits for a line, so it is in the cgroup before it opens anything.
        let script = format!("read go; dd if={} bs=1 count=1 of=/dev/null 2>&1; head -c1 /dev/zero | wc -c", disk.display());
        let mut child = Command::new("sh").args(["-c", &script]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let added = cg.add(child.id());
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let out = child.wait_with_output().unwrap();
        drop(cg);
        added.unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains("Operation not permitted"), "{out}");
        assert!(out.trim_end().ends_with('1'), "/dev/zero is not readable: {out}");
        assert!(!unified_root().join("forge").join(&name).exists());
    }
}
