//! `forge debug ...`: developer views of the front end.

use anyhow::Context;
use clap::Subcommand;

/// Subcommands of `forge debug`.
#[derive(Subcommand)]
pub enum DebugCommand {
    /// Print the AST of a Dockerfile in BuildKit's dump format (as conformance `result` files hold it).
    Parse {
        /// The Dockerfile to parse (`-` for standard input).
        file: std::path::PathBuf,
    },
}

/// Runs a `forge debug` subcommand.
pub fn run(_global: &crate::Global, cmd: DebugCommand) -> anyhow::Result<()> {
    match cmd {
        DebugCommand::Parse { file } => {
            let (name, bytes) = if file.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading standard input")?;
                ("-".to_string(), buf)
            } else {
                let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                (file.display().to_string(), bytes)
            };
            let df = forge_parser::parse_bytes(&bytes, &name).map_err(|e| anyhow::anyhow!("{}", e.render()))?;
            for w in df.warnings() {
                eprintln!("warning: {name}:{}: {}", w.line, w.message);
            }
            print!("{}", df.dump());
            Ok(())
        }
    }
}
