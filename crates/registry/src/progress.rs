//! Transfer progress: the library reports bytes per blob; the caller draws bars or lines.

/// Receives progress from parallel transfers.
pub trait Progress: Send + Sync {
    /// A blob transfer starts (`total` bytes; `already` of them present or resumed).
    fn start(&self, digest: &str, total: u64, already: u64);
    /// More bytes of the blob moved.
    fn advance(&self, digest: &str, bytes: u64);
    /// The blob is done: `how` is `pulled`, `pushed`, `exists` or `mounted`.
    fn done(&self, digest: &str, how: &str);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn done(&self, _: &str, _: &str) {}
}

/// One line per finished blob on stderr, for logs and non-terminals.
#[derive(Debug, Default, Clone, Copy)]
pub struct LineProgress;

impl Progress for LineProgress {
    fn start(&self, _: &str, _: u64, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn done(&self, digest: &str, how: &str) {
        eprintln!("{}: {how}", &digest[..digest.len().min(19)]);
    }
}
