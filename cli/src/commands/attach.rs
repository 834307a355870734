//! `forge attach CONTAINER`: a running container's output from now on, the signals forge gets
//! passed on to it, and its exit code once it stops (docker's attach without a terminal).

use clap::Args;
use forge_runtime::SignalProxy;

use crate::commands::create::containers;
use crate::commands::run::{copy_output, Exit};

/// Arguments of `forge attach`.
#[derive(Args)]
pub struct AttachArgs {
    /// The container (ID, ID prefix or name).
    container: String,
}

/// Runs `forge attach`.
pub fn run(global: &crate::Global, args: AttachArgs) -> anyhow::Result<()> {
    // First, before any thread starts, so every thread leaves the signals to the proxy.
    let proxy = SignalProxy::install();
    let containers = containers(global)?;
    let container = containers.get(&args.container)?;
    let state = containers.attach(&container, &mut copy_output, Some(&proxy))?;
    match u8::try_from(state.exit_code).unwrap_or(255) {
        0 => Ok(()),
        code => Err(Exit(code).into()),
    }
}
