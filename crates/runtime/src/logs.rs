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

/// Appends entries to a log (the monitor is its only writer).
pub(crate) struct LogWriter {
    file: File,
    path: PathBuf,
}

impl LogWriter {
    pub(crate) fn open(path: &Path) -> Result<LogWriter, Error> {
        let file = File::options().create(true).append(true).open(path).map_err(io("opening the log", path))?;
        Ok(LogWriter { file, path: path.into() })
    }

    /// Writes one entry with one `write`, so a reader sees whole lines or nothing of one.
    pub(crate) fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), Error> {
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

impl Containers {
    /// Where a container's log is (`<id>/<id>-json.log`, as docker names it).
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.path(id).join(format!("{id}-json.log"))
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
        w.write(Stream::Stdout, b"one\n").unwrap();
        w.write(Stream::Stderr, b"bad \xff\n").unwrap();
        let (entries, end) = read_log(&path, 0).unwrap();
        assert_eq!(entries.iter().map(|e| (e.log.as_str(), e.stream.as_str())).collect::<Vec<_>>(), [("one\n", "stdout"), ("bad \u{fffd}\n", "stderr")]);
        assert!(entries[0].time.ends_with('Z') && humantime::parse_rfc3339(&entries[0].time).is_ok());
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"log\":\"half").unwrap();
        let (more, end2) = read_log(&path, end).unwrap();
        assert!(more.is_empty());
        assert_eq!(end2, end);
    }
}
