//! `forge rm [-f] [-v] CONTAINER...`: remove containers, their writable layers and names (and
//! with `-v` their anonymous volumes).

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
    /// Remove its anonymous volumes too.
    #[arg(short, long)]
    volumes: bool,
    /// Containers (IDs, ID prefixes or names).
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Runs `forge rm`: each one named is removed or reported; exits 1 if any failed.
pub fn run(global: &crate::Global, args: RmArgs) -> anyhow::Result<()> {
    let containers = containers(global)?;
    let volumes = if args.volumes { Some(crate::commands::volume::volumes(global)?) } else { None };
    let mut failed = 0;
    for name in &args.containers {
        let removed = containers.get(name).and_then(|c| {
            containers.remove(&c, args.force)?;
            volumes.as_ref().map_or(Ok(()), |v| v.remove_anonymous(&c.config.mounts))
        });
        match removed {
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
