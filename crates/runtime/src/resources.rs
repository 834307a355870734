//! A container's resources: docker's rules for the resource flags, checked at create, and its
//! running cgroup, which `pause`/`unpause` freeze and thaw and `stats`/`top` read.

use forge_sandbox::{ControlGroup, Limits};

use crate::containers::{Container, Containers};
use crate::error::Error;
use crate::state::{State, Status};
use crate::sys::start_time;

/// Docker's smallest memory limit and reservation.
const MIN_MEMORY: u64 = 6 << 20;

/// Checks `limits` by docker's rules, against this host's CPUs.
pub fn check_limits(limits: &Limits) -> Result<(), Error> {
    let bad = |message: String| Err(Error::Limits(message));
    if let Some(m) = limits.memory.filter(|m| *m < MIN_MEMORY) {
        return bad(format!("the memory limit (-m) is at least 6 MiB, not {m} bytes"));
    }
    match (limits.memory, limits.memory_swap) {
        (None, Some(_)) => return bad("--memory-swap needs a memory limit (-m) as well".into()),
        (Some(m), Some(s)) if s != u64::MAX && s < m => {
            return bad("--memory-swap counts memory plus swap: it must be at least the memory limit (-m)".into());
        }
        _ => {}
    }
    if let Some(r) = limits.memory_reservation {
        if r < MIN_MEMORY {
            return bad(format!("--memory-reservation is at least 6 MiB, not {r} bytes"));
        }
        if limits.memory.is_some_and(|m| m < r) {
            return bad("the memory limit (-m) must be at least --memory-reservation".into());
        }
    }
    if let Some(w) = limits.blkio_weight.filter(|w| !(10..=1000).contains(w)) {
        return bad(format!("--blkio-weight is from 10 to 1000, not {w}"));
    }
    let online = online_cpus();
    if let Some((quota, period)) = limits.cpu_quota {
        // The kernel's smallest CFS quota is 1 ms, a hundredth of docker's 100 ms period.
        let cpus = quota as f64 / period as f64;
        if quota < 1000 || cpus > online.len() as f64 {
            return bad(format!("--cpus is from 0.01 to {}.00 on this host, which has {} CPUs", online.len(), online.len()));
        }
    }
    if let Some(set) = &limits.cpuset_cpus {
        let Some(asked) = cpu_list(set) else {
            return bad(format!("--cpuset-cpus {set:?} is not a CPU list such as 0-2,4"));
        };
        let missing: Vec<String> = asked.iter().filter(|c| !online.contains(c)).map(u32::to_string).collect();
        if !missing.is_empty() {
            let available = std::fs::read_to_string(ONLINE).unwrap_or_default();
            return bad(format!("--cpuset-cpus asks for CPUs {} that this host does not have (it has {})", missing.join(","), available.trim()));
        }
    }
    Ok(())
}

/// The kernel's list of online CPUs.
const ONLINE: &str = "/sys/devices/system/cpu/online";

fn online_cpus() -> Vec<u32> {
    std::fs::read_to_string(ONLINE).ok().and_then(|s| cpu_list(s.trim())).unwrap_or_else(|| {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        (0..n).collect()
    })
}

/// The kernel's CPU list format (`0-2,4`), as numbers; `None` when malformed.
fn cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        // The kernel takes at most a few thousand CPUs; a larger range is a typo.
        if first > last || last >= 8192 {
            return None;
        }
        out.extend(first..=last);
    }
    Some(out)
}

impl Containers {
    /// The cgroup of a running container; `what` says what needed it when it is not running.
    pub fn cgroup(&self, container: &Container, what: &'static str) -> Result<ControlGroup, Error> {
        let s = &container.state;
        if s.status != Status::Running || start_time(s.pid) != Some(s.pid_start) {
            return Err(Error::WrongStatus { id: container.id().into(), status: s.status, what });
        }
        let found = if s.cgroup.is_empty() { ControlGroup::of_process(s.pid) } else { ControlGroup::open(&s.cgroup) };
        found.map_err(|source| Error::Cgroup { id: container.id().into(), source })
    }

    /// Freezes every process of a running container (docker's `pause`).
    pub fn pause(&self, container: &Container) -> Result<(), Error> {
        let cgroup = self.cgroup(container, "only a running container can be paused")?;
        if cgroup.is_frozen() {
            return Err(Error::Pause { id: container.id().into(), what: "already paused" });
        }
        cgroup.freeze().map_err(|source| Error::Cgroup { id: container.id().into(), source })
    }

    /// Thaws a paused container (docker's `unpause`).
    pub fn unpause(&self, container: &Container) -> Result<(), Error> {
        let cgroup = self.cgroup(container, "only a paused container can be unpaused")?;
        if !cgroup.is_frozen() {
            return Err(Error::Pause { id: container.id().into(), what: "not paused" });
        }
        cgroup.thaw().map_err(|source| Error::Cgroup { id: container.id().into(), source })
    }
}

/// The host's memory in bytes (docker's limit for a container without one).
pub fn host_memory() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()).map_or(0, |kib| kib * 1024)
}

