//! The sandbox's init, running in a re-executed copy of the host binary.
//!
//! Why re-exec: the caller is typically multi-threaded (tokio, parallel stages), and after
//! `fork` in a multi-threaded process only async-signal-safe calls are allowed until `exec`,
//! which rules out the mounts, file reads and allocations the setup needs. A freshly executed
//! process is single-threaded, so it can unshare namespaces and fork freely.
//!
//! Stages:
//! 1. The init (in the host's PID namespace, already in the step's cgroup) reads the spec from
//!    stdin (length-prefixed: the rest of stdin may be the command's), unshares the mount, UTS, IPC, cgroup, PID (and network) namespaces,
//!    reports them made and waits for the caller's go (one byte on stdin), and forks.
//! 2. The child is PID 1 of the new PID namespace: it builds the filesystem ([`crate::mounts`]),
//!    forks the step's command and reaps every process until the command exits; then it kills
//!    what the command left behind and reports the exact status on fd 3.
//!
//! With a user namespace (`--userns=remap`), stage 1 makes it first and PID 1 joins it only
//! once the filesystem is built (see `crate::userns` for why in that order).
//!
//! Messages to the parent are JSON lines on fd 3 (close-on-exec, so the command never sees it).
//!
//! Nothing the host process was started with gets through: the init closes every other
//! descriptor first thing. Nothing outlives the host either: the init dies with the thread that
//! spawned it (see [`crate::sys::spawn_init`]), PID 1 dies with the init, and when PID 1 dies
//! the kernel kills every process of its PID namespace.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::spec::{Network, RunSpec};
use crate::sys;

/// The environment variable that marks a process as a sandbox init.
pub(crate) const MARKER: &str = "FORGE_SANDBOX_INIT";

/// The fd the init reports on.
pub(crate) const STATUS_FD: i32 = 3;

/// What the parent sends the init.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitSpec {
    pub(crate) run: RunSpec,
    /// An empty directory where the rootfs is mounted (in the new mount namespace only).
    pub(crate) rootfs: PathBuf,
    /// An empty directory, the lowerdir when the step has no layers below it.
    pub(crate) empty_lower: PathBuf,
    /// `/etc` files to bind (name, host file): hosts, resolv.conf (and hostname for a container).
    pub(crate) etc_files: Vec<(String, PathBuf)>,
}

/// What the init reports.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Report {
    /// Setup failed before the command ran.
    Error(String),
    /// The command could not be executed: not found (`ENOENT`) or not executable (any other
    /// errno), which callers report differently (docker's 127 and 126).
    ExecFailed {
        /// What failed, for people.
        message: String,
        /// The errno of the lookup or of `execve`.
        errno: i32,
    },
    /// The init is in the step's namespaces, and waits for one byte on its standard input
    /// before it builds the filesystem and starts the command (see [`wait_for_go`]).
    Ready,
    /// The command was executed (it runs); sent as soon as it is, before its end.
    Executed,
    /// The command exited with this code.
    Exited(i32),
    /// The command was killed by this signal.
    Signaled(i32),
    /// The init's second stage ended without reporting, other than by SIGKILL: how, in words.
    Died(String),
}

/// Entry point of a re-executed init; never returns.
pub(crate) fn main() -> ! {
    // A caller that waits for signals in a thread of its own (`forge run`'s proxy) blocks them,
    // and a blocked mask survives fork and exec: the command must start with none blocked, as
    // under docker, or SIGTERM would never reach it.
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    let mut status = sys::status_file(STATUS_FD);
    // The command must not inherit the report channel.
    let _ = rustix::io::fcntl_setfd(&status, rustix::io::FdFlags::CLOEXEC);
    let report = match sys::close_from(STATUS_FD as u32 + 1).map_err(|e| format!("closing inherited descriptors: {e}")).and_then(|()| stage1()) {
        Ok(None) => std::process::exit(0),
        Ok(Some(report)) => report,
        Err(message) => Report::Error(message),
    };
    let _ = writeln!(status, "{}", serde_json::to_string(&report).unwrap_or_default());
    std::process::exit(1);
}

