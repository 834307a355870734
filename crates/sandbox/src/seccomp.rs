//! The system calls a step may make: Docker's default seccomp profile, or none when the user
//! asks for `seccomp=unconfined`.
//!
//! The profile is an allowlist. Anything not listed fails with `EPERM`, as in Docker: whole
//! kernel interfaces a build step has no business with (keyrings, `bpf`, `perf_event_open`,
//! kernel modules, `kexec`, the new mount API, `io_uring`) and the calls that only
//! `CAP_SYS_ADMIN` and friends would make useful (`mount`, `unshare`, `setns`), since the
//! kernel's checks on them have been the way out of containers before. Some calls are allowed
//! only with harmless arguments (`clone` without namespace flags, `personality` without
//! `READ_IMPLIES_EXEC`, `socket` without `AF_VSOCK`), and some only when the step keeps the
//! capability that gives them meaning (`chroot` with `CAP_SYS_CHROOT`).
//!
//! `clone3` passes its flags in memory a filter cannot read, so it fails with `ENOSYS`: the C
//! libraries then fall back to `clone`, whose flags the filter does check.
//!
//! The table is written here rather than loaded from Docker's JSON so it compiles to the
//! syscall numbers of the architecture forge is built for; seccompiler turns it into BPF.

mod profile;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use caps::Capability;
use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch};
use serde::{Deserialize, Serialize};

pub use profile::{check as check_profile, ProfileError};
pub(crate) use profile::compile as compile_profile;

/// The seccomp profile a step runs under (`--security-opt seccomp=...`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seccomp {
    /// Docker's default profile.
    #[default]
    Default,
    /// No filter at all: only when the user asks for it.
    Unconfined,
}

/// A `seccomp=` value forge does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown seccomp profile {0:?}: forge knows `default` and `unconfined` (profile files are not supported yet)")]
pub struct UnknownProfile(pub String);

impl FromStr for Seccomp {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Seccomp, UnknownProfile> {
        match s {
            "default" => Ok(Seccomp::Default),
            "unconfined" => Ok(Seccomp::Unconfined),
            other => Err(UnknownProfile(other.to_string())),
        }
    }
}

impl fmt::Display for Seccomp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Seccomp::Default => "default",
            Seccomp::Unconfined => "unconfined",
        })
    }
}

/// Compiled filters, installed in order just before `execve`.
pub(crate) struct Filters(Vec<BpfProgram>);

impl Seccomp {
    /// Compiles the profile for a process that keeps `caps`; `None` when unconfined.
    pub(crate) fn compile(self, caps: &[Capability]) -> Result<Option<Filters>, String> {
        match self {
            Seccomp::Unconfined => Ok(None),
            Seccomp::Default => default_filters(caps).map(Some).map_err(|e| format!("compiling the seccomp profile: {e}")),
        }
    }
}

impl Filters {
    /// Installs the filters on the calling thread (which must have `no_new_privs` set, and
    /// is about to exec; the filters pass to everything it starts).
    pub(crate) fn install(&self) -> Result<(), String> {
        for f in &self.0 {
            seccompiler::apply_filter(f).map_err(|e| format!("installing the seccomp filter: {e}"))?;
        }
        Ok(())
    }
}

const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;

/// Two filters: the allowlist (anything else is `EPERM`), then `clone3` → `ENOSYS`. When
/// several filters return an errno, the kernel takes the last installed one's, so the second
/// filter only changes the errno of a call the first one refused.
fn default_filters(caps: &[Capability]) -> Result<Filters, seccompiler::Error> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut allow = |nr: i64| {
        rules.insert(nr, Vec::new());
    };
    ALLOWED.iter().chain(ALLOWED_ARCH).copied().for_each(&mut allow);
    for (cap, calls) in BY_CAPABILITY {
        if caps.contains(cap) {
            calls.iter().copied().for_each(&mut allow);
        }
    }
    // Conditional rules, unless the call is already allowed whatever its arguments.
    for (nr, conditions) in conditional()? {
        match rules.get_mut(&nr) {
            Some(existing) if existing.is_empty() => {}
            Some(existing) => existing.push(SeccompRule::new(conditions)?),
            None => {
                rules.insert(nr, vec![SeccompRule::new(conditions)?]);
            }
        }
    }
    let allowlist = SeccompFilter::new(rules, SeccompAction::Errno(EPERM), SeccompAction::Allow, arch)?;
    let mut filters = vec![BpfProgram::try_from(allowlist)?];
    if !caps.contains(&Capability::CAP_SYS_ADMIN) {
        let clone3 = SeccompFilter::new([(libc::SYS_clone3, Vec::new())].into(), SeccompAction::Allow, SeccompAction::Errno(ENOSYS), arch)?;
        filters.push(BpfProgram::try_from(clone3)?);
    }
    Ok(Filters(filters))
}

