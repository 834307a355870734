//! forge's layer store: an OCI image layout on disk that skopeo, umoci and podman read, plus
//! the pieces a builder needs around it, as a library.
//!
//! The pieces follow containerd's model, each with a narrow interface:
//!
//! - [`content`]: blobs by digest (`blobs/sha256/`), written through locked, resumable ingests
//!   and committed only when size and digest verify;
//! - [`index`]: tags, as `org.opencontainers.image.ref.name` annotations in `index.json`;
//! - [`snapshot`]: unpacked layers keyed by chain ID, stacked as overlay lowerdirs;
//! - [`diff`] and [`archive`]: a directory change (an overlay upperdir, or two trees) to a
//!   deterministic layer tar, compressed and hashed in one pass; and the hostile-input-safe
//!   reverse, [`archive::apply_layer`];
//! - [`image`]: Docker/OCI image configs with the fields oci-spec lacks;
//! - [`store::Store`]: one handle over all of it, with image-level operations;
//! - [`export`], [`maintenance`], [`cache`]: archives, gc/fsck, the builder's cache index;
//! - [`lease`]: what keeps gc away from a running build, pull or push;
//! - [`pending`]: tags that enter `index.json` once their image's blobs are stored;
//! - [`reference`]: image names as Docker parses them;
//! - [`remote`]: layers known by descriptor and registry only, fetched when first read;
//! - the store is closed to other local users (its root and `forge/` are 0700).
//!
//! Every write is atomic (temp file, fsync, rename, fsync of the directory), and two processes
//! may share a store: locks cover one ingest or one small file, never the whole store. What
//! nothing durable names yet waits for no disk: a build's image and the records of its remote
//! layers ([`Store::write_image_unsynced`]) are synced when a tag first names them, and the
//! cache's entries never are (a lost one costs its step again).
//!
//! # Example
//!
//! Make a one-layer image from a directory, tag it, and read it back:
//!
//! ```
//! use forge_layerstore::diff::{LayerOptions, LayerSource};
//! use forge_layerstore::image::History;
//! use forge_layerstore::{ImageConfig, Layer, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let tree = dir.path().join("tree");
//! std::fs::create_dir_all(tree.join("etc"))?;
//! std::fs::write(tree.join("etc/motd"), "hello\n")?;
//!
//! let store = Store::open(&dir.path().join("store"))?;
//! let layer = store.write_layer(&LayerSource::Dirs { lower: None, upper: &tree }, &LayerOptions::default())?;
//!
//! let mut config = ImageConfig::scratch();
//! config.rootfs.diff_ids.push(layer.diff_id.clone());
//! config.config.cmd = Some(vec!["cat".into(), "/etc/motd".into()]);
//! config.history.push(History { created_by: Some("example".into()), ..History::default() });
//! let manifest = store.write_image(&config, &[Layer::from(&layer)])?;
//! store.tag("motd:1", &manifest)?;
//!
//! let image = store.image("motd:1")?;
//! assert_eq!(image.layers()?.len(), 1);
//! assert_eq!(image.config.config.cmd.as_deref(), Some(&["cat".to_string(), "/etc/motd".to_string()][..]));
//! assert!(forge_layerstore::maintenance::fsck(&store, false)?.is_clean());
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod archive;
pub mod atomic;
mod batch;
pub mod cache;
pub mod canonical;
pub mod content;
pub mod diff;
pub mod digest;
pub mod distribute;
pub mod events;
pub mod export;
pub mod image;
pub mod import;
pub mod index;
pub mod lease;
mod lock;
pub mod maintenance;
pub mod pending;
mod permissions;
pub mod reference;
pub mod remote;
mod scratch;
pub mod snapshot;
pub mod snapshot_blob;
pub mod store;

pub use digest::{chain_id, Digest};
pub use image::ImageConfig;
pub use store::{Image, Layer, Store};

// The README's library example is compiled and run as a doctest, so it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