/// Fills `buf` from fd 0, with no buffering: what follows on it is the command's input
/// (`RunSpec::stdin`). `what` names the read in errors.
fn read_stdin_exact(buf: &mut [u8], what: &str) -> Result<(), String> {
    let stdin = std::io::stdin();
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::read(stdin.as_fd(), &mut buf[done..]) {
            Ok(0) => return Err(format!("reading {what}: it ends early")),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("reading {what}: {e}")),
        }
    }
    Ok(())
}

/// Reads the spec: its length (8 bytes, little-endian), then that many bytes of JSON.
fn read_spec() -> Result<InitSpec, String> {
    let mut len = [0u8; 8];
    read_stdin_exact(&mut len, "the spec")?;
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| "reading the spec: bad length".to_string())?;
    let mut text = vec![0u8; len];
    read_stdin_exact(&mut text, "the spec")?;
    serde_json::from_slice(&text).map_err(|e| format!("decoding the spec: {e}"))
}

/// Tells the caller that the namespaces are made ([`Report::Ready`]) and waits for its go, one
/// byte on fd 0: the caller may set them up further first (`Event::Namespaces`: a container's
/// `network connect` before it started gives it more interfaces), and the command must find
/// them there when it starts, as docker's do.
fn wait_for_go() -> Result<(), String> {
    // Not dropped: that would close the channel the final report goes to.
    let mut status = std::mem::ManuallyDrop::new(sys::status_file(STATUS_FD));
    writeln!(*status, "{}", serde_json::to_string(&Report::Ready).unwrap_or_default()).map_err(|e| format!("reporting the namespaces: {e}"))?;
    read_stdin_exact(&mut [0u8; 1], "the caller's go")
}

/// Makes or joins the namespaces and runs [`stage2`] in them. Returns the report to send for
/// a second stage that ended without sending its own.
fn stage1() -> Result<Option<Report>, String> {
    let spec = read_spec()?;
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWCGROUP | CloneFlags::CLONE_NEWPID;
    match &spec.run.network {
        Network::None => flags |= CloneFlags::CLONE_NEWNET,
        Network::Host => {}
        // Joined before the other namespaces are made, while the path still names the host's
        // file: after the mount namespace is unshared it would too, but only until pivot_root.
        Network::Namespace(path) => {
            let ns = File::open(path).map_err(|e| format!("opening the network namespace {}: {e}", path.display()))?;
            nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| format!("joining the network namespace {}: {e}", path.display()))?;
        }
    }
    // Made before the other namespaces, while this process is still plain host root. (A joined
    // sandbox is never remapped: the runtime refuses exec into one.)
    let userns = match spec.run.enter {
        Some(_) => None,
        None => spec.run.userns.as_ref().map(crate::userns::create).transpose()?,
    };
    match spec.run.enter {
        Some(init) => crate::enter::join(init)?,
        None => unshare(flags).map_err(|e| format!("unsharing namespaces: {e}"))?,
    }
    wait_for_go()?;
    // PID 1 must die with this process; a pipe it holds the read end of tells it whether this
    // process was already gone when it armed its parent-death signal.
    let (alive_read, alive_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK).map_err(|e| format!("pipe: {e}"))?;
    match sys::fork_single_threaded().map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(alive_write);
            let report = match die_with_parent(alive_read).and_then(|()| stage2(&spec, userns.as_ref().map(|fd| fd.as_fd()))) {
                Ok(r) => r,
                Err(e) => Report::Error(e),
            };
            let mut status = sys::status_file(STATUS_FD);
            let _ = writeln!(status, "{}", serde_json::to_string(&report).unwrap_or_default());
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            drop(alive_read);
            sys::forward_signals_to(child.as_raw());
            let ended = loop {
                match waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            match ended {
                // Killed before it reported: by the end of the PID namespace it is in, which
                // kills the command too (an exec's container ended: podman's exec says 137
                // then), or by the OOM killer or a `kill -9`. Reported as the command's SIGKILL,
                // as podman does; a report it got out first is the one read.
                Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _)) => Ok(Some(Report::Signaled(Signal::SIGKILL as i32))),
                // A crash, or a signal it does not forward (`sys::FORWARDED`) sent to it rather
                // than to the command: how the command ended is not known.
                Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Some(Report::Died(format!("its second stage was killed by {sig}")))),
                // It exits 0 once it has reported; 101 is a panic.
                Ok(WaitStatus::Exited(_, code)) if code != 0 => Ok(Some(Report::Died(format!("its second stage exited with code {code}")))),
                _ => Ok(None),
            }
        }
    }
}

