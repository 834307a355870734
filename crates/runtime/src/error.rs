//! Why a container operation failed.

use std::path::PathBuf;

/// A container operation's failure, as data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image is not in the store (or its name cannot be read).
    #[error("using image {reference:?}: {source}")]
    Image {
        /// The reference as given.
        reference: String,
        /// What the store said.
        source: forge_layerstore::store::Error,
    },
    /// Neither the image nor the command line gives a command.
    #[error("no command specified: the image has no Entrypoint or Cmd, give one after the image name")]
    NoCommand,
    /// A flag's value is malformed.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// Which flag or field.
        what: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// No container has this ID, ID prefix or name.
    #[error("no such container: {0}")]
    NotFound(String),
    /// The ID prefix names more than one container.
    #[error("container ID prefix {0:?} is ambiguous: give more characters")]
    Ambiguous(String),
    /// The name is taken (docker's 409 Conflict).
    #[error("the container name {name:?} is already in use by container {id}: remove (or rename) that container to reuse the name")]
    NameInUse {
        /// The name.
        name: String,
        /// Who holds it.
        id: String,
    },
    /// The operation does not fit the container's status.
    #[error("container {id} is {status}: {what}")]
    WrongStatus {
        /// The container.
        id: String,
        /// Its status.
        status: crate::Status,
        /// What was refused, and how to proceed.
        what: &'static str,
    },
    /// The store's `config.json` cannot be read or holds a value forge does not know.
    #[error("store config {}: {reason}", path.display())]
    StoreConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `/etc/subuid` or `/etc/subgid` cannot be read, parsed or extended.
    #[error("subordinate ids for --userns=remap, {}: {reason}", path.display())]
    SubordinateIds {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `--userns=remap` with `--network host` or `--privileged`, which docker refuses too (the
    /// container's root would hold no capability over the host's namespaces and devices), or
    /// in rootless forge.
    #[error("--userns=remap cannot be combined with {0}: leave it out or use --userns=host")]
    UsernsConflict(&'static str),
    /// No volume has this name.
    #[error("no such volume: {0}")]
    NoSuchVolume(String),
    /// A container names the volume (docker's 409 Conflict).
    #[error("volume {name} is in use by container(s) {}: remove them first", containers.join(", "))]
    VolumeInUse {
        /// The volume.
        name: String,
        /// The containers that name it.
        containers: Vec<String>,
    },
    /// A resource limit breaks docker's rules (`-m` below 6 MiB, `--memory-swap` without `-m`...).
    #[error("invalid resource limits: {0}")]
    Limits(String),
    /// Pausing a paused container, or unpausing one that is not.
    #[error("container {id} is {what}")]
    Pause {
        /// The container.
        id: String,
        /// `already paused` or `not paused`.
        what: &'static str,
    },
    /// Its cgroup could not be found or controlled.
    #[error("container {id}: {source}")]
    Cgroup {
        /// The container.
        id: String,
        /// The sandbox's error.
        source: forge_sandbox::ControlError,
    },
    /// The command could not be executed (exit code 126, or 127 when `not_found`).
    #[error("{message}")]
    Exec {
        /// What failed.
        message: String,
        /// Not found, rather than not executable.
        not_found: bool,
    },
    /// The resource flags cannot be applied here (rootless forge has no cgroup); refused at
    /// create rather than ignored.
    #[error(transparent)]
    LimitsUnavailable(forge_sandbox::Error),
    /// The sandbox could not run the container's command, or a command exec'd in it.
    #[error("{what} {id}: {source}")]
    Sandbox {
        /// What was being done: `starting container`, `exec in container`.
        what: &'static str,
        /// The container.
        id: String,
        /// The sandbox's error.
        source: forge_sandbox::Error,
    },
    /// The layer store refused.
    #[error("{what}: {source}")]
    Store {
        /// What was being done.
        what: &'static str,
        /// The store's error.
        source: forge_layerstore::store::Error,
    },
    /// The snapshotter refused.
    #[error("{what}: {source}")]
    Snapshot {
        /// What was being done.
        what: &'static str,
        /// The snapshotter's error.
        source: forge_layerstore::snapshot::Error,
    },
    /// A container's record cannot be read.
    #[error("container record {}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Files could not be copied into or out of a container (`cp`, `export`).
    #[error("{message}")]
    Copy {
        /// What went wrong, with the path.
        message: String,
    },
    /// The container's network could not be set up.
    #[error("setting up the network of container {id}: {source}")]
    Network {
        /// The container.
        id: String,
        /// What failed.
        source: forge_network::Error,
    },
    /// The store's networks could not be read or changed (not one container's).
    #[error(transparent)]
    Networks(#[from] forge_network::Error),
    /// A port could not be published (most often: something else listens on it).
    #[error("publishing {publish}: {source}")]
    Publish {
        /// The publication (`80/tcp -> 0.0.0.0:8080`).
        publish: String,
        /// The bind error.
        source: std::io::Error,
    },
    /// A detached container's monitor could not start it.
    #[error("{0}")]
    Monitor(String),
    /// `top`'s `ps` failed or printed no PID column.
    #[error("{0}")]
    Top(String),
    /// Filesystem or process error.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// The exit code docker gives this failure: 127 command not found, 126 not executable,
    /// 125 for everything else (the engine failed, not the container).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Exec { not_found: true, .. } => 127,
            Error::Exec { not_found: false, .. } => 126,
            _ => 125,
        }
    }
}

pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}
