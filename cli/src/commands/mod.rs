//! One module per subcommand.

pub mod build;
pub mod debug;
pub mod import;
pub mod output;
