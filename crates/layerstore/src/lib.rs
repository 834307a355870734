//! forge's layer store (work in progress; see the crate README and issue #3).

pub mod archive;
pub mod content;
pub mod diff;
pub mod digest;
pub mod snapshot;

pub use digest::{chain_id, Digest};
