//! One module per subcommand.

pub mod build;
pub mod debug;
pub mod import;
pub mod login;
pub mod output;
pub mod pull;
pub mod push;
pub mod transfer;
