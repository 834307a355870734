//! One module per subcommand.

pub mod build;
pub mod completion;
pub mod container;
pub mod create;
pub mod debug;
pub mod images;
pub mod import;
pub mod inspect;
pub mod login;
pub mod network;
pub mod output;
pub mod port;
pub mod pull;
pub mod ps;
pub mod push;
pub mod resources;
pub mod rm;
pub mod run;
pub mod save;
pub mod security;
pub mod serve;
pub mod start;
pub mod store;
pub mod tag;
pub mod transfer;
pub mod volume;
