//! `forge ps [-a] [-q] [--format json]`: list containers with docker's columns.

use std::time::{Duration, SystemTime};

use clap::Args;
use forge_runtime::{Container, Status};
use serde::Serialize;

use crate::commands::create::containers;
use crate::stdout::outln;

/// Arguments of `forge ps`.
#[derive(Args)]
pub struct PsArgs {
    /// Show every container (default: the running ones).
    #[arg(short, long)]
    all: bool,
    /// Only the IDs.
    #[arg(short, long)]
    quiet: bool,
    /// `table` or `json` (one object a line, docker's keys).
    #[arg(long, default_value = "table")]
    format: String,
}

/// One row, with docker's `ps --format json` keys.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Row {
    #[serde(rename = "ID")]
    id: String,
    image: String,
    command: String,
    created_at: String,
    running_for: String,
    ports: String,
    state: String,
    status: String,
    names: String,
    networks: String,
}

/// Runs `forge ps`.
pub fn run(global: &crate::Global, args: PsArgs) -> anyhow::Result<()> {
    let store = containers(global)?;
    let mut list = store.list()?;
    // Newest first, as docker lists them.
    list.reverse();
    list.retain(|c| args.all || c.state.status == Status::Running);
    let now = SystemTime::now();
    let rows: Vec<Row> = list.iter().map(|c| row(c, &store.dir_of(c.id()), now)).collect();
    print(&rows, &args)
}

/// `forge -H ... ps`: the server's containers, printed as the local ones.
pub fn run_remote(client: &crate::commands::remote::Client, args: PsArgs) -> anyhow::Result<()> {
    let list: Vec<serde_json::Value> = serde_json::from_value(client.get(&format!("/containers/json?all={}", args.all))?)?;
    let now = SystemTime::now();
    let rows: Vec<Row> = list.iter().map(|c| remote_row(c, now)).collect();
    print(&rows, &args)
}

/// A row of the Engine API's container list (docker's `ContainerSummary`).
fn remote_row(c: &serde_json::Value, now: SystemTime) -> Row {
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(c["Created"].as_u64().unwrap_or(0));
    let ports = c["Ports"].as_array().into_iter().flatten().filter(|p| p["PublicPort"].is_u64());
    Row {
        id: text("Id").chars().take(12).collect(),
        image: text("Image"),
        command: format!("{:?}", ellipsis(&text("Command"), 20)),
        created_at: humantime::format_rfc3339_seconds(created).to_string(),
        running_for: format!("{} ago", human_duration(now.duration_since(created).unwrap_or_default())),
        ports: ports
            .map(|p| format!("{}:{}->{}/{}", p["IP"].as_str().unwrap_or("0.0.0.0"), p["PublicPort"], p["PrivatePort"], p["Type"].as_str().unwrap_or("tcp")))
            .collect::<Vec<_>>()
            .join(", "),
        state: text("State"),
        status: text("Status"),
        names: c["Names"].as_array().into_iter().flatten().filter_map(|n| n.as_str()).map(|n| n.trim_start_matches('/')).collect::<Vec<_>>().join(","),
        networks: c["HostConfig"]["NetworkMode"].as_str().unwrap_or_default().to_string(),
    }
}

/// Prints `rows` as `args` ask (`-q`, `--format`).
fn print(rows: &[Row], args: &PsArgs) -> anyhow::Result<()> {
    if args.quiet {
        for r in rows {
            outln!("{}", r.id)?;
        }
        return Ok(());
    }
    match args.format.as_str() {
        "json" => {
            for r in rows {
                outln!("{}", serde_json::to_string(r)?)?;
            }
        }
        "table" => {
            let header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"];
            let cells: Vec<[String; 7]> = rows
                .iter()
                .map(|r| [r.id.clone(), r.image.clone(), r.command.clone(), r.running_for.clone(), r.status.clone(), r.ports.clone(), r.names.clone()])
                .collect();
            // docker's tabwriter: each column as wide as its widest cell, three spaces apart.
            let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
            for row in &cells {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let line = |row: Vec<&str>| -> anyhow::Result<()> {
                let mut out = String::new();
                for (i, cell) in row.iter().enumerate() {
                    out.push_str(cell);
                    if i + 1 < row.len() {
                        out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
                    }
                }
                outln!("{}", out.trim_end())
            };
            line(header.to_vec())?;
            for row in &cells {
                line(row.iter().map(String::as_str).collect())?;
            }
        }
        other => anyhow::bail!("unknown --format {other:?}: use table or json"),
    }
    Ok(())
}

fn row(c: &Container, dir: &std::path::Path, now: SystemTime) -> Row {
    // docker's form, `0.0.0.0:8080->80/tcp`, while it runs.
    let published = if c.state.status == Status::Running { forge_runtime::published(dir) } else { Vec::new() };
    let since = |t: &str| humantime::parse_rfc3339_weak(t).ok().map(|t| now.duration_since(t).unwrap_or_default());
    let ago = |t: &str| since(t).map_or_else(String::new, |d| format!("{} ago", human_duration(d)));
    let status = match c.state.status {
        Status::Created => "Created".to_string(),
        Status::Running if c.state.paused => format!("Up {} (Paused)", since(&c.state.started_at).map_or_else(String::new, human_duration)),
        Status::Running => format!("Up {}", since(&c.state.started_at).map_or_else(String::new, human_duration)),
        Status::Exited => format!("Exited ({}) {}", c.state.exit_code, ago(&c.state.finished_at)),
    };
    Row {
        id: c.short_id().to_string(),
        image: c.config.image.clone(),
        command: format!("{:?}", ellipsis(&c.config.args.join(" "), 20)),
        created_at: c.config.created.clone(),
        running_for: ago(&c.config.created),
        ports: published.iter().map(|p| format!("{}:{}->{}/{}", p.host_ip, p.host_port, p.container_port, p.protocol)).collect::<Vec<_>>().join(", "),
        state: if c.state.paused { "paused".into() } else { c.state.status.to_string() },
        status,
        names: c.config.name.clone().unwrap_or_default(),
        networks: serde_json::to_value(&c.config.network).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
    }
}

/// docker's truncation of the COMMAND column.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}

/// docker's (go-units) wording of a duration.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (mins, hours) = (secs / 60, (d.as_secs_f64() / 3600.0 + 0.5) as u64);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{secs} seconds"),
        _ if mins == 1 => "About a minute".into(),
        _ if mins < 60 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_dockers() {
        assert_eq!(human_duration(Duration::from_millis(300)), "Less than a second");
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600)), "3 hours");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400)), "3 days");
        assert_eq!(ellipsis("sh -c 'echo hello world; exit 3'", 20), "sh -c 'echo hello w…");
    }
}
