//! The crate's raw system calls and every `unsafe` block, so the rest reads as a script and the
//! few promises the compiler cannot check are all made here.
//!
//! Most of them are only sound in a process with one thread: the re-executed init
//! ([`crate::init`]) is one, the host's process (with its tokio and builder threads) is not,
//! and there only [`spawn_init`]'s pre-exec closure runs in the forked child.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{self, SigHandler, Signal};
use nix::unistd::ForkResult;

/// Removes an environment variable. Only at the top of `main`, before any thread exists.
pub(crate) fn remove_env_single_threaded(name: &str) {
    // SAFETY: called from `enter_if_init` at the top of main, while single-threaded.
    unsafe { std::env::remove_var(name) };
}

/// Starts `cmd` as a sandbox init: `status` becomes its fd `status_fd` (every other descriptor
/// it gets is the standard three), and it dies with SIGKILL when the calling thread exits. The
/// kernel ties the parent-death signal to the thread that forked, so the caller must be the
/// thread that waits for the step (it is: [`crate::run`] blocks until the init is reaped).
pub(crate) fn spawn_init(cmd: &mut Command, status: BorrowedFd<'_>, status_fd: RawFd) -> io::Result<Child> {
    let write_fd = status.as_raw_fd();
    let parent = rustix::process::getpid();
    // SAFETY: between fork and exec the closure makes only raw system calls (prctl, getppid,
    // fcntl, dup2), which are async-signal-safe, on fds that stay open in the parent until
    // spawn returns; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The parent may have died before the signal was armed: then nobody would ever
            // send it.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::other("the parent exited while the sandbox init started"));
            }
            if write_fd == status_fd {
                if libc::fcntl(write_fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(write_fd, status_fd) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Closes every descriptor from `first` up: whatever the host process was started with
/// (`exec 7</` in a shell) must not reach a step.
pub(crate) fn close_from(first: u32) -> io::Result<()> {
    close_range(first, 0)
}

/// Marks every descriptor from `first` up close-on-exec, so `execve` drops them while a
/// failing exec can still report on them.
pub(crate) fn cloexec_from(first: u32) -> io::Result<()> {
    close_range(first, libc::CLOSE_RANGE_CLOEXEC)
}

fn close_range(first: u32, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: close_range takes no pointers. Closing descriptors that Rust objects own would
    // break them; the callers run before any such object exists above `first`.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The report channel at `fd`, which the host set up before exec. Each process of the init
/// takes it once and leaves with `exit`, never handing it back.
pub(crate) fn status_file(fd: RawFd) -> File {
    // SAFETY: `fd` is the channel `spawn_init` installed; nothing else in the process owns it.
    unsafe { File::from_raw_fd(fd) }
}

/// `fork` in the init.
///
/// The init is a freshly executed, single-threaded process, where fork is sound; callers in
/// this crate are only the init's stages.
pub(crate) fn fork_single_threaded() -> nix::Result<ForkResult> {
    // SAFETY: only the single-threaded init calls this (see above).
    unsafe { nix::unistd::fork() }
}

/// Leaves a forked child without running exit handlers or flushing buffers it shares with
/// its parent.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// The pid the forwarded signals are passed on to.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// What a container's stop signal or `kill -s` may be, besides SIGKILL (which the kernel
/// delivers to a PID namespace's init, ending it all): a PID 1 without a handler would drop them.
const FORWARDED: [Signal; 6] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// Passes the [`FORWARDED`] signals on to `pid`.
pub(crate) fn forward_signals_to(pid: i32) {
    FORWARD_TO.store(pid, Ordering::SeqCst);
    for sig in FORWARDED {
        // SAFETY: the handler only reads an atomic and calls kill.
        let _ = unsafe { signal::signal(sig, SigHandler::Handler(forward)) };
    }
}

/// Gives every signal its default meaning again (in the command, before exec): the forwarded
/// ones have handlers here, and an *ignored* signal stays ignored across exec. Rust's runtime
/// ignores SIGPIPE in forge (`yes | head` would never end), and forge may inherit other ignored
/// signals from whatever started it; a container's command starts with none, as under docker.
pub(crate) fn reset_signals() {
    // The raw system call: libc's wrappers refuse the signals it keeps for itself (32, 33),
    // which a parent may still have left ignored.
    // SAFETY: a zeroed sigaction is SIG_DFL with no flags and an empty mask.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    for sig in 1..=64 {
        // SAFETY: restoring the default disposition installs no handler; the kernel refuses
        // SIGKILL and SIGSTOP, which changes nothing. 8: the kernel's sigset size on Linux.
        unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, &default as *const libc::sigaction, std::ptr::null_mut::<libc::sigaction>(), 8usize) };
    }
}

