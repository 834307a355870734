//! forge's layer store (work in progress; see the crate README and issue #3).

pub mod archive;
mod atomic;
pub mod cache;
pub mod canonical;
pub mod content;
pub mod diff;
pub mod digest;
pub mod export;
pub mod image;
pub mod import;
pub mod index;
pub mod maintenance;
pub mod snapshot;
pub mod store;

pub use digest::{chain_id, Digest};
pub use image::ImageConfig;
pub use store::{Image, Layer, Store};
