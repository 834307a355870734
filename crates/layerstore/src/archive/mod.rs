//! Layer tarballs on the byte level: compression codecs with digesting, and extraction that
//! cannot escape its target directory (containerd's `pkg/archive`).

pub mod compression;
pub mod extract;
mod pgzip;

pub use compression::{decompress, sniff, BlobDigests, Compression, DecompressError, Format, LayerWriter};
pub use extract::{apply_layer, ApplyOptions, ApplyStats, WhiteoutMode};
