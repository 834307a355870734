//! `forge port CONTAINER [PORT[/PROTO]]`: a running container's published ports.

use clap::Args;

use crate::commands::create::containers;
use crate::stdout::outln;

/// Arguments of `forge port`.
#[derive(Args)]
pub struct PortArgs {
    /// The container (name or ID).
    container: String,
    /// Only this container port (`80` or `80/udp`).
    port: Option<String>,
}

/// Runs `forge port`: docker's `80/tcp -> 0.0.0.0:8080` lines, or only the host side for one port.
pub fn run(global: &crate::Global, args: PortArgs) -> anyhow::Result<()> {
    let store = containers(global)?;
    let c = store.get(&args.container)?;
    let published = if c.state.status == forge_runtime::Status::Running { forge_runtime::published(&store.dir_of(c.id())) } else { Vec::new() };
    let Some(want) = &args.port else {
        for p in &published {
            outln!("{p}")?;
        }
        return Ok(());
    };
    let (port, proto) = want.split_once('/').unwrap_or((want, "tcp"));
    let matching: Vec<_> = published.iter().filter(|p| p.container_port.to_string() == port && p.protocol.to_string() == proto).collect();
    if matching.is_empty() {
        anyhow::bail!("no public port '{port}/{proto}' published for {}", args.container);
    }
    for p in matching {
        outln!("{}:{}", p.host_ip, p.host_port)?;
    }
    Ok(())
}
