//! The resource flags of `run` and `create` (docker's names), parsed once into the runtime's
//! [`Limits`]; and the commands on a running container's cgroup: `pause`, `unpause`, `stats`,
//! `top`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use forge_builder::{ByteSize, Cpus, MemorySwap};
use forge_runtime::{Container, Containers, Limits, Status};
use forge_sandbox::CgroupStats;

use crate::commands::create::containers;
use crate::commands::run::Exit;
use crate::stdout::outln;

/// docker's resource flags. Values are read by [`ResourceFlags::limits`] rather than by clap,
/// so a bad one fails like any other create failure (exit code 125, as docker's).
#[derive(Args, Debug)]
pub struct ResourceFlags {
    /// Memory limit (`512m`, `2g`; at least 6 MiB).
    #[arg(short = 'm', long, value_name = "BYTES")]
    memory: Option<String>,
    /// Memory plus swap limit; `-1` for unlimited swap (default: twice `--memory`).
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Soft memory limit, what the kernel reclaims the container down to under pressure.
    #[arg(long, value_name = "BYTES")]
    memory_reservation: Option<String>,
    /// Number of CPUs (`0.5`, `1.5`): a CFS quota per 100 ms period.
    #[arg(long, value_name = "CPUS")]
    cpus: Option<String>,
    /// CPU shares: the relative weight under contention (default 1024).
    #[arg(short = 'c', long, value_name = "SHARES")]
    cpu_shares: Option<u64>,
    /// The CPUs it may run on (`0-2`, `0,1`).
    #[arg(long, value_name = "LIST")]
    cpuset_cpus: Option<String>,
    /// Maximum number of processes; 0 or -1 for no limit.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Block I/O weight, 10 to 1000 (0: none), where the kernel has I/O weights.
    #[arg(long, value_name = "WEIGHT")]
    blkio_weight: Option<u16>,
    /// Keep the OOM killer off: at the memory limit processes wait (cgroup v1 only).
    #[arg(long)]
    oom_kill_disable: bool,
}

impl ResourceFlags {
    /// The limits these flags ask for; docker's rules between them are the runtime's
    /// ([`forge_runtime::check_limits`]).
    pub fn limits(&self) -> anyhow::Result<Limits> {
        let size = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<u64>> {
            v.as_deref().map(|s| s.parse::<ByteSize>().map(|b| b.0).with_context(|| format!("invalid {flag}"))).transpose()
        };
        Ok(Limits {
            memory: size("--memory", &self.memory)?,
            memory_swap: self.memory_swap.as_deref().map(|s| s.parse::<MemorySwap>().map(|m| m.0)).transpose().context("invalid --memory-swap")?,
            memory_reservation: size("--memory-reservation", &self.memory_reservation)?,
            cpu_shares: self.cpu_shares.filter(|s| *s != 0),
            cpu_quota: self.cpus.as_deref().map(|s| s.parse::<Cpus>().map(Cpus::cfs_quota)).transpose().context("invalid --cpus")?,
            cpuset_cpus: self.cpuset_cpus.clone(),
            pids: self.pids_limit.filter(|n| *n > 0).map(|n| n as u64),
            blkio_weight: self.blkio_weight.filter(|w| *w != 0),
            oom_kill_disable: self.oom_kill_disable,
        })
    }
}

/// Arguments of `forge pause` and `forge unpause`.
#[derive(Args)]
pub struct PauseArgs {
    /// The containers (ID, ID prefix or name).
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Runs `forge pause` (`freeze`) or `forge unpause`: each container in turn, its name printed
/// once done, as docker; the first failure is reported after the others were tried.
pub fn pause(global: &crate::Global, args: PauseArgs, freeze: bool) -> anyhow::Result<()> {
    let cs = containers(global)?;
    let mut failed = false;
    for key in &args.containers {
        let done = cs.get(key).and_then(|c| if freeze { cs.pause(&c) } else { cs.unpause(&c) });
        match done {
            Ok(()) => outln!("{key}")?,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "forge: {e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

/// Arguments of `forge stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Print one sample and exit (default: refresh every second until interrupted).
    #[arg(long)]
    no_stream: bool,
    /// `table` or `json` (one object a line, docker's keys).
    #[arg(long, default_value = "table")]
    format: String,
    /// The containers (default: every running one).
    containers: Vec<String>,
}

/// One row of `stats`, with docker's `--format json` keys.
#[derive(serde::Serialize)]
struct StatsRow {
    #[serde(rename = "Container")]
    container: String,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "CPUPerc")]
    cpu_perc: String,
    #[serde(rename = "MemUsage")]
    mem_usage: String,
    #[serde(rename = "MemPerc")]
    mem_perc: String,
    #[serde(rename = "NetIO")]
    net_io: String,
    #[serde(rename = "BlockIO")]
    block_io: String,
    #[serde(rename = "PIDs")]
    pids: String,
}

/// Runs `forge stats`: CPU % over one second between two samples of each container's
/// cgroup, then the rest from the second sample.
pub fn stats(global: &crate::Global, args: StatsArgs) -> anyhow::Result<()> {
    if !matches!(args.format.as_str(), "table" | "json") {
        anyhow::bail!("unknown --format {:?}: use table or json", args.format);
    }
    let cs = containers(global)?;
    let chosen: Vec<Container> = if args.containers.is_empty() {
        cs.list()?.into_iter().filter(|c| c.state.status == Status::Running).collect()
    } else {
        args.containers.iter().map(|k| cs.get(k)).collect::<Result<_, _>>()?
    };
    let host_memory = forge_runtime::host_memory();
    let mut before = sample(&cs, &chosen, true)?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let after = sample(&cs, &chosen, false)?;
        let rows: Vec<StatsRow> = chosen.iter().zip(before.iter().zip(&after)).map(|(c, (b, a))| row(c, b, a, host_memory)).collect();
        if !args.no_stream {
            // docker's refresh: clear the screen, then the table from the top.
            crate::stdout::write_all(b"\x1b[2J\x1b[H")?;
        }
        print_stats(&args.format, &rows)?;
        if args.no_stream || after.iter().all(Option::is_none) {
            return Ok(());
        }
        before = after;
    }
}

