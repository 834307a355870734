//! Processes, signals, terminals and the published ports' splice(2): the few system calls the
//! runtime makes itself.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use nix::sys::signal::{self, SigSet, Signal};
use nix::unistd::Pid;

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), `None` when it is gone.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Waits for an exclusive `flock` on `path` (made if missing); held until the file is dropped.
pub(crate) fn lock_exclusive(path: &std::path::Path) -> Result<std::fs::File, crate::error::Error> {
    use crate::error::io;
    let file = std::fs::File::options().create(true).truncate(false).write(true).open(path).map_err(io("opening", path))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| io("locking", path)(e.into()))?;
    Ok(file)
}

/// Sends `sig` to `pid` if it is still the process that started at `start`.
pub(crate) fn kill_if_same(pid: u32, start: u64, sig: Signal) {
    if pid != 0 && start_time(pid) == Some(start) {
        let _ = signal::kill(Pid::from_raw(pid as i32), sig);
    }
}

/// The signals `forge run` passes on to its container (docker's `--sig-proxy`).
const PROXIED: [Signal; 6] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// Passes the signals this process receives on to the container that is running, if any,
/// and a change of this process's terminal's size (SIGWINCH) on to the container's terminal.
///
/// It blocks them in the calling thread, which every thread started afterwards inherits, and
/// waits for them in a thread of its own, so no handler runs in signal context. Processes this
/// one spawns get an empty mask back (the standard library resets it), so the container's init
/// sees its signals as usual.
#[derive(Debug, Clone)]
pub struct SignalProxy {
    target: Arc<AtomicI32>,
    terminal: Arc<std::sync::Mutex<Option<std::fs::File>>>,
}

impl SignalProxy {
    /// Starts proxying; call it before starting other threads.
    pub fn install() -> SignalProxy {
        let target = Arc::new(AtomicI32::new(0));
        let terminal = Arc::new(std::sync::Mutex::new(None::<std::fs::File>));
        let mut set = SigSet::empty();
        for s in PROXIED {
            set.add(s);
        }
        set.add(Signal::SIGWINCH);
        // Only fails for an invalid `how`, which this is not.
        let _ = set.thread_block();
        let (to, resized) = (target.clone(), terminal.clone());
        std::thread::spawn(move || loop {
            let Ok(sig) = set.wait() else { continue };
            if sig == Signal::SIGWINCH {
                let master = resized.lock().unwrap_or_else(|e| e.into_inner());
                if let (Some(master), Ok(size)) = (master.as_ref(), rustix::termios::tcgetwinsize(std::io::stdin())) {
                    let _ = set_terminal_size(master, size.ws_row, size.ws_col);
                }
                continue;
            }
            match to.load(Ordering::SeqCst) {
                pid if pid > 0 => {
                    let _ = signal::kill(Pid::from_raw(pid), sig);
                }
                // Nothing runs yet: the signal ends forge, as it would have unblocked.
                0 if matches!(sig, Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP) => std::process::exit(128 + sig as i32),
                // The container ended: forge finishes recording it first.
                _ => {}
            }
        });
        SignalProxy { target, terminal }
    }

    pub(crate) fn set_target(&self, pid: u32) {
        self.target.store(pid as i32, Ordering::SeqCst);
    }

    /// The container's terminal, resized when this process's terminal is.
    pub(crate) fn set_terminal(&self, master: std::fs::File) {
        *self.terminal.lock().unwrap_or_else(|e| e.into_inner()) = Some(master);
    }

    pub(crate) fn finished(&self) {
        self.target.store(-1, Ordering::SeqCst);
    }
}

/// A signal as docker's `--signal`/`--stop-signal` take it: `SIGTERM`, `TERM`, `term` or `15`.
pub(crate) fn parse_signal(s: &str) -> Result<Signal, crate::Error> {
    let bad = || crate::Error::Invalid { what: "signal", value: s.into(), reason: "use a name like SIGTERM or KILL, or a number".into() };
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<Signal>().map_err(|_| bad())
}

/// Makes this process a session leader: a monitor that outlives the command that started
/// it, out of reach of that command's terminal and its signals.
pub(crate) fn new_session() {
    // Fails only for a process group leader, which a freshly spawned monitor is not; were it
    // one, it still has no terminal of its own (its stdio is a pipe and /dev/null).
    let _ = rustix::process::setsid();
}

/// Points the standard streams at `/dev/null`, closing whatever they were (the pipe the
/// starter reads the monitor's first word on).
pub(crate) fn detach_stdio() -> std::io::Result<()> {
    let null = std::fs::File::options().read(true).write(true).open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)?;
    Ok(())
}

/// A copy of file descriptor `fd` of process `pid`, if it is a terminal's master side (the
/// number may have been reused by the time it is asked for).
pub(crate) fn terminal_of(pid: u32, fd: i32) -> std::io::Result<std::fs::File> {
    let not_terminal = || std::io::Error::new(std::io::ErrorKind::NotFound, format!("descriptor {fd} of process {pid} is not a terminal's master side"));
    let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))?;
    if !matches!(target.to_str(), Some("/dev/ptmx" | "/dev/pts/ptmx")) {
        return Err(not_terminal());
    }
    let raw_pid = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw).ok_or_else(not_terminal)?;
    let pidfd = rustix::process::pidfd_open(raw_pid, rustix::process::PidfdFlags::empty())?;
    let copy = rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())?;
    Ok(std::fs::File::from(copy))
}

