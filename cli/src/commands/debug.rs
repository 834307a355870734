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
    /// Run one command in the RUN sandbox over a directory as the only layer (the upper layer
    /// is thrown away): for measuring the sandbox and checking what a step sees.
    Run {
        /// The root filesystem (read-only lower layer).
        rootfs: std::path::PathBuf,
        /// `none` or `host`.
        #[arg(long, default_value = "none")]
        network: forge_sandbox::Network,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        argv: Vec<String>,
    },
}

/// Runs a `forge debug` subcommand.
pub fn run(_global: &crate::Global, cmd: DebugCommand) -> anyhow::Result<()> {
    match cmd {
        DebugCommand::Run { rootfs, network, argv } => {
            let scratch = tempfile::Builder::new().prefix("forge-debug-run-").tempdir()?;
            let (upper, work) = (scratch.path().join("upper"), scratch.path().join("work"));
            std::fs::create_dir(&upper)?;
            std::fs::create_dir(&work)?;
            let mut spec = forge_sandbox::RunSpec::new(vec![rootfs], upper, work, argv);
            spec.network = network;
            let cancel = forge_sandbox::Cancel::new();
            let c = cancel.clone();
            crate::signals::on_interrupt(move || c.cancel());
            let outcome = forge_sandbox::run(&spec, &cancel, &mut |stream, line| {
                use std::io::Write;
                let _ = match stream {
                    forge_sandbox::Stream::Stdout => std::io::stdout().write_all(line),
                    forge_sandbox::Stream::Stderr => std::io::stderr().write_all(line),
                };
            })?;
            match outcome.status {
                forge_sandbox::ExitStatus::Exited(0) => Ok(()),
                status => anyhow::bail!("{status}"),
            }
        }
        DebugCommand::Parse { file } => {
            let (name, bytes) = if file.as_os_str() == "-" {
                ("-".to_string(), forge_builder::read_capped(std::io::stdin().lock()).context("reading standard input")?)
            } else {
                let opened = std::fs::File::open(&file).with_context(|| format!("reading {}", file.display()))?;
                let bytes = forge_builder::read_capped(opened).with_context(|| format!("reading {}", file.display()))?;
                (file.display().to_string(), bytes)
            };
            let df = forge_parser::parse_bytes(&bytes, &name).map_err(|e| anyhow::anyhow!("{}", e.render()))?;
            for w in df.warnings() {
                eprintln!("warning: {name}:{}: {}", w.line, w.message);
            }
            crate::stdout::write_all(df.dump().as_bytes())
        }
    }
}
