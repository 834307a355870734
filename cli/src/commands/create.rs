//! `forge create IMAGE [CMD...]`: make a container without starting it; prints its ID.

use anyhow::Context;
use clap::Args;
use forge_layerstore::Store;
use forge_runtime::{Containers, CreateOptions};

use crate::commands::run::Exit;
use crate::stdout::outln;

/// The flags `create` and `run` share (docker's names).
#[derive(Args, Debug)]
pub struct ContainerFlags {
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// A unique name.
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (`KEY=VALUE`, or `KEY` to take forge's own value).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file (one `KEY=VALUE` a line, `#` comments).
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<std::path::PathBuf>,
    /// The working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// The user (`name`, `uid`, `name:group`, `uid:gid`).
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Replace the image's entrypoint (`""` clears it); the image's CMD is then dropped too.
    #[arg(long)]
    entrypoint: Option<String>,
    /// The container's hostname (default: its short ID).
    #[arg(long)]
    hostname: Option<String>,
    /// `bridge` (a namespace of its own behind forge's bridge, with NAT), `host`, `none`
    /// (loopback only) or `container:NAME|ID` (another running container's).
    #[arg(long, default_value = "bridge")]
    network: forge_runtime::Network,
    /// The container's address on its network (default: the lowest free one).
    #[arg(long)]
    ip: Option<std::net::Ipv4Addr>,
    /// A nameserver instead of the host's; may be repeated.
    #[arg(long, value_name = "IP")]
    dns: Vec<std::net::IpAddr>,
    /// An `/etc/hosts` entry (`NAME:IP`); may be repeated.
    #[arg(long = "add-host", value_name = "NAME:IP", value_parser = forge_network::extra_host)]
    add_host: Vec<(String, std::net::Ipv4Addr)>,
    /// Publish a container port on the host (`[IP:][HOST:]CONTAINER[/tcp|udp]`, a missing or 0
    /// host port is a free one); works on 127.0.0.1 too.
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    publish: Vec<forge_runtime::Publish>,
    /// Another name the container is found by on a user network; may be repeated.
    #[arg(long = "network-alias", value_name = "NAME", value_parser = forge_network::alias)]
    network_alias: Vec<String>,
    /// Publish every port the image exposes on free host ports.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// `host` (the default, unless the store's config.json sets `userns-remap`) or `remap`:
    /// the container's root is an unprivileged host user of the `forge` subuid/subgid range.
    #[arg(long)]
    userns: Option<String>,
    #[command(flatten)]
    resources: crate::commands::resources::ResourceFlags,
    #[command(flatten)]
    security: crate::commands::security::SecurityFlags,
    #[command(flatten)]
    mounts: crate::commands::volume::MountFlags,
    /// Restart policy of a detached container: `no`, `on-failure[:max-retries]`, `always`, `unless-stopped`.
    #[arg(long, default_value = "no")]
    restart: String,
    /// The signal `stop` sends first (default: the image's StopSignal, else SIGTERM).
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    stop_timeout: Option<u32>,
    /// Run an init as PID 1 that forwards signals and reaps orphans: forge's own always is
    /// (docker's `--init` puts tini there); accepted for docker's command lines.
    #[arg(long)]
    init: bool,
    /// Keep standard input open (`run`: forge's input is copied to it).
    #[arg(short = 'i', long)]
    interactive: bool,
    /// A terminal for the command (its output all on stdout).
    #[arg(short = 't', long)]
    tty: bool,
    /// A label (`KEY=VALUE`).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// The image.
    image: String,
    /// The command and its arguments (replace the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl ContainerFlags {
    /// The options these flags ask for; `-e` and `--env-file` entries in docker's order (files first).
    pub fn options(&self) -> anyhow::Result<CreateOptions> {
        let lookup = |k: &str| std::env::var(k).ok();
        let mut env = Vec::new();
        for f in &self.env_file {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading the env file {}", f.display()))?;
            env.extend(forge_runtime::env_file(&text, lookup).with_context(|| format!("in {}", f.display()))?);
        }
        for e in &self.env {
            env.extend(forge_runtime::env_entry(e, lookup)?);
        }
        let (security, seccomp) = self.security.parse()?;
        let (mounts, read_only) = self.mounts.mounts()?;
        Ok(CreateOptions {
            image: self.image.clone(),
            name: self.name.clone(),
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env,
            working_dir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            network: self.network.clone(),
            auto_remove: self.rm,
            ip: self.ip,
            dns: self.dns.iter().map(|ip| ip.to_string()).collect(),
            add_hosts: self.add_host.clone(),
            publish: self.publish.clone(),
            publish_all: self.publish_all,
            aliases: self.network_alias.clone(),
            limits: self.resources.limits()?,
            security,
            seccomp,
            mounts,
            read_only,
            restart: self.restart.parse()?,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            labels: self.label.clone(),
            interactive: self.interactive,
            // As docker's: input attached at create (`run -d` detaches it again).
            stdin_once: self.interactive,
            tty: self.tty,
            userns: self.userns.as_deref().map(str::parse).transpose()?,
        })
    }
}

/// Arguments of `forge create`.
#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    flags: ContainerFlags,
}

/// Opens the store's containers.
pub fn containers(global: &crate::Global) -> anyhow::Result<Containers> {
    // A container's image may have layers only a registry cache has so far.
    let store = crate::commands::build_cache::fetching(Store::open(&global.store_root()?).context("opening the store")?, Default::default());
    Ok(Containers::open(&store)?)
}

/// Runs `forge create`; failures exit with 125 as docker's.
pub fn run(global: &crate::Global, args: CreateArgs) -> anyhow::Result<()> {
    let created = args.flags.options().and_then(|opts| Ok(containers(global)?.create(&opts)?));
    match created {
        Ok(c) => {
            outln!("{}", c.id())
        }
        Err(e) => Err(Exit::failed(e)),
    }
}
