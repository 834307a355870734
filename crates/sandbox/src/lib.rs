//! forge's RUN sandbox: runs one build step the way Docker runs a container, with nothing
//! borrowed from another container runtime.
//!
//! A step gets new mount, PID, UTS, IPC and cgroup namespaces (and a network namespace with
//! only loopback for [`Network::None`]), an overlay root filesystem over the image's layers
//! entered with `pivot_root`, a fresh `/proc`, a minimal `/dev`, read-only `/sys`, Docker's
//! masked paths, Docker's default capabilities with `no_new_privs` (without `CAP_NET_RAW` on
//! the host's network), Docker's default seccomp profile, and its own cgroup (v1 or v2,
//! detected) with memory, CPU and pids limits and Docker's device rules. It inherits no
//! descriptor but its standard streams, and it dies with the thread that started it. Its
//! output streams back line by line; its exit status comes back exactly; CPU time, peak memory and OOM kills are reported; when it
//! ends, is cancelled or fails, every process it started is killed and its cgroup removed.
//!
//! A container needs a little more, each asked for in the [`RunSpec`]: its input kept open
//! (`stdin`, then [`Event::Stdin`]), a terminal (`tty`), and a second command in a sandbox that
//! runs already (`enter`: `exec` joins its namespaces, root and cgroups, and gets the same
//! identity, capabilities and seccomp path). [`Event::Executed`] tells when the command runs.
//!
//! With [`RunSpec::userns`] the command runs in a user namespace of its own, its root an
//! unprivileged host user, over idmapped layers (see `userns.rs`). Run by an unprivileged user,
//! forge first re-executes itself as root of a user namespace ([`enter_if_unprivileged`]); a
//! step then gets no cgroup, and limits are refused ([`check_limits_possible`]).
//!
//! The host binary must call [`enter_if_init`] first thing in `main`: the sandbox re-executes
//! it as the step's init (see `init.rs` for why).
//!
//! # Example
//!
//! ```no_run
//! use forge_sandbox::{run, Cancel, RunSpec, Stream};
//!
//! fn main() {
//!     forge_sandbox::enter_if_init();
//!     let mut spec = RunSpec::new(
//!         vec!["/var/lib/forge/forge/snapshots/snapshots/1/fs".into()],
//!         "/tmp/step/upper".into(),
//!         "/tmp/step/work".into(),
//!         vec!["/bin/sh".into(), "-c".into(), "echo hello > /greeting".into()],
//!     );
//!     spec.limits.memory = Some(256 << 20);
//!     let outcome = run(&spec, &Cancel::new(), &mut |_: Stream, line: &[u8]| {
//!         print!("{}", String::from_utf8_lossy(line));
//!     })
//!     .expect("sandbox");
//!     assert!(outcome.status.success());
//! }
//! ```

#![deny(missing_docs)]

mod caps;
mod cgroup;
mod enter;
mod init;
mod mounts;
mod network;
mod overlay;
mod rootless;
mod seccomp;
mod spec;
mod stubs;
mod sys;
mod user;
mod userns;

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub use cgroup::{ControlError, ControlGroup, Stats as CgroupStats};
pub use overlay::{mount_overlay, mount_scratch_overlay, TooManyLayers, MAX_LAYERS};
pub use seccomp::{check_profile as check_seccomp_profile, ProfileError, Seccomp, UnknownProfile};
pub use caps::{normalize as normalize_capability, UnknownCapability};
pub use rootless::{enter_if_unprivileged, in_user_namespace, RootlessError};
pub use userns::{subordinate_ranges, IdMapping, SubordinateRange};
pub use spec::{Etc, Limits, Mount, MountKind, Network, Output, RunSpec, Security, UnknownNetwork};

use cgroup::Cgroup;
use init::{InitSpec, Report};

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Cancels a running step from another thread: every process of the step is killed and
/// [`run`] returns [`Error::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token not yet cancelled.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Cancels.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How the step's command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// The kernel's OOM killer killed it (or one of its processes) at the memory limit.
    OomKilled {
        /// The limit in bytes, when one was set.
        limit: Option<u64>,
    },
}

