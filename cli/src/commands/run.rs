//! `forge run IMAGE [CMD...]`: create a container and run it in the foreground, its output
//! on forge's, its exit code forge's (125 when forge fails, 126/127 when the command cannot be
//! executed or found, as docker's).

use std::io::Write;

use clap::Args;
use forge_runtime::{Container, Containers, SignalProxy};
use forge_sandbox::Stream;

use crate::commands::create::{containers, ContainerFlags};

/// Arguments of `forge run`.
#[derive(Args)]
pub struct RunArgs {
    /// Run in the background under a monitor; print the container's ID.
    #[arg(short = 'd', long)]
    detach: bool,
    #[command(flatten)]
    flags: ContainerFlags,
}

/// Ends forge with this exit code, its message (if any) already printed.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

impl Exit {
    /// Prints `err` and gives docker's exit code for it: the runtime's (125, 126, 127), else 125.
    pub fn failed(err: anyhow::Error) -> anyhow::Error {
        // The library errors spell their source in their own message: a cause already said
        // at the end of the text so far is not repeated.
        let mut message = String::new();
        for cause in err.chain().map(|c| c.to_string()) {
            if !message.ends_with(&cause) {
                message = if message.is_empty() { cause } else { format!("{message}: {cause}") };
            }
        }
        // Not `eprintln!`: a closed standard error must not turn the failure into a panic.
        let _ = writeln!(std::io::stderr(), "forge: {message}");
        let code = err.chain().find_map(|e| e.downcast_ref::<forge_runtime::Error>()).map_or(125, |e| e.exit_code());
        Exit(code).into()
    }
}

/// Runs `forge run`.
pub fn run(global: &crate::Global, args: RunArgs) -> anyhow::Result<()> {
    // First, before any thread starts, so every thread leaves the signals to the proxy.
    let proxy = SignalProxy::install();
    let created = args.flags.options().and_then(|mut opts| {
        // Detached, its input is no client's: each one that attaches feeds it, as docker's.
        opts.stdin_once &= !args.detach;
        let containers = containers(global)?;
        let c = containers.create(&opts)?;
        Ok((containers, c))
    });
    let (containers, container) = created.map_err(Exit::failed)?;
    if args.detach {
        crate::commands::lifecycle::start_detached(global, &containers, &container).map_err(Exit::failed)?;
        return crate::stdout::outln!("{}", container.id());
    }
    attach(&containers, &container, &proxy)
}

/// Runs `container` in the foreground and exits with its code.
pub fn attach(containers: &Containers, container: &Container, proxy: &SignalProxy) -> anyhow::Result<()> {
    // `-it` on a terminal: keys go to the container's terminal as they are typed (Ctrl-C
    // included), as docker does; the terminal is restored whatever happens.
    let _raw = (container.config.tty && container.config.open_stdin).then(RawTerminal::enter).flatten();
    let input: Box<dyn std::io::Read + Send> = Box::new(std::io::stdin());
    let state = containers.run_foreground(container, Some(input), &mut copy_output, Some(proxy)).map_err(|e| Exit::failed(e.into()))?;
    // 0..=255 by construction (an exit code, or 128 + a signal number).
    let code = u8::try_from(state.exit_code).unwrap_or(255);
    if code == 0 {
        Ok(())
    } else {
        Err(Exit(code).into())
    }
}

/// The container's bytes, unchanged, to the same stream of forge's; a closed stdout (a pipe
/// whose reader left) drops them rather than failing the container.
pub fn copy_output(stream: Stream, bytes: &[u8]) {
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(bytes).and_then(|()| std::io::stdout().lock().flush()),
        Stream::Stderr => std::io::stderr().lock().write_all(bytes),
    };
}

/// forge's terminal in raw mode, restored on drop.
pub struct RawTerminal {
    saved: rustix::termios::Termios,
}

impl RawTerminal {
    /// `None` when standard input is no terminal.
    pub fn enter() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &self.saved);
    }
}
