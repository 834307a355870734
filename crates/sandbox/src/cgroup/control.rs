//! A running container's cgroup as another forge process finds it again (from the directories
//! its supervisor recorded): freezing and thawing it (`pause`/`unpause`), its accounting
//! (`stats`) and its processes (`top`).

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::{is_unified, keyed, read, write, Owner, CGROUP_ROOT};

/// A sandbox's cgroup, found by its directories (one per v1 hierarchy, or the one v2 directory).
#[derive(Debug, Clone)]
pub struct ControlGroup {
    dirs: Vec<PathBuf>,
    unified: bool,
}

/// What a cgroup's accounting says right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// CPU time of every process, ever.
    pub cpu_time: Duration,
    /// Memory charged, page cache included.
    pub memory_usage: u64,
    /// The part of `memory_usage` the kernel can drop at once (inactive file pages): docker
    /// shows the usage without it.
    pub memory_inactive_file: u64,
    /// The memory limit, `None` without one.
    pub memory_limit: Option<u64>,
    /// Processes (threads included, as `pids.current` counts them).
    pub pids: u64,
    /// Bytes read from block devices.
    pub block_read: u64,
    /// Bytes written to block devices.
    pub block_write: u64,
}

/// Why a cgroup cannot be found or controlled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The process has no forge cgroup (it is gone, or is no sandbox's).
    #[error("process {0} is in no forge cgroup")]
    NoCgroup(u32),
    /// A recorded directory is not a forge sandbox's cgroup.
    #[error("{} is not a forge cgroup directory", .0.display())]
    NotForge(PathBuf),
    /// The freezer is missing (cgroup v1 without its freezer hierarchy).
    #[error("the cgroup freezer is not available (no freezer.state or cgroup.freeze)")]
    NoFreezer,
    /// The processes did not all stop (one in uninterruptible sleep stays freezing).
    #[error("the processes of {} did not freeze", .0.display())]
    NotFrozen(PathBuf),
    /// A control file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ControlGroup {
    /// The forge cgroup process `pid` is in (read from `/proc/<pid>/cgroup`).
    pub fn of_process(pid: u32) -> Result<ControlGroup, ControlError> {
        let root = Path::new(CGROUP_ROOT);
        let unified = is_unified(root)?;
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|_| ControlError::NoCgroup(pid))?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
            let relative = path.trim_start_matches('/');
            let dir = if unified {
                if !controllers.is_empty() {
                    continue;
                }
                root.join(relative)
            } else {
                let Some(c) = controllers.split(',').find(|c| super::v1::CONTROLLERS.contains(c)) else { continue };
                match root.join(c).canonicalize() {
                    Ok(mount) => mount.join(relative),
                    Err(_) => continue,
                }
            };
            if is_forge_dir(&dir) && !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        if dirs.is_empty() {
            return Err(ControlError::NoCgroup(pid));
        }
        Ok(ControlGroup { dirs, unified })
    }

    /// The cgroup of these recorded directories, each checked to be a forge sandbox's.
    pub fn open(dirs: &[PathBuf]) -> Result<ControlGroup, ControlError> {
        if let Some(bad) = dirs.iter().find(|d| !is_forge_dir(d)) {
            return Err(ControlError::NotForge(bad.clone()));
        }
        Ok(ControlGroup { dirs: dirs.to_vec(), unified: is_unified(Path::new(CGROUP_ROOT))? })
    }

    /// Its directories, to record.
    pub fn paths(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The first of its directories that has the control file `name`.
    fn file(&self, name: &str) -> Option<PathBuf> {
        self.dirs.iter().map(|d| d.join(name)).find(|f| f.exists())
    }

    /// Stops every process (the freezer), and returns once all are stopped.
    pub fn freeze(&self) -> Result<(), ControlError> {
        self.set_frozen(true)
    }

    /// Lets the processes run again.
    pub fn thaw(&self) -> Result<(), ControlError> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), ControlError> {
        let (file, value) = match (self.unified, frozen) {
            (true, true) => ("cgroup.freeze", "1"),
            (true, false) => ("cgroup.freeze", "0"),
            (false, true) => ("freezer.state", "FROZEN"),
            (false, false) => ("freezer.state", "THAWED"),
        };
        let path = self.file(file).ok_or(ControlError::NoFreezer)?;
        // Freezing is asynchronous: the state reads FREEZING (v1) or `frozen 0` (v2) until the
        // last process stopped; v1 asks to be told again while it is freezing.
        for _ in 0..500 {
            write(&path, value)?;
            if self.is_frozen() == frozen {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(ControlError::NotFrozen(path))
    }

    /// Whether its processes are frozen.
    pub fn is_frozen(&self) -> bool {
        if self.unified {
            self.file("cgroup.events").is_some_and(|f| keyed(&f, "frozen") == Some(1))
        } else {
            self.file("freezer.state").and_then(|f| read(&f)).is_some_and(|s| s == "FROZEN")
        }
    }

    /// Its processes' host PIDs.
    pub fn pids(&self) -> Vec<u32> {
        let Some(dir) = self.dirs.first() else { return Vec::new() };
        super::procs(dir).into_iter().filter_map(|p| u32::try_from(p).ok()).collect()
    }

    /// Its accounting now.
    pub fn stats(&self) -> Stats {
        let number = |name: &str| self.file(name).and_then(|f| read(&f)).and_then(|s| s.parse::<u64>().ok());
        let mut s = Stats::default();
        if self.unified {
            s.cpu_time = Duration::from_micros(self.file("cpu.stat").and_then(|f| keyed(&f, "usage_usec")).unwrap_or(0));
            s.memory_usage = number("memory.current").unwrap_or(0);
            s.memory_inactive_file = self.file("memory.stat").and_then(|f| keyed(&f, "inactive_file")).unwrap_or(0);
            // "max" does not parse: no limit.
            s.memory_limit = number("memory.max");
            let io = self.file("io.stat").and_then(|f| read(&f)).unwrap_or_default();
            for field in io.split_whitespace() {
                match field.split_once('=') {
                    Some(("rbytes", n)) => s.block_read += n.parse().unwrap_or(0),
                    Some(("wbytes", n)) => s.block_write += n.parse().unwrap_or(0),
                    _ => {}
                }
            }
        } else {
            s.cpu_time = Duration::from_nanos(number("cpuacct.usage").unwrap_or(0));
            s.memory_usage = number("memory.usage_in_bytes").unwrap_or(0);
            s.memory_inactive_file = self.file("memory.stat").and_then(|f| keyed(&f, "total_inactive_file")).unwrap_or(0);
            // No limit reads as the largest page-aligned number.
            s.memory_limit = number("memory.limit_in_bytes").filter(|l| *l < (1u64 << 62));
            let io = self.file("blkio.throttle.io_service_bytes_recursive").and_then(|f| read(&f)).unwrap_or_default();
            for line in io.lines() {
                let mut fields = line.split_whitespace();
                match (fields.next(), fields.next(), fields.next().and_then(|n| n.parse::<u64>().ok())) {
                    (Some(_device), Some("Read"), Some(n)) => s.block_read += n,
                    (Some(_device), Some("Write"), Some(n)) => s.block_write += n,
                    _ => {}
                }
            }
        }
        s.pids = number("pids.current").unwrap_or(0);
        s
    }
}

/// Whether `dir` is a sandbox cgroup forge made: under the cgroup mount, in a `forge`
/// directory, named after its forge process, with no `..` to lead elsewhere.
fn is_forge_dir(dir: &Path) -> bool {
    let plain = dir.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let named = dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| Owner::of(n).is_some());
    let in_forge = dir.parent().and_then(Path::file_name).is_some_and(|n| n == "forge");
    plain && named && in_forge && dir.starts_with(CGROUP_ROOT) && dir.is_dir()
}
