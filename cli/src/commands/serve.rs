//! `forge serve`: the Docker Engine API on a unix socket (see the `forge-api` crate), so the
//! docker CLI and SDKs drive this store: `DOCKER_HOST=unix:///run/forge.sock docker images`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use forge_api::ListenSpec;

/// Arguments of `forge serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Where to listen: `unix:///PATH` (mode 0660, root and --group) or `tcp://IP:PORT`
    /// (plain on loopback only; any address with --tlsverify). Repeatable.
    #[arg(short = 'H', long = "host", value_name = "ADDR", default_value = "unix:///run/forge.sock")]
    hosts: Vec<String>,
    /// A group whose members may use the unix sockets, as docker's `docker` group.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// Mutual TLS on TCP addresses: only clients with a certificate signed by --tlscacert.
    #[arg(long, requires_all = ["tlscacert", "tlscert", "tlskey"])]
    tlsverify: bool,
    /// The CA that signs client certificates (PEM).
    #[arg(long, value_name = "FILE", requires = "tlsverify")]
    tlscacert: Option<PathBuf>,
    /// The server's certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "tlsverify")]
    tlscert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tlsverify")]
    tlskey: Option<PathBuf>,
    #[command(flatten)]
    registry: crate::commands::transfer::RegistryOptions,
}

/// Runs `forge serve` until SIGTERM or SIGINT.
pub fn run(global: &crate::Global, args: ServeArgs) -> anyhow::Result<()> {
    let listen = args.hosts.iter().map(|h| h.parse::<ListenSpec>()).collect::<Result<Vec<_>, _>>()?;
    let opts = forge_api::Options {
        root: global.store_root()?,
        listen,
        group: args.group,
        tls: match (args.tlsverify, args.tlscacert, args.tlscert, args.tlskey) {
            (true, Some(ca), Some(cert), Some(key)) => Some(forge_api::TlsFiles { ca, cert, key }),
            _ => None,
        },
        monitor: crate::commands::lifecycle::monitor_command(global)?,
        registry: forge_registry::ClientConfig { insecure: args.registry.insecure, certs_dir: args.registry.certs_dir.clone(), ..Default::default() },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the server's runtime")?;
    runtime.block_on(forge_api::serve(opts))?;
    Ok(())
}