/// Arms SIGKILL for when the parent (the init's first stage) dies, then checks that it has
/// not died already: its end of `alive` closes when it does.
fn die_with_parent(alive: std::os::fd::OwnedFd) -> Result<(), String> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)).map_err(|e| format!("setting the parent-death signal: {e}"))?;
    // Nobody writes to the pipe: end of file means the parent is gone, EAGAIN that it lives.
    match rustix::io::read(&alive, &mut [0u8; 1]) {
        Err(rustix::io::Errno::AGAIN) => Ok(()),
        _ => Err("the sandbox init exited while it started".into()),
    }
}

/// PID 1: filesystem, identity, the command, reaping.
fn stage2(spec: &InitSpec, userns: Option<std::os::fd::BorrowedFd<'_>>) -> Result<Report, String> {
    // A joined sandbox (`enter`) is set up already, and this process is not its PID 1.
    let joined = spec.run.enter.is_some();
    if !joined {
        match (userns, &spec.run.userns) {
            (Some(ns), Some(map)) => {
                crate::userns::as_container_root(map, || crate::mounts::setup(spec, Some(ns)))?;
                crate::userns::enter(ns, spec.run.network == Network::None)?;
            }
            _ => crate::mounts::setup(spec, None)?,
        }
        nix::unistd::sethostname(&spec.run.hostname).map_err(|e| format!("setting the hostname: {e}"))?;
        if spec.run.network == Network::None {
            crate::network::loopback_up().map_err(|e| format!("bringing up loopback: {e}"))?;
        }
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let id = crate::user::resolve(&spec.run.user, &passwd, &group)?;
    let cwd = if spec.run.cwd.is_empty() { "/" } else { spec.run.cwd.as_str() };
    if std::fs::metadata(cwd).is_err() && !joined {
        std::fs::create_dir_all(cwd).map_err(|e| format!("creating the working directory {cwd}: {e}"))?;
    }

    let mut env: Vec<String> = spec.run.env.clone();
    let has = |env: &[String], k: &str| env.iter().any(|kv| kv.split_once('=').map_or(kv.as_str(), |(a, _)| a) == k);
    if !has(&env, "PATH") {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", id.home));
    }
    // No HOSTNAME: BuildKit sets none (the shell may; busybox sh does not).
    let path_var = env.iter().rev().find_map(|kv| kv.strip_prefix("PATH=")).unwrap_or("").to_string();
    let program = spec.run.argv.first().ok_or("empty command")?;
    let Some(exe) = find_executable(program, &path_var) else {
        return Ok(Report::ExecFailed { message: format!("exec: {program:?}: executable file not found in $PATH"), errno: libc::ENOENT });
    };
    let to_c = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    let exe = to_c(&exe)?;
    let argv = spec.run.argv.iter().map(|a| to_c(a)).collect::<Result<Vec<_>, _>>()?;
    let envp = env.iter().map(|a| to_c(a)).collect::<Result<Vec<_>, _>>()?;
    let dev_null = File::open("/dev/null").map_err(|e| format!("opening /dev/null: {e}"))?;
    // On the host's network a raw or packet socket would see the host's traffic.
    let caps = crate::caps::for_spec(&spec.run.network, &spec.run.security);
    let filters = match (&spec.run.security.seccomp_profile, spec.run.security.privileged) {
        (_, true) => None,
        (Some(json), false) => Some(crate::seccomp::compile_profile(json, &caps).map_err(|e| e.to_string())?),
        (None, false) => spec.run.seccomp.compile(&caps)?,
    };

    // Closed by a successful exec (close-on-exec); the command's side writes a byte first when
    // it fails instead, so this side learns which before reporting `Executed`.
    let (exec_read, exec_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let main = match sys::fork_single_threaded().map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(exec_read);
            let report = exec_command(&id, cwd, &dev_null, &caps, filters.as_ref(), &exe, &argv, &envp, spec.run.stdin, spec.run.tty.is_some());
            let mut status = sys::status_file(STATUS_FD);
            let _ = writeln!(status, "{}", serde_json::to_string(&report).unwrap_or_default());
            let _ = rustix::io::write(&exec_write, b"!");
            sys::exit_now(127);
        }
        ForkResult::Parent { child } => child,
    };
    drop(exec_write);
    sys::forward_signals_to(main.as_raw());
    let executed = loop {
        match rustix::io::read(&exec_read, &mut [0u8; 1]) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break matches!(other, Ok(0)),
        }
    };
    drop(exec_read);
    if executed {
        // Not dropped: that would close the channel the final report goes to.
        let mut status = std::mem::ManuallyDrop::new(sys::status_file(STATUS_FD));
        let _ = writeln!(*status, "{}", serde_json::to_string(&Report::Executed).unwrap_or_default());
    }
    let report = loop {
        // PID 1 reaps every orphan of its namespace; a joined command waits for its own only.
        match waitpid(Pid::from_raw(if joined { main.as_raw() } else { -1 }), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => break Report::Exited(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => break Report::Signaled(sig as i32),
            Err(nix::errno::Errno::ECHILD) => break Report::Error("the command vanished".into()),
            _ => continue,
        }
    };
    if joined {
        return Ok(report);
    }
    // Whatever the command left running dies with it: a step never waits on a daemon.
    let _ = signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
    while !matches!(waitpid(Pid::from_raw(-1), None), Err(nix::errno::Errno::ECHILD)) {}
    Ok(report)
}

