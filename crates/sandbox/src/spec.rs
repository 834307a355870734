//! What a caller asks the sandbox to run: the rootfs layers, the process, extra mounts and
//! limits. Plain data, serialized to the re-executed init.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::seccomp::Seccomp;

/// One RUN step to execute.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// Overlay lowerdirs, top-most (newest layer) first; may be empty.
    pub lowerdirs: Vec<PathBuf>,
    /// The overlay upperdir: receives every change the step makes (the layer's diff).
    pub upperdir: PathBuf,
    /// The overlay workdir, on the same filesystem as `upperdir`.
    pub workdir: PathBuf,
    /// The full argv; `argv[0]` without a `/` is looked up in the `PATH` of `env`.
    pub argv: Vec<String>,
    /// `KEY=VALUE` pairs; Docker's default `PATH` is added when absent.
    pub env: Vec<String>,
    /// Dockerfile `USER` form: `""` (root), `name`, `uid`, `name:group` or `uid:gid`, resolved
    /// through the rootfs's `/etc/passwd` and `/etc/group`.
    pub user: String,
    /// The working directory (absolute); created if missing.
    pub cwd: String,
    /// The sandbox's hostname.
    pub hostname: String,
    /// The network namespace.
    pub network: Network,
    /// Extra mounts (`RUN --mount`).
    pub mounts: Vec<Mount>,
    /// cgroup limits.
    pub limits: Limits,
    /// The system calls the command may make.
    pub seccomp: Seccomp,
    /// The executable re-executed as the sandbox's init; `None` for this executable.
    pub init: Option<PathBuf>,
    /// Where the step's scratch directory (its `/etc` files and rootfs mountpoint) is made: a
    /// directory its owner reconciles after a crash, such as the store's per-process scratch
    /// directory, so a `kill -9` leaves nothing behind for good. `None`: the system temp dir.
    pub scratch_in: Option<PathBuf>,
    /// How output reaches the caller.
    #[serde(default)]
    pub output: Output,
    /// Which `/etc` files the sandbox provides.
    #[serde(default)]
    pub etc: Etc,
    /// Capabilities and confinement beyond Docker's defaults.
    #[serde(default)]
    pub security: Security,
    /// The root filesystem is mounted read-only (docker's `--read-only`; the extra mounts keep
    /// their own mode).
    #[serde(default)]
    pub readonly_rootfs: bool,
    /// Run in a sandbox that runs already (`exec`), given by the init PID its
    /// [`crate::Event::Started`] reported: the command joins its namespaces, root and cgroups,
    /// and this spec's overlay, mounts, hostname and limits are not used. The command's user,
    /// capabilities and seccomp filter come from this spec as for a new sandbox.
    #[serde(default)]
    pub enter: Option<u32>,
    /// Keep the command's standard input open for the caller to write ([`crate::Event::Stdin`])
    /// rather than giving it `/dev/null` (docker's `-i`).
    #[serde(default)]
    pub stdin: bool,
    /// A terminal for the command (docker's `-t`) of this many rows and columns: its standard
    /// streams are the terminal, its output comes back as [`crate::Stream::Stdout`] (with the
    /// terminal's line discipline applied), and with `stdin` the caller writes the terminal's
    /// input.
    #[serde(default)]
    pub tty: Option<[u16; 2]>,
    /// `Some`: the command runs in a user namespace of its own with this mapping (docker's
    /// `--userns=remap`); `None`: in the host's.
    #[serde(default)]
    pub userns: Option<crate::userns::IdMapping>,
    /// The upperdir is a build step's scratch, committed only after the step ends and thrown
    /// away after a crash: the overlay is mounted `volatile`, so a copy-up (a `chown -R` over
    /// a lower tree, say) does not fsync each file it copies. A container's upperdir is its
    /// only copy of what it wrote, and keeps overlay's syncs.
    #[serde(default)]
    pub volatile_upper: bool,
}

/// What a container may do beyond Docker's defaults: docker's `--cap-add`, `--cap-drop` and
/// `--privileged`, and a seccomp profile file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// Capabilities added to the default set, spelled `CAP_NAME` or `ALL` (see
    /// [`crate::normalize_capability`]).
    pub cap_add: Vec<String>,
    /// Capabilities taken from the default set, spelled the same way.
    pub cap_drop: Vec<String>,
    /// Every capability, no seccomp filter, no masked or read-only paths, access to every device
    /// (through the device nodes it makes: its `/dev` stays the minimal one).
    pub privileged: bool,
    /// A seccomp profile in docker's JSON format (`--security-opt seccomp=FILE`, the file's
    /// text as it was at create), in place of [`RunSpec::seccomp`]; see
    /// [`crate::check_seccomp_profile`].
    #[serde(default)]
    pub seccomp_profile: Option<String>,
}

