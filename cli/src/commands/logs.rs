//! `forge logs [-f] [--since T] [--tail N] [-t] CONTAINER`: a detached container's output,
//! from its json-file log, each line to the stream it came from.

use std::io::Write;
use std::time::{Duration, SystemTime};


use anyhow::{bail, Context};
use clap::Args;
use forge_runtime::{read_log, LogEntry};

use crate::commands::create::containers;

/// Arguments of `forge logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// Keep printing what it writes until it stops.
    #[arg(short, long)]
    follow: bool,
    /// Only lines since this time: RFC 3339 (`2026-11-30T13:00:00Z`), Unix seconds, or a
    /// duration ago (`10m`, `1h30m`).
    #[arg(long)]
    since: Option<String>,
    /// Only the last N lines (`all`: every one).
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Prefix each line with its time.
    #[arg(short, long)]
    timestamps: bool,
    /// The container (ID, ID prefix or name).
    container: String,
}

/// Runs `forge logs`.
pub fn run(global: &crate::Global, args: LogsArgs) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let tail = match args.tail.as_str() {
        "all" => None,
        n => Some(n.parse::<usize>().with_context(|| format!("invalid --tail {n:?}: a number of lines or `all`"))?),
    };
    let containers = containers(global)?;
    let container = containers.get(&args.container)?;
    let path = containers.log_path(container.id());
    let (mut entries, offset) = read_log(&path, 0)?;
    if let Some(t) = since {
        entries.retain(|e| humantime::parse_rfc3339(&e.time).is_ok_and(|at| at >= t));
    }
    if let Some(n) = tail {
        entries.drain(..entries.len().saturating_sub(n));
    }
    print(&entries, args.timestamps)?;
    if args.follow {
        containers.follow_log(container.id(), offset, &mut |e: &LogEntry| print(std::slice::from_ref(e), args.timestamps))?;
    }
    Ok(())
}

fn print(entries: &[LogEntry], timestamps: bool) -> anyhow::Result<()> {
    for e in entries {
        let line = if timestamps { format!("{} {}", e.time, e.log) } else { e.log.clone() };
        if e.stream == "stderr" {
            // A closed standard error drops the line, as the container's own would be.
            let _ = std::io::stderr().write_all(line.as_bytes());
        } else {
            crate::stdout::write_all(line.as_bytes())?;
        }
    }
    Ok(())
}

/// docker's `--since`: a time, Unix seconds (with a fraction), or a duration before now.
fn parse_since(s: &str) -> anyhow::Result<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
        }
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(SystemTime::now().checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH));
    }
    bail!("invalid --since {s:?}: give an RFC 3339 time, Unix seconds or a duration such as 10m")
}
