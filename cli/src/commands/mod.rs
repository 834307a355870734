//! One module per subcommand.

pub mod build;
pub mod completion;
pub mod debug;
pub mod images;
pub mod import;
pub mod inspect;
pub mod login;
pub mod output;
pub mod pull;
pub mod push;
pub mod save;
pub mod store;
pub mod tag;
pub mod transfer;
