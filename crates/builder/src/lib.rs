//! forge's builder: runs a Dockerfile's build graph into an image in a [`Store`].
//!
//! The parser lowers the Dockerfile to stages ([`forge_parser::dag`]); the builder runs the
//! stages the target needs, those of one level in parallel. Within a stage each step either
//! changes only the image config (ENV, CMD, LABEL...) or makes a layer: RUN in a
//! [`forge_sandbox`] on an overlay of the layers so far, COPY/ADD/WORKDIR on the same overlay
//! mounted by the builder itself. The overlay's upperdir is diffed into a layer in the store's
//! content store and kept as a snapshot for the next step. Every layer-making step has a cache
//! key (`cache_key.rs`); a key already in the store's cache index reuses its layer.
//!
//! The code follows that order: `engine.rs` (the build as a whole) sets up a read-only
//! `ctx.rs` and hands the stages to `scheduler.rs`; `stage.rs` walks one stage and sends each
//! instruction to its module under `step/` (`config.rs`: pure functions for the config-only
//! instructions; `run.rs` and `run/mounts.rs`; `copy.rs` for COPY/ADD, placing files with
//! `files.rs`; `workdir.rs`). Layer steps make their layer through `layers.rs`; variables
//! scope in `vars.rs`; history text is `history.rs`'s. Options arrive typed (`options.rs`),
//! and every step failure has a [`StepErrorKind`].
//!
//! The cache: `cache_key.rs` says what enters a key (and why keys are portable between
//! machines); every entry keeps its key's labelled inputs, which `explain.rs` compares to say
//! why a step missed (`--explain-cache`). `cache_layout.rs` is the cache as an OCI artifact,
//! `cache_export.rs` writes it (`--cache-to`) and `cache_import.rs` reads it (`--cache-from`),
//! lazily from a registry.
//!
//! # Example
//!
//! ```no_run
//! use forge_builder::{build, BuildOptions, NoProgress};
//! use forge_layerstore::Store;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("/var/lib/forge".as_ref())?;
//! let opts = BuildOptions::new("./app".into());
//! let built = build(&store, &opts, None, &NoProgress)?;
//! store.tag("app:1", &built.manifest)?;
//! println!("built {}", built.image_id);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod build_file;
mod cache_export;
mod cache_import;
mod cache_key;
mod cache_layout;
mod ctx;
mod engine;
mod error;
mod explain;
mod files;
mod from_memo;
mod history;
mod layers;
mod mount;
mod one_pass;
mod options;
mod progress;
mod remote;
mod rootfs;
mod scheduler;
mod source;
mod stage;
mod stat_cache;
mod step;
mod users;
mod vars;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use build_file::{read_capped, read_dockerfile, BuildFileError, MAX_BUILD_FILE};
pub use cache_import::CachePrefetch;
pub use cache_layout::{CacheFrom, CacheMode, CacheOptionError, CacheRegistry, CacheTo};
pub use engine::build;
pub use from_memo::gc_from_records;
pub use error::{Error, StepErrorKind};
pub use forge_layerstore::archive::Compression;
pub use forge_layerstore::Store;
/// The network RUN steps get unless they say otherwise (`--network`): the same type as
/// `RUN --network=`. `default` is the host's network for now, without `CAP_NET_RAW` (see the
/// sandbox crate).
pub use forge_parser::flags::NetworkMode;
pub use forge_sandbox::{Cancel, Limits, Seccomp};
pub use options::{ByteSize, Cpus, KeyValue, MemorySwap, OptionError, SecretSpec, SecurityOpt, SourceDateEpoch};
pub use progress::{CacheChange, Event, NoProgress, Progress};

/// Where a `--secret`'s value comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A file the user named (`src=`): bound read-only into the steps that mount it.
    File(PathBuf),
    /// A value held in memory (`env=`): never written to a persistent disk. A step that mounts
    /// it as a file gets it from a tmpfs made for that step and unmounted when the step ends.
    Value(Vec<u8>),
}