/// Makes `fd` the process's standard input.
pub(crate) fn set_stdin(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: dup2 onto fd 0, which no Rust object in the command's child wraps.
    if unsafe { libc::dup2(fd.as_raw_fd(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `IFF_UP` on the interface `name`.
pub(crate) fn interface_up(name: &CStr) -> io::Result<()> {
    // No crate in the tree wraps SIOCSIFFLAGS; it is two ioctls on a throwaway socket.
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    // SAFETY: an ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.to_bytes_with_nul();
    if bytes.len() > req.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (i, b) in bytes.iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: the ioctls read and write the ifreq we own, on a socket we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

// eBPF for cgroup v2 device rules. The attr structs are the leading fields of the kernel's
// `union bpf_attr` for each command; the kernel treats the bytes past `size` as zero.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
}

#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, fully initialized `repr(C)` prefix of `union bpf_attr` for
    // `cmd`, and its size is passed along; the pointers inside it are checked by the caller.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program (encoded instructions, 8 bytes each). On
/// failure the verifier's log is part of the error.
pub(crate) fn load_device_program(insns: &[u64]) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: BPF_PROG_LOAD returns a new descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
        Err(e) => {
            let text = String::from_utf8_lossy(&log);
            Err(io::Error::new(e.kind(), format!("loading the device program: {e}: {}", text.trim_end_matches('\0').trim())))
        }
    }
}

/// Attaches a device program to a cgroup v2 directory. Other programs may stay attached
/// (a service manager's): the kernel allows an access only if every one allows it.
pub(crate) fn attach_device_program(cgroup: BorrowedFd<'_>, program: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// A close-on-exec pipe as files (read end, write end); `std::io::pipe` is newer than the
/// workspace's minimum Rust.
pub(crate) fn pipe() -> io::Result<(File, File)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}

/// `struct mount_attr` of mount_setattr(2); libc has the syscall number but not the struct.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// Makes the detached mount `tree` (and everything under it) idmapped through `userns`.
/// rustix and nix do not wrap mount_setattr.
pub(crate) fn set_idmap(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
    // SAFETY: `attr` is a live, initialized `struct mount_attr` whose size is passed along; the
    // path is a valid empty C string, used with AT_EMPTY_PATH on an fd we borrow.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts `cmd` in a new user namespace: the child unshares it, writes its pid (4 bytes,
/// native order) on `ready`, waits on `go` for another thread of the caller to write its maps
/// (a byte; end of file means it gave up), then unshares a mount namespace owned by it and
/// executes. `spawn` returns only once the child has executed, hence the other thread.
pub(crate) fn spawn_in_user_namespace(cmd: &mut Command, ready: File, go: File) -> io::Result<Child> {
    let (ready_fd, go_fd) = (ready.as_raw_fd(), go.as_raw_fd());
    // SAFETY: between fork and exec the closure makes only raw system calls (unshare, write,
    // read) on fds that stay open in the parent until spawn returns; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWUSER) < 0 {
                return Err(io::Error::last_os_error());
            }
            let pid = libc::getpid().to_ne_bytes();
            if libc::write(ready_fd, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                return Err(io::Error::last_os_error());
            }
            let mut go = 0u8;
            if libc::read(go_fd, (&mut go as *mut u8).cast(), 1) != 1 {
                return Err(io::Error::other("the user namespace's maps were not written"));
            }
            if libc::unshare(libc::CLONE_NEWNS) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(ready);
    drop(go);
    child
}