/// Sets the size of the terminal whose master side is `master`.
pub(crate) fn set_terminal_size(master: &std::fs::File, rows: u16, cols: u16) -> std::io::Result<()> {
    let size = rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    Ok(rustix::termios::tcsetwinsize(master, size)?)
}

/// The size (rows, columns) a container's terminal starts with: that of the terminal forge's
/// standard input is, else docker's default 24x80.
pub(crate) fn terminal_size() -> [u16; 2] {
    match rustix::termios::tcgetwinsize(std::io::stdin()) {
        Ok(w) if w.ws_row > 0 && w.ws_col > 0 => [w.ws_row, w.ws_col],
        _ => [24, 80],
    }
}

/// What [`splice_all`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Spliced {
    /// Everything up to the input's end went across.
    All,
    /// The kernel refused splice for one of the descriptors: the caller copies the rest.
    /// Nothing was lost: what had been read into the pipe was written out first.
    Refused,
}

/// The most one splice(2) asks to move, and the pipe's capacity when the kernel allows it
/// (1 MiB is the default `/proc/sys/fs/pipe-max-size`). The default 64 KiB pipe takes two
/// system calls per 64 KiB, and a bulk transfer is slower for it.
const SPLICE_CHUNK: usize = 1 << 20;

/// Moves what `from` sends to `to` until `from` ends, through a pipe with splice(2): from one
/// socket's receive queue to the other's send queue without a copy in this process's memory
/// (docker-proxy gets the same from Go's io.Copy between two TCP connections). Both are
/// blocking descriptors; the pipe is emptied before each read, so only the sockets block.
pub(crate) fn splice_all(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> std::io::Result<Spliced> {
    use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};
    // No pipe (out of descriptors): the caller's buffer still works.
    let Ok((pipe_out, pipe_in)) = pipe_with(PipeFlags::CLOEXEC) else { return Ok(Spliced::Refused) };
    // A smaller pipe (a lowered pipe-max-size) only costs more calls.
    let _ = fcntl_setpipe_size(&pipe_in, SPLICE_CHUNK);
    loop {
        let read = match retry(|| splice(from, None, &pipe_in, None, SPLICE_CHUNK, SpliceFlags::MOVE)) {
            Ok(0) => return Ok(Spliced::All),
            Ok(n) => n,
            Err(e) if refused(e) => return Ok(Spliced::Refused),
            Err(e) => return Err(e.into()),
        };
        let mut pending = read;
        while pending > 0 {
            match retry(|| splice(&pipe_out, None, to, None, pending, SpliceFlags::MOVE)) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => pending -= n,
                Err(e) if refused(e) => {
                    write_from_pipe(&pipe_out, to, pending)?;
                    return Ok(Spliced::Refused);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// EINVAL: a descriptor that does not splice (a file opened for append, a socket family
/// without splice support); ENOSYS and EOPNOTSUPP: a kernel or filesystem without it.
fn refused(e: rustix::io::Errno) -> bool {
    matches!(e, rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::OPNOTSUPP)
}

fn retry<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match call() {
            Err(rustix::io::Errno::INTR) => {}
            r => return r,
        }
    }
}

/// Writes the `pending` bytes left in the pipe to `to` with read(2) and write(2), for the
/// output that refused splice.
fn write_from_pipe(pipe: &OwnedFd, to: BorrowedFd<'_>, mut pending: usize) -> std::io::Result<()> {
    let mut buf = vec![0u8; pending.min(SPLICE_CHUNK)];
    while pending > 0 {
        let n = retry(|| rustix::io::read(pipe, &mut buf[..pending.min(SPLICE_CHUNK)]))?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut written = 0;
        while written < n {
            match retry(|| rustix::io::write(to, &buf[written..n]))? {
                0 => return Err(std::io::ErrorKind::WriteZero.into()),
                w => written += w,
            }
        }
        pending -= n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::terminal_of;

    #[test]
    fn terminal_of_takes_only_a_terminals_master_side() {
        let me = std::process::id();
        // `resize` trusts a number from a state file: one that names any other file is refused.
        let file = tempfile::tempfile().unwrap();
        let err = terminal_of(me, file.as_raw_fd()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
        assert!(terminal_of(me, 999_999).is_err(), "a closed descriptor");
        let master = std::fs::OpenOptions::new().read(true).write(true).open("/dev/ptmx").unwrap();
        let copy = terminal_of(me, master.as_raw_fd()).unwrap();
        super::set_terminal_size(&copy, 30, 100).unwrap();
        let size = rustix::termios::tcgetwinsize(&master).unwrap();
        assert_eq!((size.ws_row, size.ws_col), (30, 100), "the copy is the same terminal");
    }
}