/// The host's online CPUs, and the time all of them spent since boot in nanoseconds (the
/// `cpu` line of `/proc/stat`): docker's `online_cpus` and `system_cpu_usage`, against which
/// a container's CPU time is a share.
pub fn host_cpu() -> (u32, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat.lines().next().filter(|l| l.starts_with("cpu ")).map_or(0, |l| l.split_whitespace().skip(1).filter_map(|v| v.parse::<u64>().ok()).sum());
    let hz = rustix::param::clock_ticks_per_second().max(1);
    (online_cpus().len() as u32, ticks.saturating_mul(1_000_000_000 / hz))
}

/// What `top` found: the host's `ps` output limited to a container's processes.
#[derive(Debug, Clone)]
pub struct Top {
    /// `ps`'s header line.
    pub header: String,
    /// Its lines of the container's processes, as `ps` printed them.
    pub lines: Vec<String>,
}

impl Top {
    /// The column titles, split as docker splits them.
    pub fn titles(&self) -> Vec<String> {
        self.header.split_whitespace().map(str::to_string).collect()
    }

    /// Each line split into as many fields as there are titles, the last one taking the rest
    /// of the line (a command's arguments), as docker's `top` answer has them.
    pub fn processes(&self) -> Vec<Vec<String>> {
        let n = self.titles().len().max(1);
        self.lines
            .iter()
            .map(|line| {
                let mut fields = Vec::with_capacity(n);
                let mut rest = line.trim_start();
                while fields.len() + 1 < n && !rest.is_empty() {
                    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                    fields.push(rest[..end].to_string());
                    rest = rest[end..].trim_start();
                }
                fields.push(rest.to_string());
                fields
            })
            .collect()
    }
}

impl Containers {
    /// docker's `top`: the host's `ps` with `ps_args` (default `-ef`), limited to the
    /// container's processes by its PID column.
    pub fn top(&self, container: &Container, ps_args: &[String]) -> Result<Top, Error> {
        let pids = self.cgroup(container, "only a running container has processes")?.pids();
        let default = ["-ef".to_string()];
        let ps_args = if ps_args.is_empty() { &default[..] } else { ps_args };
        let out = std::process::Command::new("ps").args(ps_args).output().map_err(crate::error::io("running", "ps"))?;
        if !out.status.success() {
            return Err(Error::Top(format!("ps {}: {}", ps_args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default().to_string();
        let Some(pid_column) = header.split_whitespace().position(|h| h == "PID") else {
            return Err(Error::Top(format!("ps {} prints no PID column: top needs one to find the container's processes", ps_args.join(" "))));
        };
        let lines = lines
            .filter(|line| line.split_whitespace().nth(pid_column).and_then(|p| p.parse::<u32>().ok()).is_some_and(|p| pids.contains(&p)))
            .map(str::to_string)
            .collect();
        Ok(Top { header, lines })
    }
}

/// Whether the recorded cgroup of a running container is frozen.
pub(crate) fn is_paused(state: &State) -> bool {
    !state.cgroup.is_empty() && ControlGroup::open(&state.cgroup).is_ok_and(|c| c.is_frozen())
}

/// Thaws the recorded cgroup, if frozen: a frozen process does not die of SIGKILL.
pub(crate) fn thaw(state: &State) {
    if let Ok(c) = ControlGroup::open(&state.cgroup) {
        if c.is_frozen() {
            let _ = c.thaw();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_lines_split_as_dockers() {
        let top = Top { header: "UID PID CMD".into(), lines: vec!["root   12 sleep 100 --x".into()] };
        assert_eq!(top.titles(), ["UID", "PID", "CMD"]);
        assert_eq!(top.processes(), [["root", "12", "sleep 100 --x"]]);
    }

    #[test]
    fn cpu_lists_read_as_the_kernels() {
        assert_eq!(cpu_list("0-2,4"), Some(vec![0, 1, 2, 4]));
        assert_eq!(cpu_list("1"), Some(vec![1]));
        for bad in ["", "a", "2-1", "0-", "1,,2", "0-99999"] {
            assert_eq!(cpu_list(bad), None, "{bad}");
        }
    }

    #[test]
    fn limits_follow_dockers_rules() {
        let ok = |l: Limits| check_limits(&l).is_ok();
        let mib = |n: u64| n << 20;
        assert!(ok(Limits { memory: Some(mib(6)), memory_swap: Some(u64::MAX), ..Limits::default() }));
        assert!(!ok(Limits { memory: Some(mib(5)), ..Limits::default() }));
        assert!(!ok(Limits { memory_swap: Some(mib(64)), ..Limits::default() }));
        assert!(!ok(Limits { memory: Some(mib(64)), memory_swap: Some(mib(32)), ..Limits::default() }));
        assert!(!ok(Limits { memory: Some(mib(32)), memory_reservation: Some(mib(64)), ..Limits::default() }));
        assert!(ok(Limits { memory: Some(mib(64)), memory_reservation: Some(mib(32)), ..Limits::default() }));
        assert!(!ok(Limits { blkio_weight: Some(5), ..Limits::default() }));
        assert!(ok(Limits { cpu_quota: Some((50_000, 100_000)), cpuset_cpus: Some("0".into()), ..Limits::default() }));
        assert!(!ok(Limits { cpu_quota: Some((100_000 * 10_000, 100_000)), ..Limits::default() }));
        assert!(!ok(Limits { cpuset_cpus: Some("8191".into()), ..Limits::default() }));
        assert!(!ok(Limits { cpuset_cpus: Some("zero".into()), ..Limits::default() }));
    }
}
