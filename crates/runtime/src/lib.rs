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
//!     config.json   what was asked, resolved (Config): written at create (and by rename)
//!     state.json    what it does (State): created/running/exited, pid and its start time,
//!                   its supervisor's pid, exit code, OOMKilled, start and end times, error,
//!                   restart count, and the cgroup directories of a running container
//!                   (pause/unpause, stats and top use them)
//!     <id>-json.log its output, docker's json-file format (see read_log)
//!     stopped       present once `stop`/`kill`/`rm -f` stopped it: no restart policy applies
//!     stdin         with `-i`, the FIFO its monitor feeds the command's input from (attach)
//!     networks.json the networks `network connect` added, attached again at each start
//!     networks.lock flock'ed while networks.json changes (its lock is its supervisor's)
//!     lock          flock'ed by whoever changes the state, and by the process that
//!                   supervises the container for as long as it runs
//! <store>/forge/containers/.exit-<id>-*  a waiter's exit slot: the final state is written
//!                                       there before the container is removed (wait.rs)
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
//! # Supervisors
//!
//! A container runs under exactly one supervisor, which holds its lock from start to exit and
//! writes `state.json`:
//!
//! - **foreground** ([`Containers::run_foreground`], `forge run`, `start -a`): the forge
//!   command itself, its output on the caller's, signals passed on ([`SignalProxy`]).
//! - **detached** ([`Containers::start_detached`], `run -d`, `start`): a monitor process, the
//!   caller's executable re-executed ([`Containers::monitor`]; forge's hidden
//!   `container monitor ID`), in a session of its own with `/dev/null` for stdio, like conmon or
//!   containerd-shim. It tells its starter on a pipe once the command was executed (or why
//!   not: `run -d` then fails with docker's 126/127), writes the log, records each exit,
//!   applies the restart policy (docker's back-off: 100 ms doubling, reset after 10 s up)
//!   unless the container was stopped by hand, and removes a
//!   `--rm` container at the end. It outlives the command that started it.
//!
//! With `-i` the command's standard input stays open: the foreground caller copies its own
//! input to it, a monitor holds it open unwritten (`run -di IMAGE sh` keeps running). With `-t`
//! the command gets a terminal (the sandbox's `RunSpec::tty`), whose master side its supervisor
//! reads (and, with `-i`, writes); a monitor logs what it shows. `attach` follows the log.
//!
//! Other commands act through the recorded init PID, checked against its start time so a
//! reused PID is never signalled: [`Containers::stop`] sends the stop signal, then SIGKILL after
//! the timeout, and returns once the supervisor let go of the lock (a thread blocked on the
//! lock, so no polling); [`Containers::kill`] sends one signal; [`Containers::wait`] blocks on
//! the lock; [`Containers::exec`] runs a second command in the container's namespaces, root and
//! cgroups (the sandbox's `RunSpec::enter`), with its user, capabilities and seccomp filter.
//!
//! **Reconciling.** A command that finds a container recorded as running whose lock it can take
//! knows the supervisor died (its init died with it: the sandbox ties it to its parent); it
//! records the container as exited with code 255 and why, and removes the cgroup it left; a
//! container made with `--rm` is then removed, as its supervisor would have done. A `kill -9`
//! of a monitor is such a death.
//! **Files.** [`Containers::rootfs`] gives a container's files to `cp`: a stopped container's
//! snapshot mounted under its lock (it cannot start meanwhile), a running one's init's root.
//! Every path resolves inside that root (`openat2(RESOLVE_IN_ROOT)`), walks never follow a
//! symlink, and writes go through forge-layerstore's layer applier (see [`Rootfs`]). `export`
//! reads [`Containers::snapshot_view`], `diff` and `commit` the writable layer itself.
//!
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
//! it (as root, from a binary that calls [`forge_sandbox::enter_if_init`] first), or
//! [`Containers::start_detached`] under a monitor (from a binary that can be re-executed into
//! [`Containers::monitor`]).

#![deny(missing_docs)]

mod config;
mod containers;
mod error;
mod events;
mod exec;
mod logs;
mod monitor;
mod network;
mod resources;
mod rootfs;
mod state;
mod sys;
mod terminal;
mod userns;
mod volumes;
mod wait;

pub use config::{env_entry, env_file, Config, CreateOptions, Limits, Network, Publish, RestartPolicy, Seccomp, Security};
pub use containers::{new_id, Container, Containers};
pub use error::Error;
pub use exec::ExecOptions;
pub use logs::{read_log, LogEntry};
pub use monitor::MonitorCommand;
pub use network::{networks, published, Endpoint};
pub use resources::{check_limits, host_cpu, host_memory, Top};
pub use rootfs::{rebase_archive, ArchiveOptions, PathKind, PathStat, Rootfs};
pub use state::{State, Status};
pub use sys::SignalProxy;
pub use terminal::resize_terminal;
pub use userns::{remap_mapping, store_default as userns_store_default, Userns};
pub use forge_sandbox::{IdMapping, Stream};
pub use wait::{Follower, WaitCondition, Waiter};
pub use volumes::{MountSource, MountSpec, Volume, Volumes};