impl ExitStatus {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Exited(0))
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exit code {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by signal {s}"),
            ExitStatus::OomKilled { limit: Some(l) } => write!(f, "killed: out of memory (limit {} MiB)", l >> 20),
            ExitStatus::OomKilled { limit: None } => write!(f, "killed: out of memory"),
        }
    }
}

/// What a finished step reports.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How the command ended.
    pub status: ExitStatus,
    /// CPU time of every process of the step.
    pub cpu_time: Duration,
    /// Peak memory of the step's cgroup, where the kernel reports it.
    pub peak_memory: Option<u64>,
    /// Wall time from start to the last process gone.
    pub wall_time: Duration,
}

/// Why a step could not run (as opposed to running and failing, which is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The step was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The cgroup could not be made or used.
    #[error("cgroup: {0}")]
    Cgroup(std::io::Error),
    /// Starting the init failed.
    #[error("starting the sandbox init {}: {source}", path.display())]
    Spawn {
        /// The executable.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The init could not set the sandbox up (mounts, user, executable lookup...).
    #[error("{0}")]
    Setup(String),
    /// The command could not be executed (docker's exit codes 127 and 126).
    #[error("{message}")]
    Exec {
        /// What failed, with the program's name.
        message: String,
        /// Not found (`ENOENT`, or nothing in `PATH`), rather than found but not executable.
        not_found: bool,
    },
    /// The init died without reporting; how it ended (`exit code 101` is a panic), when known.
    #[error("the sandbox init died without reporting a status ({how})")]
    InitDied {
        /// Its wait status, in words.
        how: String,
    },
    /// Resource limits were asked for where no cgroup can be made: a rootless forge (its user
    /// namespace gets no cgroup delegated on cgroup v1).
    #[error("resource limits need a cgroup, and rootless forge has none (cgroup {version}: nothing is delegated to an unprivileged user): drop the limit flags or run forge as root")]
    NoCgroups {
        /// `v1` or `v2`.
        version: &'static str,
    },
    /// Scratch files could not be made.
    #[error("preparing the sandbox: {0}")]
    Io(std::io::Error),
}

/// If this process was re-executed as a sandbox init, runs the sandbox and never returns;
/// otherwise returns at once. Call it first thing in `main` of any binary that runs steps.
pub fn enter_if_init() {
    if std::env::var_os(init::MARKER).is_some() {
        sys::remove_env_single_threaded(init::MARKER);
        init::main();
    }
}

/// Runs `spec` and waits for it, passing its output to `output` (on this thread): line by
/// line, or as it comes with [`Output::Raw`].
pub fn run(spec: &RunSpec, cancel: &Cancel, output: &mut dyn FnMut(Stream, &[u8])) -> Result<Outcome, Error> {
    run_observed(spec, cancel, &mut |event| {
        if let Event::Output(stream, bytes) = event {
            output(stream, bytes);
        }
    })
}

/// What [`run_observed`] reports while a step runs.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The init is in the step's cgroup and namespaces (`/proc/<pid>/ns/net` is the step's
    /// network namespace), and nothing else is done before the observer returns: what it adds
    /// to them (a network interface) is there from the command's first instruction. Reported
    /// first, and not at all when the init fails before its namespaces are made.
    Namespaces {
        /// The init's PID in the caller's PID namespace.
        pid: u32,
    },
    /// The init started, with this host PID, already in the step's cgroup and namespaces
    /// (right after `Namespaces`; the step is being set up meanwhile): a caller that keeps
    /// state about the step records it, and may signal it (SIGTERM, SIGINT and SIGHUP are
    /// passed on to the command).
    Started {
        /// The init's PID in the caller's PID namespace.
        pid: u32,
    },
    /// The command was executed: it runs (after `Started`; never when it could not be).
    Executed,
    /// Output, as [`run`] passes it.
    Output(Stream, &'a [u8]),
    /// The command's standard input, with [`RunSpec::stdin`] (right after `Started`): it ends
    /// when the caller drops it (with a terminal, it is the terminal's input).
    Stdin(std::fs::File),
    /// The master side of the command's terminal, with [`RunSpec::tty`] (right before
    /// `Started`): a caller keeps it to resize the terminal (`tcsetwinsize`) while it runs.
    Terminal(std::fs::File),
}

