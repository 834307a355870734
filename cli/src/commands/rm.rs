//! `forge rm [-f] CONTAINER...`: remove containers, their writable layers and names.

use std::io::Write;

use anyhow::anyhow;
use clap::Args;

use crate::commands::create::containers;
use crate::stdout::outln;

/// Arguments of `forge rm`.
#[derive(Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short, long)]
    force: bool,
    /// Containers (IDs, ID prefixes or names).
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Runs `forge rm`: each one named is removed or reported; exits 1 if any failed.
pub fn run(global: &crate::Global, args: RmArgs) -> anyhow::Result<()> {
    let containers = containers(global)?;
    let mut failed = 0;
    for name in &args.containers {
        match containers.get(name).and_then(|c| containers.remove(&c, args.force)) {
            Ok(()) => outln!("{name}")?,
            Err(e) => {
                // Not `eprintln!`: a closed standard error must not turn the failure into a panic.
                let _ = writeln!(std::io::stderr(), "error: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(anyhow!("{failed} of {} containers could not be removed", args.containers.len()));
    }
    Ok(())
}
