//! `forge start -a CONTAINER`: start a created (or exited) container in the foreground.

use anyhow::bail;
use clap::Args;
use forge_runtime::SignalProxy;

use crate::commands::create::containers;
use crate::commands::run::{attach, Exit};

/// Arguments of `forge start`.
#[derive(Args)]
pub struct StartArgs {
    /// Attach: stream its output and exit with its code (the only mode for now).
    #[arg(short, long)]
    attach: bool,
    /// The container (ID, ID prefix or name).
    container: String,
}

/// Runs `forge start`.
pub fn run(global: &crate::Global, args: StartArgs) -> anyhow::Result<()> {
    if !args.attach {
        bail!("forge has no detached containers yet: use `forge start -a {}`", args.container);
    }
    let proxy = SignalProxy::install();
    let found = containers(global).and_then(|cs| {
        let c = cs.get(&args.container)?;
        Ok((cs, c))
    });
    let (containers, container) = found.map_err(Exit::failed)?;
    attach(&containers, &container, &proxy)
}