impl std::fmt::Debug for Secret {
    // The value never reaches logs or error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::File(p) => f.debug_tuple("File").field(p).finish(),
            Secret::Value(v) => write!(f, "Value(<{} bytes>)", v.len()),
        }
    }
}

/// Gets a base image that is not in the store (the CLI pulls it from a registry). Returns the
/// name under which it is now tagged in the store.
pub trait BaseImages: Sync {
    /// Makes `reference` available in the store; the error text is shown to the user.
    fn fetch(&self, store: &Store, reference: &str) -> Result<String, String>;
}

/// Everything a build needs besides the store.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile (default `<context>/Dockerfile`). It is read inside its own directory,
    /// as BuildKit does: a symlink resolves as if that directory were `/`, never to a host file.
    /// Only a regular file of at most [`MAX_BUILD_FILE`] bytes is read.
    pub dockerfile: Option<PathBuf>,
    /// The Dockerfile's text when it does not come from a file (`-f -`).
    pub dockerfile_text: Option<String>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`: run every step, (and refresh the cache with the results).
    pub no_cache: bool,
    /// `--explain-cache`: report why each layer step missed the cache ([`Event::CacheMiss`]).
    pub explain_cache: bool,
    /// `--cache-to`: where to export the steps' cache after the build.
    pub cache_to: Vec<CacheTo>,
    /// `--cache-from`: caches whose steps the build may reuse, imported before it starts.
    pub cache_from: Vec<CacheFrom>,
    /// The registry client for `type=registry` caches.
    pub cache_registry: Option<std::sync::Arc<dyn CacheRegistry>>,
    /// `cache_from`'s caches, already being read ([`CachePrefetch::start`]); without it (or
    /// for other caches) the build starts reading them itself.
    pub cache_prefetch: Option<std::sync::Arc<CachePrefetch>>,
    /// `--label`, added to the final image.
    pub labels: BTreeMap<String, String>,
    /// `--network`.
    pub network: NetworkMode,
    /// Resource limits for every RUN step.
    pub limits: Limits,
    /// The seccomp profile of every RUN step (`--security-opt seccomp=...`).
    pub seccomp: Seccomp,
    /// `--secret`: id to where the value is.
    pub secrets: BTreeMap<String, Secret>,
    /// How layers are stored: `None` (the default) keeps plain tars, cheap to make, and
    /// compresses them with gzip when the image leaves the store (push, save, `--output`).
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: fixes timestamps so builds are reproducible.
    pub source_date_epoch: Option<i64>,
    /// Keeps plain layers as their committed snapshots only, their tars made when first read
    /// (see `forge_layerstore::snapshot_blob`). [`Store::tag`](forge_layerstore::Store::tag)
    /// stores them at once; `forge` tags a big image as pending instead and stores them in a
    /// detached process (see `forge_layerstore::pending`).
    pub lazy_layers: bool,
    /// The executable the sandbox re-executes as its init (default: this executable, which
    /// must call `forge_sandbox::enter_if_init()` first thing in `main`).
    pub sandbox_init: Option<PathBuf>,
    /// Cancels the build from another thread (Ctrl-C).
    pub cancel: Cancel,
}

impl BuildOptions {
    /// Defaults for building the context at `context`.
    pub fn new(context: PathBuf) -> BuildOptions {
        BuildOptions {
            context,
            dockerfile: None,
            dockerfile_text: None,
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            explain_cache: false,
            cache_to: Vec::new(),
            cache_from: Vec::new(),
            cache_registry: None,
            cache_prefetch: None,
            labels: BTreeMap::new(),
            network: NetworkMode::Default,
            limits: Limits::default(),
            seccomp: Seccomp::Default,
            secrets: BTreeMap::new(),
            compression: Compression::None,
            source_date_epoch: None,
            lazy_layers: false,
            sandbox_init: None,
            cancel: Cancel::new(),
        }
    }
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image's manifest, stored (not tagged: the caller tags it).
    pub manifest: oci_spec::image::Descriptor,
    /// The image ID (config digest).
    pub image_id: forge_layerstore::Digest,
    /// The image config.
    pub config: forge_layerstore::ImageConfig,
}