/// Each container's accounting now, with when it was read; `None` for one that stopped
/// running, unless `strict` (the first sample: a container that is not running is an error).
fn sample(cs: &Containers, chosen: &[Container], strict: bool) -> anyhow::Result<Vec<Option<(Instant, CgroupStats)>>> {
    let mut out = Vec::new();
    for c in chosen {
        match cs.cgroup(c, "only a running container has stats") {
            Ok(cg) => out.push(Some((Instant::now(), cg.stats()))),
            Err(e) if strict => return Err(e.into()),
            Err(_) => out.push(None),
        }
    }
    Ok(out)
}

fn row(c: &Container, before: &Option<(Instant, CgroupStats)>, after: &Option<(Instant, CgroupStats)>, host_memory: u64) -> StatsRow {
    let (cpu, s) = match (before, after) {
        (Some((t0, b)), Some((t1, a))) => {
            // Share of one CPU over the interval, as docker's (which divides by the host's CPU
            // time, then multiplies by its number of CPUs: the same ratio).
            let wall = t1.duration_since(*t0).as_secs_f64();
            let used = a.cpu_time.saturating_sub(b.cpu_time).as_secs_f64();
            (if wall > 0.0 { used / wall * 100.0 } else { 0.0 }, *a)
        }
        _ => (0.0, CgroupStats::default()),
    };
    // docker shows the usage without what the kernel can drop at once.
    let used = s.memory_usage.saturating_sub(s.memory_inactive_file);
    let limit = s.memory_limit.unwrap_or(host_memory).min(host_memory.max(1));
    let name = c.config.name.clone().unwrap_or_else(|| c.short_id().to_string());
    StatsRow {
        container: name.clone(),
        id: c.short_id().to_string(),
        name,
        cpu_perc: format!("{cpu:.2}%"),
        mem_usage: format!("{} / {}", binary_size(used), binary_size(limit)),
        mem_perc: format!("{:.2}%", if limit > 0 { used as f64 / limit as f64 * 100.0 } else { 0.0 }),
        // forge gives containers no network of their own yet.
        net_io: "0B / 0B".into(),
        block_io: format!("{} / {}", decimal_size(s.block_read), decimal_size(s.block_write)),
        pids: s.pids.to_string(),
    }
}

fn print_stats(format: &str, rows: &[StatsRow]) -> anyhow::Result<()> {
    if format == "json" {
        for r in rows {
            outln!("{}", serde_json::to_string(r)?)?;
        }
        return Ok(());
    }
    let header = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| vec![r.id.clone(), r.name.clone(), r.cpu_perc.clone(), r.mem_usage.clone(), r.mem_perc.clone(), r.net_io.clone(), r.block_io.clone(), r.pids.clone()])
        .collect();
    print_table(&header, &cells)
}

/// docker's tabwriter layout: each column as wide as its widest cell, three spaces apart.
fn print_table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[&str]| -> anyhow::Result<()> {
        let mut out = String::new();
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                out.push_str(&" ".repeat(widths[i].saturating_sub(cell.chars().count()) + 3));
            }
        }
        outln!("{}", out.trim_end())
    };
    line(header)?;
    for row in rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    Ok(())
}

/// docker's (go-units) binary sizes: `1.5MiB`, `512KiB`, `0B`.
fn binary_size(n: u64) -> String {
    scaled(n, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
}

/// docker's (go-units) decimal sizes, for block I/O: `1.2MB`, `0B`.
fn decimal_size(n: u64) -> String {
    scaled(n, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"])
}

/// go-units' `CustomSize("%.4g%s", ...)`: four significant digits, trailing zeros dropped.
fn scaled(n: u64, base: f64, units: &[&str]) -> String {
    let mut v = n as f64;
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    let digits = if v >= 1000.0 { 0 } else if v >= 100.0 { 1 } else if v >= 10.0 { 2 } else { 3 };
    let text = format!("{v:.digits$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text };
    format!("{text}{}", units[i])
}

/// Arguments of `forge top`.
#[derive(Args)]
pub struct TopArgs {
    /// The container (ID, ID prefix or name).
    container: String,
    /// `ps` options (default `-ef`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

/// Runs `forge top`: the host's `ps` output, limited to the container's processes (docker's way).
pub fn top(global: &crate::Global, args: TopArgs) -> anyhow::Result<()> {
    let cs = containers(global)?;
    let c = cs.get(&args.container)?;
    let top = cs.top(&c, &args.ps_args)?;
    outln!("{}", top.header)?;
    for line in &top.lines {
        outln!("{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_dockers() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(512 << 10), "512KiB");
        assert_eq!(binary_size(1536 << 10), "1.5MiB");
        assert_eq!(binary_size(32 << 20), "32MiB");
        assert_eq!(decimal_size(1_234_000), "1.234MB");
        assert_eq!(decimal_size(4096), "4.096kB");
    }
}