/// The command's child side: identity, privileges, stdin, then exec. Returns only on failure,
/// with the report to send.
#[allow(clippy::too_many_arguments)]
fn exec_command(
    id: &crate::user::Identity,
    cwd: &str,
    dev_null: &File,
    caps: &[caps::Capability],
    filters: Option<&crate::seccomp::Filters>,
    exe: &CString,
    argv: &[CString],
    envp: &[CString],
    keep_stdin: bool,
    tty: bool,
) -> Report {
    let setup = || -> Result<(), String> {
        nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
        sys::reset_signals();
        if tty {
            // The terminal (the init's stdout) is its stdin too, and its controlling terminal.
            sys::set_stdin(std::io::stdout().as_fd()).map_err(|e| format!("setting up the terminal: {e}"))?;
            rustix::process::ioctl_tiocsctty(std::io::stdin()).map_err(|e| format!("setting the controlling terminal: {e}"))?;
        } else if !keep_stdin {
            sys::set_stdin(dev_null.as_fd()).map_err(|e| format!("closing stdin: {e}"))?;
        }
        rustix::thread::set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))?;
        crate::caps::restrict(caps)?;
        let groups: Vec<nix::unistd::Gid> = id.groups.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
        nix::unistd::setgid(nix::unistd::Gid::from_raw(id.gid)).map_err(|e| format!("setgid {}: {e}", id.gid))?;
        nix::unistd::setuid(nix::unistd::Uid::from_raw(id.uid)).map_err(|e| format!("setuid {}: {e}", id.uid))?;
        nix::unistd::chdir(cwd).map_err(|e| format!("chdir {cwd}: {e}"))?;
        // Only the standard streams pass to the command (the report channel stays open for
        // an exec failure).
        sys::cloexec_from(3).map_err(|e| format!("closing descriptors: {e}"))?;
        // Last, so everything before may use any system call; execve is in every profile.
        if let Some(f) = filters {
            f.install()?;
        }
        Ok(())
    };
    if let Err(e) = setup() {
        return Report::Error(e);
    }
    let Err(errno) = nix::unistd::execve(exe, argv, envp);
    Report::ExecFailed { message: format!("exec {}: {}", exe.to_string_lossy(), errno.desc()), errno: errno as i32 }
}

/// Docker's lookup: a name with a `/` is used as is; otherwise the first executable file of
/// that name in `PATH`.
fn find_executable(name: &str, path: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        return Some(name.to_string());
    }
    path.split(':').filter(|d| !d.is_empty()).map(|d| format!("{}/{name}", d.trim_end_matches('/'))).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}
