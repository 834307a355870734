//! The `forge` binary: thin glue from docker-style flags to the library crates.
//!
//! Each subcommand lives in `commands/<verb>.rs` with an `Args` struct (clap) and a
//! `run(&Global, args) -> anyhow::Result<()>`. This file only parses flags, dispatches and maps
//! errors to exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use deferred::Deferred;

mod commands;
mod deferred;
mod progress;
mod signals;
mod stdout;

/// forge: build container images from Dockerfiles and move them between stores and registries,
/// without a daemon.
#[derive(Parser)]
#[command(name = "forge", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Args, Clone, Debug)]
pub struct Global {
    /// The store's directory (an OCI image layout plus forge's metadata).
    /// Default: $FORGE_ROOT, else /var/lib/forge for root, else $XDG_DATA_HOME/forge.
    #[arg(long, global = true, env = "FORGE_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Ask the `forge serve` at this address (`unix:///path`, `tcp://host:port`) instead of the
    /// local store: for `ps`, `images` and `version`.
    #[arg(short = 'H', long = "host", env = "FORGE_HOST", value_name = "ADDR")]
    pub host: Option<String>,
}

impl Global {
    /// The store directory: `--root`/`$FORGE_ROOT`, else `/var/lib/forge` for root, else
    /// `$XDG_DATA_HOME/forge` (or `~/.local/share/forge`).
    pub fn store_root(&self) -> anyhow::Result<PathBuf> {
        if let Some(root) = &self.root {
            return Ok(root.clone());
        }
        if rustix::process::geteuid().is_root() {
            return Ok(PathBuf::from("/var/lib/forge"));
        }
        match (std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")) {
            (Some(data), _) => Ok(PathBuf::from(data).join("forge")),
            (None, Some(home)) => Ok(PathBuf::from(home).join(".local/share/forge")),
            (None, None) => anyhow::bail!("cannot choose a store directory: set --root or FORGE_ROOT"),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile.
    Build(Deferred<commands::build::BuildArgs>),
    /// Push an image to a registry.
    Push(Deferred<commands::push::PushArgs>),
    /// Pull an image from a registry.
    Pull(Deferred<commands::pull::PullArgs>),
    /// Store credentials for a registry (in docker's config file).
    Login(Deferred<commands::login::LoginArgs>),
    /// Remove stored credentials for a registry.
    Logout(Deferred<commands::login::LogoutArgs>),
    /// List the tagged images of the store.
    Images(Deferred<commands::images::ImagesArgs>),
    /// Show images as JSON.
    Inspect(Deferred<commands::inspect::InspectArgs>),
    /// Give an image another name.
    Tag(Deferred<commands::tag::TagArgs>),
    /// Remove image names (free space with `forge store gc`).
    Rmi(Deferred<commands::tag::RmiArgs>),
    /// Write images to an archive (docker-archive or oci-archive).
    Save(Deferred<commands::save::SaveArgs>),
    /// Read images from an archive or an OCI layout directory.
    Load(Deferred<commands::save::LoadArgs>),
    /// Store maintenance.
    #[command(subcommand)]
    Store(Deferred<commands::store::StoreCommand>),
    /// Make a one-layer image from a root filesystem tarball (plain, gzip or zstd).
    Import(Deferred<commands::import::ImportArgs>),
    /// Print shell completions (bash, zsh, fish, ...).
    Completion(Deferred<commands::completion::CompletionArgs>),
    /// Create a container and run it in the foreground (exit code: the container's; 125 forge
    /// failed, 126 not executable, 127 not found).
    Run(Deferred<commands::run::RunArgs>),
    /// Create a container without starting it; prints its ID.
    Create(Deferred<commands::create::CreateArgs>),
    /// Start a container in the foreground (`-a`).
    Start(Deferred<commands::start::StartArgs>),
    /// List containers.
    Ps(Deferred<commands::ps::PsArgs>),
    /// Remove containers.
    Rm(Deferred<commands::rm::RmArgs>),
    /// Pause the processes of running containers (the cgroup freezer).
    Pause(Deferred<commands::resources::PauseArgs>),
    /// Resume paused containers.
    Unpause(Deferred<commands::resources::PauseArgs>),
    /// Live resource usage of running containers (CPU, memory, block I/O, PIDs).
    Stats(Deferred<commands::resources::StatsArgs>),
    /// The processes of a running container (`ps` on the host, filtered).
    Top(Deferred<commands::resources::TopArgs>),
    /// Manage volumes (`create`, `ls`, `inspect`, `rm`, `prune`).
    #[command(subcommand)]
    Volume(Deferred<commands::volume::VolumeCommand>),
    /// Follow a running container's output; exit with its code.
    Attach(Deferred<commands::attach::AttachArgs>),
    /// Run a command in a running container.
    Exec(Deferred<commands::exec::ExecArgs>),
    /// A container's output (`-f` follows it).
    Logs(Deferred<commands::logs::LogsArgs>),
    /// Stop containers: their stop signal, then SIGKILL after the timeout.
    Stop(Deferred<commands::lifecycle::StopArgs>),
    /// Send a signal to containers (default SIGKILL).
    Kill(Deferred<commands::lifecycle::KillArgs>),
    /// Stop then start containers.
    Restart(Deferred<commands::lifecycle::StopArgs>),
    /// Wait for containers to stop; print their exit codes.
    Wait(Deferred<commands::lifecycle::WaitArgs>),
    /// Copy files between a container and the host (`CONTAINER:PATH`, `-` for a tar).
    Cp(Deferred<commands::cp::CpArgs>),
    /// Make an image of a container's changes.
    Commit(Deferred<commands::commit::CommitArgs>),
    /// Write a container's files as a tar archive.
    Export(Deferred<commands::commit::ExportArgs>),
    /// List the files a container added (A), changed (C) and deleted (D).
    Diff(Deferred<commands::commit::DiffArgs>),
    /// Commands on all containers.
    #[command(subcommand)]
    Container(Deferred<commands::container::ContainerCommand>),
    /// A running container's published ports.
    Port(Deferred<commands::port::PortArgs>),
    /// Networks.
    #[command(subcommand)]
    Network(Deferred<commands::network::NetworkCommand>),
    /// Serve the Docker Engine API on a unix socket (for the docker CLI and SDKs).
    Serve(Deferred<commands::serve::ServeArgs>),
    /// Show forge's version (and with -H, the server's).
    Version,
    /// Developer tools: inspect what forge's front end makes of a file.
    #[command(subcommand)]
    Debug(Deferred<commands::debug::DebugCommand>),
}

fn main() -> ExitCode {
    // A re-executed sandbox init runs the RUN step and never gets past this line.
    forge_sandbox::enter_if_init();
    // An unprivileged user's forge continues as root of a user namespace of its own.
    if let Err(e) = forge_sandbox::enter_if_unprivileged() {
        eprintln!("forge: {e}");
        return ExitCode::from(125);
    }
    let cli = Cli::parse();
    let result = match (cli.global.host.as_deref(), cli.command) {
        // A server listens; it is no client of another.
        (Some(host), command) if !matches!(command, Command::Serve(Deferred(_))) => remote(host, command),
        (_, command) => local(&cli.global, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output is gone (`forge images | head -1`): nothing is wrong.
        Err(err) if err.downcast_ref::<stdout::Closed>().is_some() => ExitCode::SUCCESS,
        // A container's exit code, or a failure `run` already reported with docker's code.
        Err(err) if err.downcast_ref::<commands::run::Exit>().is_some() => ExitCode::from(err.downcast_ref::<commands::run::Exit>().map_or(1, |e| e.0)),
        Err(err) => {
            // Not `eprintln!`: a closed standard error must not turn the failure into a panic.
            let _ = writeln!(std::io::stderr(), "error: {}", error_chain(&err));
            ExitCode::from(1)
        }
    }
}

/// Runs `command` on the local store.
fn local(global: &Global, command: Command) -> anyhow::Result<()> {
    if !matches!(command, Command::Completion(Deferred(_)) | Command::Version | Command::Serve(Deferred(_)) | Command::Store(Deferred(commands::store::StoreCommand::FinishTags { .. }))) {
        commands::finish_tags::resume(global);
    }
    match command {
        Command::Build(Deferred(args)) => commands::build::run(global, args),
        Command::Completion(Deferred(args)) => commands::completion::run(args),
        Command::Images(Deferred(args)) => commands::images::run(global, args),
        Command::Inspect(Deferred(args)) => commands::inspect::run(global, args),
        Command::Tag(Deferred(args)) => commands::tag::tag(global, args),
        Command::Rmi(Deferred(args)) => commands::tag::rmi(global, args),
        Command::Save(Deferred(args)) => commands::save::save(global, args),
        Command::Load(Deferred(args)) => commands::save::load(global, args),
        Command::Store(Deferred(cmd)) => commands::store::run(global, cmd),
        Command::Push(Deferred(args)) => commands::push::run(global, args),
        Command::Pull(Deferred(args)) => commands::pull::run(global, args),
        Command::Login(Deferred(args)) => commands::login::login(global, args),
        Command::Logout(Deferred(args)) => commands::login::logout(global, args),
        Command::Debug(Deferred(cmd)) => commands::debug::run(global, cmd),
        Command::Import(Deferred(args)) => commands::import::run(global, args),
        Command::Run(Deferred(args)) => commands::run::run(global, args),
        Command::Create(Deferred(args)) => commands::create::run(global, args),
        Command::Start(Deferred(args)) => commands::start::run(global, args),
        Command::Ps(Deferred(args)) => commands::ps::run(global, args),
        Command::Rm(Deferred(args)) => commands::rm::run(global, args),
        Command::Pause(Deferred(args)) => commands::resources::pause(global, args, true),
        Command::Unpause(Deferred(args)) => commands::resources::pause(global, args, false),
        Command::Stats(Deferred(args)) => commands::resources::stats(global, args),
        Command::Top(Deferred(args)) => commands::resources::top(global, args),
        Command::Volume(Deferred(cmd)) => commands::volume::run(global, cmd),
        Command::Container(Deferred(cmd)) => commands::container::run(global, cmd),
        Command::Cp(Deferred(args)) => commands::cp::run(global, args),
        Command::Commit(Deferred(args)) => commands::commit::commit(global, args),
        Command::Export(Deferred(args)) => commands::commit::export(global, args),
        Command::Diff(Deferred(args)) => commands::commit::diff(global, args),
        Command::Network(Deferred(cmd)) => commands::network::run(global, cmd),
        Command::Port(Deferred(args)) => commands::port::run(global, args),
        Command::Attach(Deferred(args)) => commands::attach::run(global, args),
        Command::Exec(Deferred(args)) => commands::exec::run(global, args),
        Command::Logs(Deferred(args)) => commands::logs::run(global, args),
        Command::Stop(Deferred(args)) => commands::lifecycle::stop(global, args),
        Command::Kill(Deferred(args)) => commands::lifecycle::kill(global, args),
        Command::Restart(Deferred(args)) => commands::lifecycle::restart(global, args),
        Command::Wait(Deferred(args)) => commands::lifecycle::wait(global, args),
        Command::Serve(Deferred(args)) => commands::serve::run(global, args),
        Command::Version => commands::remote::version(None),
    }
}

/// Runs `command` against the server at `host` (`-H`, `FORGE_HOST`): the commands
/// `commands/remote.rs` covers.
fn remote(host: &str, command: Command) -> anyhow::Result<()> {
    let client = commands::remote::Client::new(host)?;
    match command {
        Command::Ps(Deferred(args)) => commands::ps::run_remote(&client, args),
        Command::Images(Deferred(args)) => commands::images::run_remote(&client, args),
        Command::Version => commands::remote::version(Some(host)),
        _ => anyhow::bail!("forge -H {host} runs ps, images and version on the server; other commands run on the local store only: drop -H (and FORGE_HOST)"),
    }
}

/// The error and its causes on one line, as anyhow's `{:#}` prints them, but without a cause
/// whose text the line already ends with: the library errors put their source in their own
/// message (so they read well alone), and anyhow would print it a second time.
fn error_chain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}
