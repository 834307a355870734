//! A container's life after `create`: `stop`, `kill`, `restart`, `wait`, and the hidden
//! `container monitor` a detached container runs under.

use std::io::Write;

use anyhow::{anyhow, Context};
use clap::Args;
use forge_runtime::{Container, Containers, MonitorCommand};

use crate::commands::create::containers;
use crate::stdout::outln;

/// How a detached container's monitor is started: this binary re-executed as `forge --root
/// STORE container monitor ID`.
pub fn monitor_command(global: &crate::Global) -> anyhow::Result<MonitorCommand> {
    let program = std::env::current_exe().context("finding forge's own executable")?;
    // Absolute, as the monitor outlives this command's working directory's meaning.
    let root = std::path::absolute(global.store_root()?).context("resolving the store's path")?;
    Ok(MonitorCommand { program, args: vec!["--root".into(), root.into(), "container".into(), "monitor".into()] })
}

/// Starts `container` under a monitor (see [`monitor_command`]).
pub fn start_detached(global: &crate::Global, containers: &Containers, container: &Container) -> anyhow::Result<u32> {
    Ok(containers.start_detached(container, &monitor_command(global)?)?)
}

/// Arguments of `forge stop`.
#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait for it to exit before killing it (default: its --stop-timeout, else 10).
    #[arg(short = 't', long = "time", visible_alias = "timeout", value_name = "SECONDS")]
    time: Option<u32>,
    /// The signal to send first (default: its --stop-signal, else the image's, else SIGTERM).
    #[arg(short = 's', long = "signal")]
    signal: Option<String>,
    /// Containers (IDs, ID prefixes or names).
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Arguments of `forge kill`.
#[derive(Args)]
pub struct KillArgs {
    /// The signal (a name like SIGHUP or HUP, or a number).
    #[arg(short = 's', long = "signal", default_value = "SIGKILL")]
    signal: String,
    /// Containers (IDs, ID prefixes or names).
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Arguments of `forge wait`.
#[derive(Args)]
pub struct WaitArgs {
    /// Containers (IDs, ID prefixes or names).
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Runs `forge stop`: each container named is stopped (and named on stdout) or reported.
pub fn stop(global: &crate::Global, args: StopArgs) -> anyhow::Result<()> {
    each(global, &args.containers, |cs, c| Ok(cs.stop(c, args.signal.as_deref(), args.time)?), true)
}

/// Runs `forge kill`.
pub fn kill(global: &crate::Global, args: KillArgs) -> anyhow::Result<()> {
    each(global, &args.containers, |cs, c| Ok(cs.kill(c, &args.signal)?), true)
}

/// Runs `forge restart`: stop (as `stop`) then start under a monitor.
pub fn restart(global: &crate::Global, args: StopArgs) -> anyhow::Result<()> {
    each(
        global,
        &args.containers,
        |cs, c| {
            cs.stop(c, args.signal.as_deref(), args.time)?;
            start_detached(global, cs, c).map(drop)
        },
        true,
    )
}

/// Runs `forge wait`: prints each container's exit code once it stopped.
pub fn wait(global: &crate::Global, args: WaitArgs) -> anyhow::Result<()> {
    each(
        global,
        &args.containers,
        |cs, c| {
            let state = cs.wait(c)?;
            outln!("{}", state.exit_code)
        },
        false,
    )
}

/// Does `what` to each container named, as docker does: a failure is reported and the rest
/// go on; exit status 1 if any failed. `echo` names each one done on stdout.
fn each(global: &crate::Global, names: &[String], what: impl Fn(&Containers, &Container) -> anyhow::Result<()>, echo: bool) -> anyhow::Result<()> {
    let containers = containers(global)?;
    let mut failed = 0;
    for name in names {
        match containers.get(name).map_err(anyhow::Error::from).and_then(|c| what(&containers, &c)) {
            Ok(()) if echo => outln!("{name}")?,
            Ok(()) => {}
            Err(e) if e.downcast_ref::<crate::stdout::Closed>().is_some() => return Err(e),
            Err(e) => {
                // Not `eprintln!`: a closed standard error must not turn the failure into a panic.
                let _ = writeln!(std::io::stderr(), "error: {}: {}", name, crate::error_chain(&e));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(anyhow!("{failed} of {} containers failed", names.len()));
    }
    Ok(())
}

/// Runs the hidden `forge container monitor ID` (see [`start_detached`]).
pub fn monitor(global: &crate::Global, id: &str) -> anyhow::Result<()> {
    Ok(containers(global)?.monitor(id)?)
}
