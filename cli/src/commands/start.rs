//! `forge start [-a] CONTAINER`: start a created (or exited) container, under a monitor in the
//! background, or in the foreground with `-a`.

use clap::Args;
use forge_runtime::SignalProxy;

use crate::commands::create::containers;
use crate::commands::run::{attach, Exit};

/// Arguments of `forge start`.
#[derive(Args)]
pub struct StartArgs {
    /// Attach: stream its output and exit with its code (else it runs under a monitor).
    #[arg(short, long)]
    attach: bool,
    /// The container (ID, ID prefix or name).
    container: String,
}

/// Runs `forge start`.
pub fn run(global: &crate::Global, args: StartArgs) -> anyhow::Result<()> {
    if !args.attach {
        let found = containers(global).and_then(|cs| {
            let c = cs.get(&args.container)?;
            Ok((cs, c))
        });
        let (containers, container) = found.map_err(Exit::failed)?;
        // Already running: nothing to do, as docker's `start` says nothing of it either.
        if container.state.status != forge_runtime::Status::Running {
            crate::commands::lifecycle::start_detached(global, &containers, &container).map_err(Exit::failed)?;
        }
        return crate::stdout::outln!("{}", args.container);
    }
    let proxy = SignalProxy::install();
    let found = containers(global).and_then(|cs| {
        let c = cs.get(&args.container)?;
        Ok((cs, c))
    });
    let (containers, container) = found.map_err(Exit::failed)?;
    attach(&containers, &container, &proxy)
}
