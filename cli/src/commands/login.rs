//! `forge login` and `forge logout`: credentials in docker's config file, as docker keeps them.

use std::io::Read;

use anyhow::{bail, Context};
use clap::Args;
use forge_registry::Credentials;

use crate::commands::transfer::{block_on, RegistryOptions};

/// Arguments of `forge login`.
#[derive(Args)]
pub struct LoginArgs {
    /// The registry (`host[:port]`).
    server: String,
    /// User name.
    #[arg(short, long)]
    username: String,
    /// Password (prefer --password-stdin: a password on the command line is visible to others).
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    registry: RegistryOptions,
}

/// Arguments of `forge logout`.
#[derive(Args)]
pub struct LogoutArgs {
    /// The registry (`host[:port]`).
    server: String,
}

/// Runs `forge login`.
pub fn login(_: &crate::Global, args: LoginArgs) -> anyhow::Result<()> {
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut p = String::new();
            std::io::stdin().read_to_string(&mut p).context("reading the password from standard input")?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("give a password with --password-stdin (or -p)"),
    };
    let creds = Credentials { username: args.username, password };
    block_on(args.registry.client().login(&args.server, &creds))??;
    crate::stdout::outln!("Login Succeeded")?;
    Ok(())
}

/// Runs `forge logout`.
pub fn logout(_: &crate::Global, args: LogoutArgs) -> anyhow::Result<()> {
    let client = forge_registry::Client::new(Default::default());
    if client.logout(&args.server)? {
        crate::stdout::outln!("Removing login credentials for {}", args.server)?;
    } else {
        crate::stdout::outln!("Not logged in to {}", args.server)?;
    }
    Ok(())
}
