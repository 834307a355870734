//! Ctrl-C: the first one cancels the running operation cleanly (processes killed, mounts and
//! half-written store entries removed); a second one exits at once.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use forge_builder::Cancel;

/// Calls `cancel` on the first SIGINT/SIGTERM; exits with 130 on the second.
pub fn on_interrupt(cancel: impl Fn() + Send + 'static) {
    static SEEN: AtomicBool = AtomicBool::new(false);
    // Only fails if a handler is already set, in which case that one stays.
    let _ = ctrlc::set_handler(move || {
        if SEEN.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("cancelling...");
        cancel();
    });
}

/// A reader of a pipe, FIFO or terminal (standard input) that gives up once `cancel` is
/// set. The signal handler runs on its own thread and a blocked `read` would not notice it
/// (the handler restarts interrupted calls), so every read first waits in `poll` for at most
/// a fifth of a second at a time, looking at the flag in between.
pub struct Interruptible<R> {
    inner: R,
    cancel: Cancel,
}

impl<R: Read + AsFd> Interruptible<R> {
    pub fn new(inner: R, cancel: Cancel) -> Interruptible<R> {
        Interruptible { inner, cancel }
    }
}

impl<R: Read + AsFd> Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let tick = rustix::event::Timespec { tv_sec: 0, tv_nsec: 200_000_000 };
        loop {
            if self.cancel.is_cancelled() {
                return Err(io::Error::other("cancelled"));
            }
            let mut fds = [rustix::event::PollFd::new(&self.inner, rustix::event::PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&tick)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                // Readable, at its end, or in error: `read` tells which.
                Ok(_) => return self.inner.read(buf),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
