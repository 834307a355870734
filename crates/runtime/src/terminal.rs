//! Resizing a container's or an exec's terminal (docker's `resize`), from any forge process.
//!
//! The terminal's master side lives in the process that supervises the command (a container's
//! monitor, the CLI of a foreground `run`, or the process that runs an exec). The supervisor
//! records the descriptor's number in the container's state, and a resize takes a copy of it
//! with `pidfd_getfd` (root may, as it may ptrace): no socket or request to the monitor, so
//! nothing to keep in step with it.

use std::fs::File;

use crate::containers::{Container, Containers};
use crate::error::Error;
use crate::state::{read_json, State, Status};
use crate::sys;

/// Sets the size of the terminal whose master side is `master`.
pub fn resize_terminal(master: &File, rows: u16, cols: u16) -> std::io::Result<()> {
    sys::set_terminal_size(master, rows, cols)
}

impl Containers {
    /// Sets the size of `container`'s terminal to `rows` x `cols`. A running container
    /// without a terminal has nothing to resize (`Ok`, as docker's clients resize every
    /// container they attach to with `-t` and nothing else).
    pub fn resize(&self, container: &Container, rows: u16, cols: u16) -> Result<(), Error> {
        let id = container.id();
        let state: State = read_json(&self.path(id).join("state.json"))?;
        if state.status != Status::Running || sys::start_time(state.pid) != Some(state.pid_start) {
            return Err(Error::WrongStatus { id: id.into(), status: state.status, what: "only a running container's terminal can be resized" });
        }
        let Some(fd) = state.terminal_fd else { return Ok(()) };
        let proc_fd = std::path::PathBuf::from(format!("/proc/{}/fd/{fd}", state.supervisor));
        let master = sys::terminal_of(state.supervisor, fd).map_err(|source| Error::Io { what: "finding the container's terminal", path: proc_fd.clone(), source })?;
        sys::set_terminal_size(&master, rows, cols).map_err(|source| Error::Io { what: "resizing the container's terminal", path: proc_fd, source })
    }
}
