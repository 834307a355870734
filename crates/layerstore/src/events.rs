//! The store's event journal, `<store>/forge/events.jsonl`: one JSON line per change (a
//! container created, started, dead, removed; an image tagged or untagged; a network or
//! volume made or removed), which `forge serve` streams as docker's `/events`.
//!
//! Why a journal: forge has no daemon that sees every change as it happens. Any forge process
//! (the CLI, a container's monitor, the server) changes the store, so each appends what it did
//! here, and a reader tails the file, which gives history (`since`) and live events alike, and
//! outlives a restarted server. Each line is appended with one `write` under an `flock` on
//! `events.lock`, so lines never interleave or tear while forge runs; a line a crash cut short
//! is skipped by readers.
//!
//! Bounded: once the file passes [`MAX_BYTES`], the writer that finds it so renames it to
//! `events.jsonl.1` (replacing the generation before) under the same lock; a [`Tail`] follows
//! the rename by inode. Recording is best effort for the caller: the change it describes is
//! already made, and a full disk must not turn a finished `rm` into a failure.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Past this size the journal is rotated (one old generation is kept).
pub const MAX_BYTES: u64 = 4 << 20;

/// One change, as docker's events describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Nanoseconds since the Unix epoch.
    pub time_nano: i64,
    /// `container`, `image`, `network` or `volume`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What happened: `create`, `start`, `die`, `destroy`, `tag`, `connect`...
    pub action: String,
    /// What it happened to: a container's or network's ID, an image's digest, a volume's name.
    pub id: String,
    /// Names and details (`name`, `image`, `exitCode`, `container`, labels...).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// An event happening now.
    pub fn now(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Event {
        let time_nano = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        Event { time_nano, kind: kind.into(), action: action.into(), id: id.into(), attributes }
    }
}

/// The journal of the store at `store_root`.
pub fn path(store_root: &Path) -> PathBuf {
    store_root.join("forge").join("events.jsonl")
}

fn rotated(journal: &Path) -> PathBuf {
    journal.with_extension("jsonl.1")
}

/// Appends `event` to the journal of the store at `store_root`.
pub fn record(store_root: &Path, event: &Event) -> std::io::Result<()> {
    let journal = path(store_root);
    let lock = OpenOptions::new().create(true).truncate(false).write(true).open(journal.with_extension("lock"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    if fs::metadata(&journal).is_ok_and(|m| m.len() > MAX_BYTES) {
        fs::rename(&journal, rotated(&journal))?;
    }
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    OpenOptions::new().create(true).append(true).open(&journal)?.write_all(&line)
}

/// [`record`], for callers whose change is already made: a journal that cannot be written
/// loses the event, not the change.
pub fn record_quietly(store_root: &Path, event: Event) {
    let _ = record(store_root, &event);
}

/// A reader of the journal: the first [`poll`](Tail::poll) returns every event kept (the old
/// generation, then the current one), each later one what was appended since.
#[derive(Debug)]
pub struct Tail {
    journal: PathBuf,
    /// The inode of the file being read and how far it was read; `None` before the first poll.
    at: Option<(u64, u64)>,
}

impl Tail {
    /// A reader of the journal of the store at `store_root`.
    pub fn new(store_root: &Path) -> Tail {
        Tail { journal: path(store_root), at: None }
    }

    /// The events appended since the last poll, oldest first.
    pub fn poll(&mut self) -> std::io::Result<Vec<Event>> {
        let mut out = Vec::new();
        let old = rotated(&self.journal);
        let current = match fs::metadata(&self.journal) {
            Ok(m) => Some(m.ino()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match self.at {
            None => {
                read_from(&old, 0, &mut out)?;
            }
            // Rotated since the last poll: the rest of what was being read is the old generation now.
            Some((ino, offset)) if Some(ino) != current => {
                if fs::metadata(&old).is_ok_and(|m| m.ino() == ino) {
                    read_from(&old, offset, &mut out)?;
                }
                self.at = None;
            }
            Some(_) => {}
        }
        let Some(ino) = current else { return Ok(out) };
        let offset = self.at.map_or(0, |(_, o)| o);
        let consumed = read_from(&self.journal, offset, &mut out)?;
        self.at = Some((ino, offset + consumed));
        Ok(out)
    }
}

/// Parses the complete lines of `path` from `offset` into `out`; returns how many bytes they
/// took (a line still being written is left for the next read).
fn read_from(path: &Path, offset: u64, out: &mut Vec<Event>) -> std::io::Result<u64> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    out.extend(bytes[..complete].split(|b| *b == b'\n').filter_map(|line| serde_json::from_slice::<Event>(line).ok()));
    Ok(complete as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64) -> Event {
        Event { time_nano: n, kind: "container".into(), action: "start".into(), id: format!("c{n}"), attributes: BTreeMap::new() }
    }

    #[test]
    fn a_tail_reads_history_then_what_follows_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("forge")).unwrap();
        let mut tail = Tail::new(dir.path());
        assert!(tail.poll().unwrap().is_empty());
        record(dir.path(), &event(1)).unwrap();
        record(dir.path(), &event(2)).unwrap();
        assert_eq!(tail.poll().unwrap(), vec![event(1), event(2)]);
        assert!(tail.poll().unwrap().is_empty());
        // A half-written line waits; a torn one is skipped.
        let journal = path(dir.path());
        OpenOptions::new().append(true).open(&journal).unwrap().write_all(b"{\"time_nano\":3,").unwrap();
        assert!(tail.poll().unwrap().is_empty());
        OpenOptions::new().append(true).open(&journal).unwrap().write_all(b"\n").unwrap();
        record(dir.path(), &event(4)).unwrap();
        // Rotation: the appended rest of the old file, then the new one.
        OpenOptions::new().append(true).open(&journal).unwrap().set_len(MAX_BYTES + 1).unwrap();
        record(dir.path(), &event(5)).unwrap();
        record(dir.path(), &event(6)).unwrap();
        assert_eq!(tail.poll().unwrap(), vec![event(4), event(5), event(6)]);
        // A new reader gets both generations.
        let all = Tail::new(dir.path()).poll().unwrap();
        assert_eq!(all.iter().map(|e| e.time_nano).collect::<Vec<_>>(), vec![1, 2, 4, 5, 6]);
    }
}