/// [`run`], reporting the start as well as the output.
pub fn run_observed(spec: &RunSpec, cancel: &Cancel, observe: &mut dyn FnMut(Event<'_>)) -> Result<Outcome, Error> {
    let start = Instant::now();
    let mut scratch = tempfile::Builder::new();
    scratch.prefix("forge-sandbox-");
    let scratch = match &spec.scratch_in {
        Some(dir) => scratch.tempdir_in(dir),
        None => scratch.tempdir(),
    }
    .map_err(Error::Io)?;
    let (rootfs, empty_lower) = (scratch.path().join("rootfs"), scratch.path().join("empty"));
    std::fs::create_dir(&rootfs).map_err(Error::Io)?;
    std::fs::create_dir(&empty_lower).map_err(Error::Io)?;
    let etc_files = etc_files(scratch.path(), &spec.hostname, spec.etc).map_err(Error::Io)?;
    // Joining a running sandbox (`enter`) makes no cgroup and no mountpoint of its own.
    let stubs = spec.enter.is_none().then(|| stubs::Stubs::before(spec));
    check_limits_possible(&spec.limits)?;
    let cgroup = match spec.enter {
        None => Some(Cgroup::create(&spec.limits, spec.security.privileged).map_err(Error::Cgroup)?),
        Some(_) => None,
    };

    let exe = match &spec.init {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|source| Error::Spawn { path: "/proc/self/exe".into(), source })?,
    };
    let (status_read, status_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| Error::Io(e.into()))?;
    // `tty`: the terminal the command gets as its standard streams; the master side is read
    // for its output (and written for its input).
    let pty = match spec.tty {
        Some([rows, cols]) => {
            let size = nix::pty::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
            let pty = nix::pty::openpty(&size, None).map_err(|e| Error::Io(e.into()))?;
            rustix::io::fcntl_setfd(&pty.master, rustix::io::FdFlags::CLOEXEC).map_err(|e| Error::Io(e.into()))?;
            Some(pty)
        }
        None => None,
    };
    let mut cmd = Command::new(&exe);
    cmd.env(init::MARKER, "1").stdin(Stdio::piped());
    match &pty {
        Some(pty) => {
            let (out, err) = (pty.slave.try_clone().map_err(Error::Io)?, pty.slave.try_clone().map_err(Error::Io)?);
            cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        }
        None => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    // Its own process group: a terminal's Ctrl-C goes to the caller's group only, and reaches
    // the step through its caller (which cancels a build, or passes it on to a container once),
    // not a second time straight from the terminal.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = sys::spawn_init(&mut cmd, status_write.as_fd(), init::STATUS_FD).map_err(|source| Error::Spawn { path: exe.clone(), source })?;
    drop(status_write);
    // The command's side of its terminal stays open in the command only (the Command holds
    // copies): the master then reads end of file when the command's side is gone.
    drop(cmd);
    let master = pty.map(|pty| pty.master);
    // The init waits for its spec before doing anything, so every process it starts is born
    // inside the cgroup.
    let joined = match (spec.enter, &cgroup) {
        (Some(init), _) => enter::join_cgroups(init, child.id()),
        (None, Some(cgroup)) => cgroup.add(child.id()),
        (None, None) => Ok(()),
    };
    if let Err(e) = joined {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Cgroup(e));
    }
    let init_spec = InitSpec { run: spec.clone(), rootfs, empty_lower, etc_files };
    let mut init_stdin = child.stdin.take().expect("piped");
    let payload = serde_json::to_vec(&init_spec).map_err(|e| Error::Setup(e.to_string()))?;
    let sent = init_stdin.write_all(&(payload.len() as u64).to_le_bytes()).and_then(|()| init_stdin.write_all(&payload));
    let terminal_input = match (&master, spec.stdin) {
        (Some(master), true) => Some(std::fs::File::from(master.try_clone().map_err(Error::Io)?)),
        _ => None,
    };
    if let Err(e) = sent {
        let _ = child.kill();
        if let Some(cgroup) = &cgroup {
            let _ = cgroup.kill_all();
        }
        let _ = child.wait();
        return Err(Error::Io(e));
    }

    // Without a copy (out of file descriptors) the terminal only cannot be resized.
    if let Some(Ok(terminal)) = master.as_ref().map(|m| m.try_clone()) {
        observe(Event::Terminal(std::fs::File::from(terminal)));
    }
    // The init reports its namespaces made, then waits for a byte on its input: `Namespaces`
    // is observed in between, so what its observer adds to them is there when the command
    // starts. An init that fails first reports why instead, and is never started.
    let mut status = BufReader::new(std::fs::File::from(status_read));
    let mut early_reports = String::new();
    let ready = loop {
        let mut line = String::new();
        match status.read_line(&mut line) {
            Ok(0) | Err(_) => break false,
            Ok(_) if matches!(serde_json::from_str(&line), Ok(Report::Ready)) => break true,
            Ok(_) => early_reports.push_str(&line),
        }
    };
    if ready {
        observe(Event::Namespaces { pid: child.id() });
        // Failing, the init is gone already; its end is reported as any other.
        let _ = init_stdin.write_all(b"g");
        // While the init sets the step up: a caller's records cost the command no time.
        observe(Event::Started { pid: child.id() });
    }
    // The command's input from here on, if it keeps it; else end of file for the init.
    let stdin = match (terminal_input, spec.stdin) {
        (Some(terminal), _) => Some(terminal),
        (None, true) => Some(std::fs::File::from(std::os::fd::OwnedFd::from(init_stdin))),
        (None, false) => None,
    };
    if let Some(stdin) = stdin.filter(|_| ready) {
        observe(Event::Stdin(stdin));
    }
    let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>();
    let raw = spec.output == Output::Raw;
    let outputs = match master {
        Some(master) => [(Stream::Stdout, Some(Box::new(std::fs::File::from(master)) as Box<dyn Read + Send>)), (Stream::Stderr, None)],
        None => [(Stream::Stdout, child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>)), (Stream::Stderr, child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>))],
    };
    let readers: Vec<_> = outputs
        .into_iter()
        .filter_map(|(stream, pipe)| Some((stream, pipe?)))
        .map(|(stream, pipe)| {
            let tx = tx.clone();
            std::thread::spawn(move || if raw { read_chunks(stream, pipe, tx) } else { read_lines(stream, pipe, tx) })
        })
        .collect();
    drop(tx);
    // `Executed` is passed on as it comes; the other reports are read at the end.
    let (exec_tx, exec_rx) = mpsc::channel::<()>();
    let status_reader = std::thread::spawn(move || {
        let mut text = early_reports;
        for line in status.lines() {
            let Ok(line) = line else { break };
            if matches!(serde_json::from_str(&line), Ok(Report::Executed)) {
                let _ = exec_tx.send(());
            } else {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    });

    let mut cancelled = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((stream, bytes)) => observe(Event::Output(stream, &bytes)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if exec_rx.try_recv().is_ok() {
            observe(Event::Executed);
        }
        if !cancelled && cancel.is_cancelled() {
            cancelled = true;
            if let Some(cgroup) = &cgroup {
                let _ = cgroup.kill_all();
            }
            // Without a cgroup (rootless), or in a joined sandbox, whose cgroup is not ours, the
            // init's death ends the command (the PID namespace, or its parent-death signal).
            let _ = child.kill();
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let init_status = child.wait().ok();
    let reports = status_reader.join().unwrap_or_default();
    if exec_rx.try_recv().is_ok() {
        observe(Event::Executed);
    }
    // Anything still in the cgroup (a process that closed its output early) dies now.
    let usage = match &cgroup {
        Some(cgroup) => {
            let _ = cgroup.kill_all();
            cgroup.usage()
        }
        None => cgroup::Usage::default(),
    };
    drop(cgroup);
    if let Some(stubs) = stubs {
        stubs.clean();
    }
    drop(scratch);
    if cancelled {
        return Err(Error::Cancelled);
    }

    let reports: Vec<Report> = reports.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    if let Some(Report::ExecFailed { message, errno }) = reports.iter().find(|r| matches!(r, Report::ExecFailed { .. })) {
        return Err(Error::Exec { message: message.clone(), not_found: *errno == libc::ENOENT || *errno == libc::ENOTDIR });
    }
    if let Some(Report::Error(e)) = reports.iter().find(|r| matches!(r, Report::Error(_))) {
        return Err(Error::Setup(e.clone()));
    }
    let status = match reports.first() {
        Some(Report::Exited(c)) => ExitStatus::Exited(*c),
        Some(Report::Signaled(s)) => ExitStatus::Signaled(*s),
        Some(Report::Died(how)) => return Err(Error::InitDied { how: how.clone() }),
        _ if usage.oom_killed => ExitStatus::OomKilled { limit: spec.limits.memory },
        // Killed from outside (`forge rm -f` kills a container's init): the command died with it.
        _ => match init_status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)) {
            Some(sig) => ExitStatus::Signaled(sig),
            None => {
                let how = match init_status.and_then(|s| s.code()) {
                    Some(code) => format!("exit code {code}"),
                    None => "its status is unknown".to_string(),
                };
                return Err(Error::InitDied { how });
            }
        },
    };
    let status = match status {
        ExitStatus::Exited(0) => status,
        _ if usage.oom_killed => ExitStatus::OomKilled { limit: spec.limits.memory },
        s => s,
    };
    Ok(Outcome { status, cpu_time: usage.cpu_time, peak_memory: usage.peak_memory, wall_time: start.elapsed() })
}

/// Longest line passed on at once; longer ones arrive in pieces.
const MAX_LINE: usize = 64 * 1024;

fn read_lines(stream: Stream, pipe: Box<dyn Read + Send>, tx: mpsc::Sender<(Stream, Vec<u8>)>) {
    let mut reader = BufReader::new(pipe);
    loop {
        let mut line = Vec::new();
        match (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if tx.send((stream, line)).is_err() {
                    return;
                }
            }
        }
    }
}