/// The namespace flags `clone` may not carry without `CAP_SYS_ADMIN`.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNET | libc::CLONE_NEWCGROUP) as u64;

/// The `personality` values a step may set: Linux, 32-bit Linux, `UNAME26` on each, and the
/// query `0xffffffff`. Not `READ_IMPLIES_EXEC`, which makes every readable page executable.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// (syscall, conditions that must all hold); several entries for one call are alternatives.
fn conditional() -> Result<Vec<(i64, Vec<SeccompCondition>)>, seccompiler::Error> {
    let mut out = vec![
        (libc::SYS_socket, vec![SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, libc::AF_VSOCK as u64)?]),
        (libc::SYS_clone, vec![SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS), 0)?]),
    ];
    for p in PERSONALITIES {
        out.push((libc::SYS_personality, vec![SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, p)?]));
    }
    Ok(out)
}

/// Calls allowed only to a process that keeps the capability (Docker's table). A step keeps
/// [`crate::caps::DEFAULT`], so today only `CAP_SYS_CHROOT`'s entry applies; the rest is
/// for containers started with added capabilities.
const BY_CAPABILITY: &[(Capability, &[i64])] = &[
    (
        Capability::CAP_SYS_ADMIN,
        &[
            libc::SYS_bpf,
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_fanotify_init,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fsopen,
            libc::SYS_fspick,
            libc::SYS_lookup_dcookie,
            libc::SYS_mount,
            libc::SYS_mount_setattr,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_perf_event_open,
            libc::SYS_quotactl,
            libc::SYS_quotactl_fd,
            libc::SYS_setdomainname,
            libc::SYS_sethostname,
            libc::SYS_setns,
            libc::SYS_syslog,
            libc::SYS_umount2,
            libc::SYS_unshare,
        ],
    ),
    (Capability::CAP_DAC_READ_SEARCH, &[libc::SYS_open_by_handle_at]),
    (Capability::CAP_SYS_BOOT, &[libc::SYS_reboot]),
    (Capability::CAP_SYS_CHROOT, &[libc::SYS_chroot]),
    (Capability::CAP_SYS_MODULE, &[libc::SYS_delete_module, libc::SYS_init_module, libc::SYS_finit_module]),
    (Capability::CAP_SYS_PACCT, &[libc::SYS_acct]),
    (Capability::CAP_SYS_PTRACE, &[libc::SYS_kcmp, libc::SYS_pidfd_getfd, libc::SYS_process_madvise]),
    (Capability::CAP_SYS_TIME, &[libc::SYS_settimeofday, libc::SYS_clock_settime]),
    (Capability::CAP_SYS_TTY_CONFIG, &[libc::SYS_vhangup]),
    (Capability::CAP_SYS_NICE, &[libc::SYS_get_mempolicy, libc::SYS_mbind, libc::SYS_set_mempolicy, libc::SYS_set_mempolicy_home_node]),
    (Capability::CAP_SYSLOG, &[libc::SYS_syslog]),
    (Capability::CAP_BPF, &[libc::SYS_bpf]),
    (Capability::CAP_PERFMON, &[libc::SYS_perf_event_open]),
];