/// The `/etc` files a sandbox gets (bound over the image's, never written into its layer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Etc {
    /// BuildKit's, for RUN steps: `hosts` names the sandbox on the loopback line, `resolv.conf`,
    /// and no `/etc/hostname`.
    #[default]
    Build,
    /// Docker's, for containers: `hosts` (localhost, and the hostname on 127.0.1.1),
    /// `resolv.conf` and `/etc/hostname`.
    Container,
}

/// How a step's output is passed to the caller's callback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// A line at a time (a line longer than 64 KiB in pieces), for progress displays.
    #[default]
    Lines,
    /// The bytes as they arrive, unchanged, for a caller that copies them to its own
    /// stdout and stderr (`forge run`).
    Raw,
}

impl RunSpec {
    /// A spec for `argv` on the given overlay directories, as root in `/`, with no network
    /// and no limits.
    pub fn new(lowerdirs: Vec<PathBuf>, upperdir: PathBuf, workdir: PathBuf, argv: Vec<String>) -> RunSpec {
        RunSpec {
            lowerdirs,
            upperdir,
            workdir,
            argv,
            env: Vec::new(),
            user: String::new(),
            cwd: "/".into(),
            hostname: "forge".into(),
            network: Network::None,
            mounts: Vec::new(),
            limits: Limits::default(),
            seccomp: Seccomp::Default,
            init: None,
            scratch_in: None,
            output: Output::Lines,
            etc: Etc::Build,
            security: Security::default(),
            readonly_rootfs: false,
            enter: None,
            stdin: false,
            tty: None,
            userns: None,
            volatile_upper: false,
        }
    }
}

/// The network a step or container sees (`none`, `host`, or a namespace made for it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Its own network namespace with only loopback, up.
    #[default]
    None,
    /// The host's network namespace. The step then lacks `CAP_NET_RAW`, so it cannot open raw
    /// or packet sockets to watch the host's traffic.
    Host,
    /// The network namespace bind-mounted at this path, set up beforehand by its caller
    /// (forge-network's bridged namespaces), joined as it is.
    Namespace(PathBuf),
}

/// A network forge cannot give a step or container yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported network {0:?}: forge supports \"none\" and \"host\"")]
pub struct UnknownNetwork(pub String);

impl std::str::FromStr for Network {
    type Err = UnknownNetwork;

    fn from_str(s: &str) -> Result<Network, UnknownNetwork> {
        match s {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            other => Err(UnknownNetwork(other.to_string())),
        }
    }
}

/// An extra mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path in the sandbox; created (in the upperdir only as long as the step runs)
    /// when missing.
    pub target: String,
    /// What is mounted.
    pub kind: MountKind,
}

/// The kinds of extra mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A host file or directory.
    Bind {
        /// The host path.
        source: PathBuf,
        /// Mounted read-only.
        readonly: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Size limit in bytes.
        size: Option<u64>,
    },
}

/// Resource limits of one step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Memory plus swap in bytes (`u64::MAX`: unlimited swap).
    pub memory_swap: Option<u64>,
    /// CPU shares (cgroup v1 semantics; converted to a weight on v2).
    pub cpu_shares: Option<u64>,
    /// CFS quota and period in microseconds.
    pub cpu_quota: Option<(i64, u64)>,
    /// Maximum number of processes.
    pub pids: Option<u64>,
    /// Soft memory limit in bytes (docker's `--memory-reservation`): what the kernel reclaims
    /// the cgroup down to when the host runs short.
    #[serde(default)]
    pub memory_reservation: Option<u64>,
    /// The CPUs the processes may run on, in the kernel's list format (`0-2,4`).
    #[serde(default)]
    pub cpuset_cpus: Option<String>,
    /// Relative block I/O weight, 10 to 1000 (where the kernel's I/O scheduler has weights).
    #[serde(default)]
    pub blkio_weight: Option<u16>,
    /// At the memory limit, processes wait for memory instead of being OOM-killed (cgroup v1
    /// only: v2 has no such switch).
    #[serde(default)]
    pub oom_kill_disable: bool,
}
