//! A container's log: docker's json-file format, one JSON object a line
//! (`{"log":"hello\n","stream":"stdout","time":"2026-11-30T13:25:51.123456789Z"}`), so tools that
//! read docker's logs read forge's.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use forge_sandbox::Stream;
use serde::{Deserialize, Serialize};

use crate::error::{io, Error};
use crate::state::now;
use crate::Containers;

/// One line of output (or one piece of a line longer than the sandbox passes at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The bytes, with their newline; invalid UTF-8 is replaced, as docker's encoder does.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When the monitor read it, RFC 3339 with nanoseconds.
    pub time: String,
}

/// The longest entry: a longer line is split over several, as docker's json-file driver
/// splits at its 16 KiB buffer.
const MAX_ENTRY: usize = 16 * 1024;

/// Appends entries to a log, one a line (the container's supervisor is its only writer): output that
/// arrives in arbitrary pieces is cut at newlines, and what is left at the end is written by
/// [`LogWriter::flush`].
pub(crate) struct LogWriter {
    file: File,
    path: PathBuf,
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    pub(crate) fn open(path: &Path) -> Result<LogWriter, Error> {
        let file = File::options().create(true).append(true).open(path).map_err(io("opening the log", path))?;
        Ok(LogWriter { file, path: path.into(), pending: [Vec::new(), Vec::new()] })
    }

    /// Adds output; writes the entries it completes.
    pub(crate) fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), Error> {
        let i = stream as usize;
        self.pending[i].extend_from_slice(bytes);
        loop {
            let pending = &self.pending[i];
            let end = match pending.iter().position(|&b| b == b'\n') {
                Some(n) if n < MAX_ENTRY => n + 1,
                _ if pending.len() >= MAX_ENTRY => MAX_ENTRY,
                _ => return Ok(()),
            };
            let line: Vec<u8> = self.pending[i].drain(..end).collect();
            self.entry(stream, &line)?;
        }
    }

    /// Writes what is left of an unfinished line of each stream.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.entry(stream, &rest)?;
            }
        }
        Ok(())
    }

    /// Writes one entry with one `write`, so a reader sees whole lines or nothing of one.
    fn entry(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), Error> {
        let entry = LogEntry {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            }
            .into(),
            time: now(),
        };
        let mut line = serde_json::to_vec(&entry).map_err(|e| Error::Corrupt { path: self.path.clone(), message: e.to_string() })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io("writing the log", &self.path))
    }
}

/// How often a follower looks for more: the log is a plain file, and polling it keeps
/// followers free of the writer's cooperation (as docker's json-file follower is without
/// inotify).
pub(crate) const POLL: std::time::Duration = std::time::Duration::from_millis(100);

