//! Subcommands whose arguments clap builds only when they are the one given.
//!
//! clap's derive builds every subcommand's arguments before it parses anything: for forge's
//! forty commands that was 0.6 ms of every run, a seventh of a build that only hits the cache.
//! [`Command::defer`](clap::Command::defer) puts that off until clap enters the subcommand;
//! the derive has no attribute for it (clap-rs/clap#4959), so a command's type is wrapped.

use std::sync::atomic::{AtomicBool, Ordering};

use clap::{ArgMatches, Args, Command, Error, FromArgMatches, Subcommand};

static EAGER: AtomicBool = AtomicBool::new(false);

/// Commands made from here on are built whole at once, for a reader of the whole tree
/// (the completion generators, which do not run deferred parts).
pub fn build_eagerly() {
    EAGER.store(true, Ordering::Relaxed);
}

/// `augment` now when building eagerly, else when clap enters the command.
fn defer(cmd: Command, augment: fn(Command) -> Command) -> Command {
    if EAGER.load(Ordering::Relaxed) {
        augment(cmd)
    } else {
        cmd.defer(augment)
    }
}

/// A command's arguments (an [`Args`] type) or its own subcommands (a [`Subcommand`] type),
/// built when clap enters the command.
pub struct Deferred<T>(pub T);

impl<T: FromArgMatches> FromArgMatches for Deferred<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, Error> {
        T::from_arg_matches(matches).map(Deferred)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), Error> {
        self.0.update_from_arg_matches(matches)
    }
}

/// `augment` on `cmd`, keeping the help text the command was given: the derive sets the
/// command's own before `augment` runs when deferred, and the type's doc would replace it.
fn keeping_about(cmd: Command, augment: fn(Command) -> Command) -> Command {
    let (about, long_about) = (cmd.get_about().cloned(), cmd.get_long_about().cloned());
    let cmd = augment(cmd);
    let cmd = match about {
        Some(a) => cmd.about(a),
        None => cmd.about(None::<&'static str>),
    };
    match long_about {
        Some(a) => cmd.long_about(a),
        None => cmd.long_about(None::<&'static str>),
    }
}

impl<T: Args> Args for Deferred<T> {
    fn augment_args(cmd: Command) -> Command {
        defer(cmd, |cmd| keeping_about(cmd, T::augment_args))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        defer(cmd, |cmd| keeping_about(cmd, T::augment_args_for_update))
    }
}

impl<T: Subcommand> Subcommand for Deferred<T> {
    fn augment_subcommands(cmd: Command) -> Command {
        defer(cmd, |cmd| keeping_about(cmd, T::augment_subcommands))
    }

    fn augment_subcommands_for_update(cmd: Command) -> Command {
        defer(cmd, |cmd| keeping_about(cmd, T::augment_subcommands_for_update))
    }

    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks a command's definition when it is built; a deferred one is built only when
    /// given, so every command is checked here.
    #[test]
    fn every_command_is_well_formed() {
        super::build_eagerly();
        crate::Cli::command().debug_assert();
    }
}