/// Calls only some architectures have.
#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[i64] = &[
    libc::SYS_access,
    libc::SYS_alarm,
    libc::SYS_arch_prctl,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_creat,
    libc::SYS_dup2,
    libc::SYS_epoll_create,
    libc::SYS_epoll_ctl_old,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_wait_old,
    libc::SYS_eventfd,
    libc::SYS_fork,
    libc::SYS_futimesat,
    libc::SYS_get_thread_area,
    libc::SYS_getdents,
    libc::SYS_getpgrp,
    libc::SYS_inotify_init,
    // Calls the libc crate does not name on x86_64: io_pgetevents, cachestat, map_shadow_stack
    // (glibc's shadow stacks for new threads).
    333,
    451,
    453,
    libc::SYS_lchown,
    libc::SYS_link,
    libc::SYS_lstat,
    libc::SYS_mkdir,
    libc::SYS_mknod,
    libc::SYS_modify_ldt,
    libc::SYS_open,
    libc::SYS_pause,
    libc::SYS_pipe,
    libc::SYS_poll,
    libc::SYS_readlink,
    libc::SYS_rename,
    libc::SYS_rmdir,
    libc::SYS_select,
    libc::SYS_set_thread_area,
    libc::SYS_signalfd,
    libc::SYS_stat,
    libc::SYS_symlink,
    libc::SYS_time,
    libc::SYS_unlink,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_vfork,
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_ARCH: &[i64] = &[];

