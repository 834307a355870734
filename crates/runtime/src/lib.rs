//! forge's containers: the lifecycle of a container over [`forge_sandbox`] (its process tree,
//! in namespaces and a cgroup) and [`forge_layerstore`] (its writable layer), without a daemon.
//!
//! A container is created from an image of the store: its configuration is resolved from the
//! image's config and the options by docker's rules ([`CreateOptions`]), and its writable layer is
//! an active snapshot prepared on the image's layer chain, *held* by the container so `store gc`
//! keeps it (and the layers below it) until the container is removed. Running it starts the
//! sandbox on that snapshot; its state is recorded as it starts and ends.
//!
//! # State layout
//!
//! Everything lives in the store, so any `forge` process sees every container:
//!
//! ```text
//! <store>/forge/containers/<id>/       one directory per container, id = 64 hex digits
//!     config.json   what was asked, resolved (Config): written once at create
//!     state.json    what it does (State): created/running/exited, pid and its start time,
//!                   exit code, OOMKilled, start and end times, error, and the cgroup
//!                   directories of a running container (pause/unpause, stats and top use them)
//!     lock          flock'ed by whoever changes the state, and by the forge process that
//!                   supervises the container for as long as it runs
//! <store>/forge/container-names/<name>  the ID holding the name (rewritten under its flock)
//! <store>/forge/volumes/<name>/_data    a volume's files; volume.json beside them (Volumes)
//! <store>/forge/volumes.lock            flock'ed while volumes are taken or removed
//! <store>/forge/snapshots/...           the writable layer: key `container-<id>`, held by
//!                                       "container <id>" (a gc root)
//! ```
//!
//! Every record is written whole (temp file, fsync, rename, fsync of the directory), so a reader
//! never needs the lock. A container directory is made under `.new-<id>` and renamed into place,
//! and removed by renaming it to `.rm-<id>` first.
//!
//! **Reconciling.** A running container's supervisor holds its lock. A command that finds a
//! container recorded as running whose lock it can take knows the supervisor died (its init died
//! with it: the sandbox ties it to its parent); it records the container as exited with code
//! 255 and why, and removes the cgroup it left; a container made with `--rm` is then removed, as
//! its supervisor would have done.
//!
//! **Later.** A detached container's supervisor will be a monitor process holding the same lock
//! and writing `state.json` the same way; logs will go beside it (`<id>/<id>-json.log`), and
//! `stop`/`kill` will signal the recorded pid after checking its start time, as `rm -f` does.
//!
//! # Example
//!
//! ```
//! use forge_layerstore::Store;
//! use forge_runtime::{Containers, CreateOptions, Error};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let containers = Containers::open(&store)?;
//! assert!(containers.list()?.is_empty());
//!
//! // An image that is not in the store: docker's exit code 125.
//! let opts = CreateOptions { image: "missing:1".into(), ..CreateOptions::default() };
//! let err = containers.create(&opts).unwrap_err();
//! assert!(matches!(err, Error::Image { .. }));
//! assert_eq!(err.exit_code(), 125);
//! assert!(matches!(containers.get("abc"), Err(Error::NotFound(_))));
//! # Ok(())
//! # }
//! ```
//!
//! With an image in the store, [`Containers::create`] then [`Containers::run_foreground`] runs
//! it (as root, from a binary that calls [`forge_sandbox::enter_if_init`] first).

#![deny(missing_docs)]

mod config;
mod containers;
mod error;
mod network;
mod resources;
mod state;
mod sys;
mod volumes;

pub use config::{env_entry, env_file, Config, CreateOptions, Limits, Network, Publish, Seccomp, Security};
pub use network::published;
pub use resources::check_limits;
pub use containers::{Container, Containers};
pub use error::Error;
pub use state::{State, Status};
pub use sys::SignalProxy;
pub use volumes::{MountSource, MountSpec, Volume, Volumes};
