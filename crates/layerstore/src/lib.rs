//! forge's layer store (work in progress; see the crate README and issue #3).

pub mod archive;
pub mod canonical;
pub mod content;
pub mod diff;
pub mod digest;
pub mod import;
pub mod index;
pub mod snapshot;

pub use digest::{chain_id, Digest};