/// Passes output on as it arrives, in pieces of at most [`MAX_LINE`] bytes.
fn read_chunks(stream: Stream, mut pipe: Box<dyn Read + Send>, tx: mpsc::Sender<(Stream, Vec<u8>)>) {
    let mut buf = vec![0u8; MAX_LINE];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
            Ok(n) => {
                if tx.send((stream, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    }
}

/// The `/etc` files every step gets, as Docker provides them.
fn etc_files(dir: &std::path::Path, hostname: &str, style: Etc) -> std::io::Result<Vec<(String, PathBuf)>> {
    let hosts = match style {
        // BuildKit's: the hostname on the loopback line, and no /etc/hostname file.
        Etc::Build => format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        Etc::Container => format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"),
    };
    // The host's resolver configuration, minus loopback servers that mean nothing inside.
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv: String = host_resolv.lines().filter(|l| !(l.starts_with("nameserver 127.") || l.starts_with("nameserver ::1"))).map(|l| format!("{l}\n")).collect();
    let mut out = Vec::new();
    let mut files = vec![("hosts", hosts), ("resolv.conf", resolv)];
    if style == Etc::Container {
        files.push(("hostname", format!("{hostname}\n")));
    }
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        out.push((name.to_string(), path));
    }
    Ok(out)
}

/// Refuses `limits` where no cgroup can be made (rootless forge, see [`enter_if_unprivileged`]):
/// a limit is never silently ignored.
pub fn check_limits_possible(limits: &Limits) -> Result<(), Error> {
    if *limits != Limits::default() && rootless::in_user_namespace() {
        return Err(Error::NoCgroups { version: cgroup::version() });
    }
    Ok(())
}

/// Kills the processes and removes the cgroups of steps whose forge process was killed
/// before it could (every step start does this too); returns how many cgroups it removed.
pub fn remove_leftovers() -> Result<usize, Error> {
    cgroup::remove_leftovers().map_err(Error::Cgroup)
}
