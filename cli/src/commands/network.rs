//! `forge network ...`: the networks of the store.

use anyhow::Context;
use clap::Subcommand;

use crate::stdout::outln;

/// `forge network ...`.
#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Make a user network: a bridge of its own, isolated from other networks; containers on
    /// it find each other by name and `--network-alias`.
    Create {
        /// The subnet (CIDR); default: a free private one.
        #[arg(long)]
        subnet: Option<ipnet::Ipv4Net>,
        /// The bridge's address; default: the subnet's first.
        #[arg(long)]
        gateway: Option<std::net::Ipv4Addr>,
        /// No NAT and no default route: containers reach only each other.
        #[arg(long)]
        internal: bool,
        /// `KEY=VALUE` labels kept with it.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<forge_builder::KeyValue>,
        /// Its name.
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Show networks as JSON, with what is attached to them.
    Inspect {
        /// Names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove user networks nothing is attached to.
    #[command(alias = "remove")]
    Rm {
        /// Names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Give a container an interface (`eth1`, ...) on another network: a running one now, for
    /// as long as it runs; one that does not run at each start. Peers there find it by name,
    /// aliases and short ID.
    Connect {
        /// More names it is found by on that network.
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
        /// The network.
        network: String,
        /// The container (name or ID).
        container: String,
    },
    /// Take a container's interface off a network it was connected to.
    Disconnect {
        /// The network.
        network: String,
        /// The container (name or ID).
        container: String,
    },
    /// Remove what crashed forge processes left (veth pairs, namespaces, leases), the user
    /// networks nothing is attached to, and the default network's bridge and firewall rules
    /// when nothing uses it (made again when next needed).
    Prune {
        /// Do not ask (forge never asks; accepted for docker's scripts).
        #[arg(short, long)]
        force: bool,
    },
}

/// The store's networks.
pub fn networks(global: &crate::Global) -> anyhow::Result<forge_network::Networks> {
    let root = global.store_root()?;
    forge_runtime::networks(&root).with_context(|| format!("opening the network store of {}", root.display()))
}

/// Runs `forge network ...`.
pub fn run(global: &crate::Global, cmd: NetworkCommand) -> anyhow::Result<()> {
    let networks = networks(global)?;
    match cmd {
        NetworkCommand::Create { subnet, gateway, internal, labels, name } => {
            networks.create(&name, subnet, gateway, internal, labels.into_iter().map(forge_builder::KeyValue::label).collect())?;
            outln!("{name}")
        }
        NetworkCommand::Ls => {
            outln!("{:<20} {:<10} {:<18} {:<8}", "NAME", "BRIDGE", "SUBNET", "INTERNAL")?;
            for n in networks.list()? {
                outln!("{:<20} {:<10} {:<18} {:<8}", n.name, n.bridge, n.subnet.to_string(), n.internal)?;
            }
            Ok(())
        }
        NetworkCommand::Inspect { names } => {
            let mut out = Vec::new();
            for name in &names {
                let (n, attached) = networks.inspect(name)?;
                let attached: Vec<_> = attached.into_iter().map(|a| serde_json::json!({ "IPv4Address": a.address.to_string(), "Names": a.names })).collect();
                out.push(serde_json::json!({
                    "Name": n.name, "Driver": "bridge", "Internal": n.internal, "Bridge": n.bridge,
                    "IPAM": { "Config": [{ "Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string() }] },
                    "Containers": attached,
                }));
            }
            outln!("{}", serde_json::to_string_pretty(&out)?)
        }
        NetworkCommand::Rm { names } => {
            for name in &names {
                networks.remove(name)?;
                outln!("{name}")?;
            }
            Ok(())
        }
        NetworkCommand::Connect { aliases, network, container } => {
            let containers = crate::commands::create::containers(global)?;
            let c = containers.get(&container)?;
            containers.connect(&c, &network, &aliases)?;
            Ok(())
        }
        NetworkCommand::Disconnect { network, container } => {
            let containers = crate::commands::create::containers(global)?;
            let c = containers.get(&container)?;
            containers.disconnect(&c, &network)?;
            Ok(())
        }
        NetworkCommand::Prune { force: _ } => {
            let pruned = networks.prune()?;
            if !pruned.bridges.is_empty() || !pruned.networks.is_empty() {
                outln!("Deleted Networks:")?;
                for n in pruned.networks.iter().chain(&pruned.bridges) {
                    outln!("{n}")?;
                }
            }
            if pruned.leases > 0 {
                outln!("Removed {} leases of forge processes that died", pruned.leases)?;
            }
            Ok(())
        }
    }
}