/// Calls allowed whatever their arguments, grouped by what they are for.
const ALLOWED: &[i64] = &[
    // Files, directories and their metadata.
    libc::SYS_chdir,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_copy_file_range,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fadvise64,
    libc::SYS_fallocate,
    libc::SYS_fchdir,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchmodat2,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_fcntl,
    libc::SYS_fdatasync,
    libc::SYS_fgetxattr,
    libc::SYS_flistxattr,
    libc::SYS_flock,
    libc::SYS_fremovexattr,
    libc::SYS_fsetxattr,
    libc::SYS_fstat,
    libc::SYS_fstatfs,
    libc::SYS_fsync,
    libc::SYS_ftruncate,
    libc::SYS_getcwd,
    libc::SYS_getdents64,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_linkat,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_lremovexattr,
    libc::SYS_lseek,
    libc::SYS_lsetxattr,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_name_to_handle_at,
    libc::SYS_newfstatat,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_pread64,
    libc::SYS_preadv,
    libc::SYS_preadv2,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_pwritev2,
    libc::SYS_read,
    libc::SYS_readahead,
    libc::SYS_readlinkat,
    libc::SYS_readv,
    libc::SYS_removexattr,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_sendfile,
    libc::SYS_setxattr,
    libc::SYS_splice,
    libc::SYS_statfs,
    libc::SYS_statx,
    libc::SYS_symlinkat,
    libc::SYS_sync,
    libc::SYS_sync_file_range,
    libc::SYS_syncfs,
    libc::SYS_tee,
    libc::SYS_truncate,
    libc::SYS_umask,
    libc::SYS_unlinkat,
    libc::SYS_utimensat,
    libc::SYS_vmsplice,
    libc::SYS_write,
    libc::SYS_writev,
    // Waiting and events.
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_fanotify_mark,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_rm_watch,
    libc::SYS_pipe2,
    libc::SYS_ppoll,
    libc::SYS_pselect6,
    libc::SYS_signalfd4,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_gettime,
    libc::SYS_timerfd_settime,
    // Asynchronous I/O (the old interface; io_uring stays out, as in Docker since 25.0).
    libc::SYS_io_cancel,
    libc::SYS_io_destroy,
    libc::SYS_io_getevents,
    libc::SYS_io_setup,
    libc::SYS_io_submit,
    libc::SYS_ioctl,
    // Processes, threads, signals.
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_futex,
    libc::SYS_futex_waitv,
    libc::SYS_get_robust_list,
    libc::SYS_getcpu,
    libc::SYS_getegid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getgroups,
    libc::SYS_getitimer,
    libc::SYS_getpgid,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_getpriority,
    libc::SYS_getresgid,
    libc::SYS_getresuid,
    libc::SYS_getrlimit,
    libc::SYS_getrusage,
    libc::SYS_getsid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_ioprio_get,
    libc::SYS_ioprio_set,
    libc::SYS_kill,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_restrict_self,
    libc::SYS_membarrier,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_prctl,
    libc::SYS_prlimit64,
    libc::SYS_process_mrelease,
    // Kernel 4.8 and later check seccomp again after a tracer changes a call, so tracing
    // cannot step around the filter (Docker allows these from 4.8 on).
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_restart_syscall,
    libc::SYS_rseq,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_getattr,
    libc::SYS_sched_getparam,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_rr_get_interval,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_setattr,
    libc::SYS_sched_setparam,
    libc::SYS_sched_setscheduler,
    libc::SYS_sched_yield,
    libc::SYS_seccomp,
    libc::SYS_set_robust_list,
    libc::SYS_set_tid_address,
    libc::SYS_setfsgid,
    libc::SYS_setfsuid,
    libc::SYS_setgid,
    libc::SYS_setgroups,
    libc::SYS_setitimer,
    libc::SYS_setpgid,
    libc::SYS_setpriority,
    libc::SYS_setregid,
    libc::SYS_setresgid,
    libc::SYS_setresuid,
    libc::SYS_setreuid,
    libc::SYS_setrlimit,
    libc::SYS_setsid,
    libc::SYS_setuid,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_tkill,
    libc::SYS_wait4,
    libc::SYS_waitid,
    // Memory.
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_memfd_create,
    libc::SYS_memfd_secret,
    libc::SYS_mincore,
    libc::SYS_mlock,
    libc::SYS_mlock2,
    libc::SYS_mlockall,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_msync,
    libc::SYS_munlock,
    libc::SYS_munlockall,
    libc::SYS_munmap,
    libc::SYS_pkey_alloc,
    libc::SYS_pkey_free,
    libc::SYS_pkey_mprotect,
    libc::SYS_remap_file_pages,
    // Time.
    libc::SYS_adjtimex,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_getres,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_nanosleep,
    libc::SYS_timer_create,
    libc::SYS_timer_delete,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_gettime,
    libc::SYS_timer_settime,
    libc::SYS_times,
    // System information.
    libc::SYS_getrandom,
    libc::SYS_sysinfo,
    libc::SYS_uname,
    // Sockets (`socket` itself is conditional).
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_bind,
    libc::SYS_connect,
    libc::SYS_getpeername,
    libc::SYS_getsockname,
    libc::SYS_getsockopt,
    libc::SYS_listen,
    libc::SYS_recvfrom,
    libc::SYS_recvmmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_sendmsg,
    libc::SYS_sendto,
    libc::SYS_setsockopt,
    libc::SYS_shutdown,
    libc::SYS_socketpair,
    // System V and POSIX IPC (in the step's own IPC namespace).
    libc::SYS_mq_getsetattr,
    libc::SYS_mq_notify,
    libc::SYS_mq_open,
    libc::SYS_mq_timedreceive,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_unlink,
    libc::SYS_msgctl,
    libc::SYS_msgget,
    libc::SYS_msgrcv,
    libc::SYS_msgsnd,
    libc::SYS_semctl,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_shmdt,
    libc::SYS_shmget,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_compiles_and_unconfined_is_nothing() {
        let filters = Seccomp::Default.compile(&crate::caps::DEFAULT).unwrap().unwrap();
        assert_eq!(filters.0.len(), 2);
        assert!(filters.0[0].len() < 4096);
        assert!(Seccomp::Unconfined.compile(&crate::caps::DEFAULT).unwrap().is_none());
    }

    #[test]
    fn profiles_parse_by_name() {
        assert_eq!("unconfined".parse::<Seccomp>(), Ok(Seccomp::Unconfined));
        assert_eq!("default".parse::<Seccomp>(), Ok(Seccomp::Default));
        assert!("/etc/profile.json".parse::<Seccomp>().unwrap_err().to_string().contains("not supported yet"));
    }

    #[test]
    fn blocked_calls_are_not_in_the_allowlist() {
        for nr in [libc::SYS_io_uring_setup, libc::SYS_add_key, libc::SYS_keyctl, libc::SYS_bpf, libc::SYS_mount, libc::SYS_unshare, libc::SYS_kexec_load, libc::SYS_open_by_handle_at] {
            assert!(!ALLOWED.contains(&nr) && !ALLOWED_ARCH.contains(&nr), "{nr}");
        }
    }
}
