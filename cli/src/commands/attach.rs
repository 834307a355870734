//! `forge attach CONTAINER`: a running container's output from now on, forge's input to its
//! input when it was made with `-i`, the signals forge gets passed on to it, and its exit code
//! once it stops (docker's attach without a terminal).

use clap::Args;
use forge_runtime::SignalProxy;

use crate::commands::create::containers;
use crate::commands::run::{copy_output, Exit};

/// Arguments of `forge attach`.
#[derive(Args)]
pub struct AttachArgs {
    /// Do not pass forge's standard input on to the container.
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// The container (ID, ID prefix or name).
    container: String,
}

/// Runs `forge attach`.
pub fn run(global: &crate::Global, args: AttachArgs) -> anyhow::Result<()> {
    // First, before any thread starts, so every thread leaves the signals to the proxy.
    let proxy = SignalProxy::install();
    let containers = containers(global)?;
    let container = containers.get(&args.container)?;
    if container.config.open_stdin && !args.no_stdin {
        let (feeder, c) = (crate::commands::create::containers(global)?, container.clone());
        // Not joined: it waits on forge's input, and ends with this process. The end of that
        // input ends the command's only when it was made to (`create -i`, docker's StdinOnce);
        // either way this waits for the container to stop, as docker's attach does.
        std::thread::spawn(move || {
            if let Ok(Some(mut to)) = feeder.open_stdin(&c, &|| false) {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to);
            }
        });
    }
    let state = containers.attach(&container, &mut copy_output, Some(&proxy))?;
    match u8::try_from(state.exit_code).unwrap_or(255) {
        0 => Ok(()),
        code => Err(Exit(code).into()),
    }
}
