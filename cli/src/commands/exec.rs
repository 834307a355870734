//! `forge exec [-i] [-t] [-u USER] [-w DIR] [-e K=V] CONTAINER CMD...`: run a command in a running
//! container; exits with its code (126/127 when it cannot be executed or found, 1 when forge
//! fails, as `docker exec`).

use clap::Args;
use forge_runtime::{ExecOptions, SignalProxy};

use crate::commands::create::containers;
use crate::commands::run::{copy_output, Exit, RawTerminal};

/// Arguments of `forge exec`.
#[derive(Args)]
pub struct ExecArgs {
    /// Keep standard input open: forge's input is copied to the command.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// A terminal for the command.
    #[arg(short = 't', long)]
    tty: bool,
    /// Set an environment variable (`KEY=VALUE`, or `KEY` to take forge's own value).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The user (default: the container's).
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// The working directory (default: the container's).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// The container (ID, ID prefix or name).
    container: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Runs `forge exec`.
pub fn run(global: &crate::Global, args: ExecArgs) -> anyhow::Result<()> {
    // First, before any thread starts, so every thread leaves the signals to the proxy.
    let proxy = SignalProxy::install();
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for e in &args.env {
        env.extend(forge_runtime::env_entry(e, lookup)?);
    }
    let input = args.interactive.then(|| Box::new(std::io::stdin()) as Box<dyn std::io::Read + Send>);
    let opts = ExecOptions { cmd: args.command, env, user: args.user, working_dir: args.workdir, input, tty: args.tty, tty_size: None, on_terminal: None };
    let containers = containers(global)?;
    let container = containers.get(&args.container)?;
    let _raw = (args.tty && args.interactive).then(RawTerminal::enter).flatten();
    match containers.exec(&container, opts, &mut copy_output, Some(&proxy)) {
        Ok(0) => Ok(()),
        // 0..=255 by construction (an exit code, or 128 + a signal number).
        Ok(code) => Err(Exit(u8::try_from(code).unwrap_or(255)).into()),
        Err(e @ forge_runtime::Error::Exec { .. }) => Err(Exit::failed(e.into())),
        Err(e) => Err(e.into()),
    }
}
