//! Rootless forge: an unprivileged user's `forge` re-executes itself as root of a user
//! namespace of its own (as rootless podman does), so everything it does (unpacking layers with
//! their owners, overlay mounts, RUN steps, containers) happens there, with no setuid helper
//! but `newuidmap`/`newgidmap` (Debian's `uidmap`) to map the user's subordinate ranges.
//!
//! Map: namespace root is the user; ids 1..=N are the user's range in `/etc/subuid` and
//! `/etc/subgid` (without a range, only root is mapped, and images with other owners fail to
//! unpack with the kernel's EINVAL). The store is `$XDG_DATA_HOME/forge` (or
//! `~/.local/share/forge`), chosen before the re-exec since the namespace's root would pick
//! root's store.
//!
//! No cgroup can be made: on cgroup v1 nothing is delegated to a user, so a rootless step or
//! container runs without one, and asking for a limit is refused ([`crate::Error::NoCgroups`]).

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

/// Why forge could not enter its user namespace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootlessError {
    /// Running the re-executed forge or newuidmap/newgidmap failed.
    #[error("rootless: {what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// newuidmap or newgidmap refused the map.
    #[error("rootless: {tool} {args} failed ({status}): {stderr}; is Debian's uidmap installed and does /etc/sub{kind}id give this user a range?")]
    Map {
        /// The tool.
        tool: &'static str,
        /// Its arguments.
        args: String,
        /// Its exit status.
        status: String,
        /// What it said.
        stderr: String,
        /// `u` or `g`.
        kind: &'static str,
    },
    /// `/etc/subuid` or `/etc/subgid` cannot be parsed.
    #[error("rootless: {0}")]
    Ranges(String),
    /// No store directory can be chosen.
    #[error("rootless: cannot choose a store directory: set --root, FORGE_ROOT, XDG_DATA_HOME or HOME")]
    NoStore,
}

/// Whether this process is in a user namespace other than the host's (rootless forge): then
/// no cgroup can be made, the host's cgroup hierarchies cannot be mounted, and no further
/// user namespace can map host ranges.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
}

/// For an unprivileged user, re-executes forge as root of a new user namespace (with a mount
/// namespace of its own) and exits with its status; returns at once for root (including the
/// re-executed forge, root inside). Call at the top of `main`, after [`crate::enter_if_init`],
/// while the process has one thread.
pub fn enter_if_unprivileged() -> Result<(), RootlessError> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name);
    let range = |file: &str| -> Result<Option<(u64, u64)>, RootlessError> {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let ranges = crate::userns::subordinate_ranges(&text).map_err(|e| RootlessError::Ranges(format!("{file}: {e}")))?;
        Ok(ranges.into_iter().find(|r| Some(&r.name) == name.as_ref() || r.name == uid.to_string()).map(|r| (r.start, r.count)))
    };
    let (uids, gids) = (range("/etc/subuid")?, range("/etc/subgid")?);

    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(std::env::args_os().skip(1));
    if std::env::var_os("FORGE_ROOT").is_none() {
        let root = match (std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")) {
            (Some(data), _) if !data.is_empty() => std::path::PathBuf::from(data).join("forge"),
            (_, Some(home)) if !home.is_empty() => std::path::PathBuf::from(home).join(".local/share/forge"),
            _ => return Err(RootlessError::NoStore),
        };
        cmd.env("FORGE_ROOT", root);
    }
    let io = |what: &str| {
        let what = what.to_string();
        move |source| RootlessError::Io { what, source }
    };
    let (mut ready_read, ready_write) = crate::sys::pipe().map_err(io("pipe"))?;
    let (go_read, mut go_write) = crate::sys::pipe().map_err(io("pipe"))?;
    let mapper = std::thread::spawn(move || -> Result<(), RootlessError> {
        let mut pid = [0u8; 4];
        ready_read.read_exact(&mut pid).map_err(|source| RootlessError::Io { what: "waiting for the user namespace".into(), source })?;
        let pid = i32::from_ne_bytes(pid).to_string();
        map("newuidmap", "u", &pid, uid, uids)?;
        map("newgidmap", "g", &pid, gid, gids)?;
        go_write.write_all(b"1").map_err(|source| RootlessError::Io { what: "resuming the re-executed forge".into(), source })
    });
    let spawned = crate::sys::spawn_in_user_namespace(&mut cmd, ready_write, go_read);
    let mapped = mapper.join().unwrap_or_else(|_| Err(RootlessError::Ranges("the map writer panicked".into())));
    let mut child = match (spawned, mapped) {
        (Ok(child), Ok(())) => child,
        (_, Err(e)) => return Err(e),
        (Err(source), Ok(())) => return Err(RootlessError::Io { what: "re-executing forge in a user namespace".into(), source }),
    };
    crate::sys::forward_signals_to(child.id() as i32);
    let status = child.wait().map_err(io("waiting for the re-executed forge"))?;
    std::process::exit(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)));
}

/// Writes one map of `pid` with the setuid helper: root is `own`, 1.. the range.
fn map(tool: &'static str, kind: &'static str, pid: &str, own: u32, range: Option<(u64, u64)>) -> Result<(), RootlessError> {
    let mut args = vec![pid.to_string(), "0".into(), own.to_string(), "1".into()];
    if let Some((start, count)) = range {
        args.extend(["1".into(), start.to_string(), count.to_string()]);
    }
    let out = Command::new(tool).args(&args).output().map_err(|source| RootlessError::Io { what: format!("running {tool}"), source })?;
    if out.status.success() {
        return Ok(());
    }
    Err(RootlessError::Map { tool, args: args.join(" "), status: out.status.to_string(), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(), kind })
}