impl Containers {
    /// Where a container's log is (`<id>/<id>-json.log`, as docker names it).
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.path(id).join(format!("{id}-json.log"))
    }

    /// Passes the entries written to the container's log from byte `offset` on to `each` as
    /// they come, until the container no longer runs and all it wrote was passed on (`logs -f`,
    /// `attach`). Stops early, with its error, when `each` fails.
    pub fn follow_log<E: From<Error>>(&self, id: &str, offset: u64, each: &mut dyn FnMut(&LogEntry) -> Result<(), E>) -> Result<(), E> {
        self.follow_log_until(id, offset, each, &|| false)
    }

    /// [`Containers::follow_log`] that also stops, early, once `cancelled` says so (a server's
    /// client went away, or the server stops).
    pub fn follow_log_until<E: From<Error>>(&self, id: &str, mut offset: u64, each: &mut dyn FnMut(&LogEntry) -> Result<(), E>, cancelled: &dyn Fn() -> bool) -> Result<(), E> {
        let path = self.log_path(id);
        loop {
            // Whether it still runs, read before the log: what it wrote before it ended is
            // then surely in the file when it is read.
            let running = self.get(id).is_ok_and(|c| c.state.status == crate::Status::Running);
            let (entries, next) = read_log(&path, offset)?;
            offset = next;
            for e in &entries {
                each(e)?;
            }
            if !running || cancelled() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Attaches to a running container as `docker attach` does without a terminal: its output
    /// from now on goes to `output`, the signals `proxy` receives go to it, and once it has
    /// stopped its final state is returned.
    pub fn attach(&self, container: &crate::Container, output: &mut dyn FnMut(Stream, &[u8]), proxy: Option<&crate::SignalProxy>) -> Result<crate::State, Error> {
        let id = container.id();
        let state: crate::State = crate::state::read_json(&self.path(id).join("state.json"))?;
        if state.status != crate::Status::Running {
            return Err(Error::WrongStatus { id: id.into(), status: state.status, what: "only a running container can be attached to" });
        }
        let from = std::fs::metadata(self.log_path(id)).map_or(0, |m| m.len());
        if let Some(p) = proxy {
            p.set_target(state.pid);
            // Its terminal follows forge's, as with `run -it` (a copy from its supervisor).
            if let Some(master) = state.terminal_fd.and_then(|fd| crate::sys::terminal_of(state.supervisor, fd).ok()) {
                p.set_terminal(master);
            }
        }
        let followed = self.follow_log(id, from, &mut |e: &LogEntry| -> Result<(), Error> {
            output(if e.stream == "stderr" { Stream::Stderr } else { Stream::Stdout }, e.log.as_bytes());
            Ok(())
        });
        if let Some(p) = proxy {
            p.finished();
        }
        followed?;
        self.wait(container)
    }
}

/// The whole entries of the log at `path` from byte `offset` on, and the offset after the last
/// of them (a line still being written is left for the next read). A missing log (a container
/// never started detached) has none.
pub fn read_log(path: &Path, offset: u64) -> Result<(Vec<LogEntry>, u64), Error> {
    let mut file = match File::open(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        other => other.map_err(io("opening the log", path))?,
    };
    read_entries(&mut file, path, offset)
}

/// [`read_log`] on an open log (`path` names it in errors).
pub(crate) fn read_entries(file: &mut File, path: &Path, offset: u64) -> Result<(Vec<LogEntry>, u64), Error> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(offset)).and_then(|_| file.read_to_end(&mut bytes)).map_err(io("reading the log", path))?;
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut entries = Vec::new();
    for line in bytes[..whole].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let entry = serde_json::from_slice(line).map_err(|e| Error::Corrupt { path: path.into(), message: format!("a log line: {e}") })?;
        entries.push(entry);
    }
    Ok((entries, offset + whole as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_partial_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x-json.log");
        assert_eq!(read_log(&path, 0).unwrap().0, Vec::new());
        let mut w = LogWriter::open(&path).unwrap();
        // Pieces are joined into lines; an unfinished one waits for the flush.
        w.write(Stream::Stdout, b"o").unwrap();
        w.write(Stream::Stdout, b"ne\ntw").unwrap();
        w.write(Stream::Stderr, b"bad \xff\n").unwrap();
        let (entries, end) = read_log(&path, 0).unwrap();
        assert_eq!(entries.iter().map(|e| (e.log.as_str(), e.stream.as_str())).collect::<Vec<_>>(), [("one\n", "stdout"), ("bad \u{fffd}\n", "stderr")]);
        w.flush().unwrap();
        w.write(Stream::Stdout, &vec![b'x'; MAX_ENTRY + 1]).unwrap();
        let (rest, end) = read_log(&path, end).unwrap();
        assert_eq!(rest.iter().map(|e| e.log.len()).collect::<Vec<_>>(), [2, MAX_ENTRY], "the tail flushed, a long line cut");
        assert!(entries[0].time.ends_with('Z') && humantime::parse_rfc3339(&entries[0].time).is_ok());
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"log\":\"half").unwrap();
        let (more, end2) = read_log(&path, end).unwrap();
        assert!(more.is_empty());
        assert_eq!(end2, end);
    }
}
