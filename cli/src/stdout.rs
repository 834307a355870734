//! Everything forge prints on standard output goes through [`outln!`] or [`write_all`]. A
//! reader that went away (`forge images | head -1`) makes the write fail with EPIPE, which
//! becomes [`Closed`]; `main` ends quietly with exit status 0 on it, as ripgrep does. Only
//! standard output is treated so: a broken pipe anywhere else is a real error.

use std::io::{self, Write};

/// Standard output's reader has gone away.
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for Closed {}

/// Writes `bytes` to standard output.
pub fn write_all(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Closed.into()),
        other => Ok(other?),
    }
}

/// `println!` that returns an `anyhow::Result` instead of panicking when standard output is
/// closed.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::write_all(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}
pub(crate) use outln;
