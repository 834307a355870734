//! What a container is doing (`state.json`), and the durable way every record is written.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{io, Error};

/// A container's status (docker's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended (or its supervisor died, see [`State::error`]).
    Exited,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        })
    }
}

/// A container's changing state, rewritten atomically at every transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    /// Created, running or exited.
    pub status: Status,
    /// The host PID of the container's init while it runs (0 otherwise).
    pub pid: u32,
    /// That process's start time (clock ticks since boot, `/proc/<pid>/stat` field 22), so a
    /// reused PID is never taken for it.
    pub pid_start: u64,
    /// The PID of the forge process supervising it (it holds the container's lock).
    pub supervisor: u32,
    /// The exit code once exited: the command's, 128 + signal when killed, 255 when its
    /// supervisor died and the code is unknown (as docker reports a container it lost).
    pub exit_code: i32,
    /// Whether the kernel's OOM killer ended it.
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// RFC 3339 start time, empty before the first start.
    pub started_at: String,
    /// RFC 3339 end time, empty until it exits.
    pub finished_at: String,
    /// Why it could not start, or what happened to it when nobody saw it end.
    pub error: String,
    /// The cgroup directories of the running container (one per cgroup v1 hierarchy), so that
    /// other forge processes can pause it and read its accounting.
    #[serde(default)]
    pub cgroup: Vec<std::path::PathBuf>,
    /// Whether it is paused (its cgroup frozen): read from the freezer when it is listed.
    #[serde(default)]
    pub paused: bool,
    /// How many times its monitor restarted it (its restart policy).
    #[serde(default)]
    pub restart_count: u32,
    /// With a terminal (`-t`): the number of the supervisor's file descriptor that holds the
    /// terminal's master side, so that any forge process can resize it
    /// ([`Containers::resize`](crate::Containers::resize)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_fd: Option<i32>,
}

impl State {
    /// The state of a new container.
    pub fn created() -> State {
        State {
            status: Status::Created,
            pid: 0,
            pid_start: 0,
            supervisor: 0,
            exit_code: 0,
            oom_killed: false,
            started_at: String::new(),
            finished_at: String::new(),
            error: String::new(),
            cgroup: Vec::new(),
            paused: false,
            restart_count: 0,
            terminal_fd: None,
        }
    }
}

/// Now, as the records spell times.
pub(crate) fn now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// Writes `value` as JSON to `path`: temp file, fsync, rename over, fsync of the directory, so
/// a reader sees the old or the new record, never part of one, and a crash keeps one of them.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let dir = path.parent().expect("records live in a directory");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Corrupt { path: path.into(), message: e.to_string() })?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(io("writing", dir))?;
    tmp.write_all(&bytes).and_then(|()| tmp.as_file().sync_all()).map_err(io("writing", tmp.path()))?;
    tmp.persist(path).map_err(|e| io("writing", path)(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("syncing", dir))
}

/// Reads a JSON record.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, Error> {
    let bytes = fs::read(path).map_err(io("reading", path))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt { path: path.into(), message: e.to_string() })
}
