//! Waiting on a container from another process, as the Engine API's clients do: `docker
//! wait`'s conditions, and following the output of a container that may not have started yet
//! (`docker run` attaches before it starts) and may be removed as soon as it ends (`--rm`).
//!
//! A container made with `--rm` is removed by its monitor, under its lock, before a waiter
//! blocked on that lock gets it: its exit would be lost. So a waiter leaves an empty *exit
//! slot* (`<containers>/.exit-<id>-<nonce>`) before it looks, and the remover writes the
//! final state into every slot of the container before removing it; the waiter reads and
//! deletes its slot. Its log is held open from the start for the same reason.

use std::fs::File;
use std::io::ErrorKind;
use std::path::PathBuf;

use crate::containers::{Container, Containers};
use crate::error::{io, Error};
use crate::logs::{read_entries, LogEntry, POLL};
use crate::state::{read_json, write_json, State, Status};

/// What `docker wait` waits for (its `condition` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Until it does not run (at once for one that does not).
    NotRunning,
    /// Until it exits next: a created container is waited for through its start.
    NextExit,
    /// Until it exits next and is removed.
    Removed,
}

/// A follower of one container's output (see [`Containers::follower`]).
#[derive(Debug)]
pub struct Follower {
    log: File,
    path: PathBuf,
    offset: u64,
    id: String,
    first: State,
}

/// An exit slot, deleted when dropped.
#[derive(Debug)]
struct Slot(PathBuf);

/// A waiter on one container, registered (its exit slot made, its state read) before the
/// waiting begins: a client told that its wait is in place may then start the container.
#[derive(Debug)]
pub struct Waiter {
    slot: Slot,
    id: String,
    first: State,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Containers {
    fn exit_slot(&self, id: &str) -> Result<Slot, Error> {
        let file = tempfile::Builder::new().prefix(&format!(".exit-{id}-")).tempfile_in(self.dir()).map_err(io("making an exit slot in", self.dir()))?;
        let (_, path) = file.keep().map_err(|e| io("making an exit slot in", self.dir())(e.error))?;
        Ok(Slot(path))
    }

    /// Writes `state` into every waiter's exit slot of container `id` (just before it is removed).
    pub(crate) fn fill_exit_slots(&self, id: &str, state: &State) {
        let prefix = format!(".exit-{id}-");
        let Ok(entries) = std::fs::read_dir(self.dir()) else { return };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                // A waiter that cannot be told sees the container gone (a 404), nothing worse.
                let _ = write_json(&entry.path(), state);
            }
        }
    }

    /// Registers a waiter on `container`, for [`Containers::wait_for`].
    pub fn waiter(&self, container: &Container) -> Result<Waiter, Error> {
        let slot = self.exit_slot(container.id())?;
        // Read after the slot is made: an exit after this read fills the slot.
        let first = self.get(container.id())?.state;
        Ok(Waiter { slot, id: container.id().to_string(), first })
    }

    /// Waits for `condition` and returns the container's state then; `None` once `cancelled`
    /// says so first (a server's client went away). A container removed meanwhile answers with
    /// the state it ended in when it was removed after its exit, else [`Error::NotFound`].
    ///
    /// It polls rather than blocks on the container's lock: a blocked thread could not be
    /// called off, and a lock held by a waiter, however briefly, would make a concurrent start
    /// fail as if the container ran.
    pub fn wait_for(&self, waiter: Waiter, condition: WaitCondition, cancelled: &dyn Fn() -> bool) -> Result<Option<State>, Error> {
        let Waiter { slot, id, first } = waiter;
        let id = id.as_str();
        if condition == WaitCondition::NotRunning && first.status != Status::Running {
            return Ok(Some(first));
        }
        loop {
            let state: State = match read_json(&self.path(id).join("state.json")) {
                Ok(s) => s,
                Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                    return read_json(&slot.0).map(Some).map_err(|_| Error::NotFound(id.into()));
                }
                Err(e) => return Err(e),
            };
            let exited = state.status != Status::Running && (state.finished_at != first.finished_at || condition == WaitCondition::NotRunning);
            if exited && condition != WaitCondition::Removed {
                return Ok(Some(state));
            }
            if state.status == Status::Running {
                // Records a container whose supervisor died as exited.
                self.load(id)?;
            }
            if cancelled() {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Registers a follower of `container`'s output, for [`Containers::follow_run`]: its log
    /// opened (created if missing: its monitor appends to the same file) and held, as a `--rm`
    /// container's log is gone from the directory as soon as it ends, and its state read,
    /// before the client is told it is attached (it may start the container then). With
    /// `from_start`, what the log holds already comes first.
    pub fn follower(&self, container: &Container, from_start: bool) -> Result<Follower, Error> {
        let id = container.id();
        let path = self.log_path(id);
        let log = File::options().create(true).append(true).read(true).open(&path).map_err(io("opening the log", &path))?;
        let offset = if from_start { 0 } else { log.metadata().map_err(io("reading the log", &path))?.len() };
        let first = self.get(id)?.state;
        Ok(Follower { log, path, offset, id: id.to_string(), first })
    }

    /// The output of the follower's container from its next start (or the current run, if it
    /// runs) until it ends, passed to `each`; returns once it ended and all it wrote was passed
    /// on, even when it is removed at its end, or early once `cancelled` says so.
    pub fn follow_run<E: From<Error>>(&self, follower: Follower, each: &mut dyn FnMut(&LogEntry) -> Result<(), E>, cancelled: &dyn Fn() -> bool) -> Result<(), E> {
        let Follower { mut log, path, mut offset, id, first } = follower;
        let mut started = first.status == Status::Running;
        loop {
            let now: Option<State> = read_json(&self.path(&id).join("state.json")).ok();
            started |= now.as_ref().is_some_and(|s| s.status == Status::Running || s.started_at != first.started_at);
            let running = now.as_ref().is_some_and(|s| s.status == Status::Running);
            // Read after the state: what it wrote before it ended is in the file by then.
            let (entries, next) = read_entries(&mut log, &path, offset).map_err(E::from)?;
            offset = next;
            for e in &entries {
                each(e)?;
            }
            if now.is_none() || (started && !running) || cancelled() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }
}
