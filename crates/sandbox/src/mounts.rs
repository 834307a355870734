//! The sandbox's filesystem, set up by its PID 1 inside the new mount namespace: the overlay
//! rootfs, `/proc`, a minimal `/dev`, read-only `/sys`, the `/etc` files Docker provides, the
//! step's extra mounts, Docker's masked paths, then `pivot_root` with the old root detached.
//!
//! Mount targets inside the image are opened with `openat2(RESOLVE_IN_ROOT)` and mounted on
//! through `/proc/self/fd/N`, so a symlink in the image cannot redirect a mount to a host path.

use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{mkdirat, openat, openat2, symlink, Mode, OFlags, ResolveFlags, CWD};
use rustix::mount::{mount_bind, mount_bind_recursive, mount_change, mount_remount, unmount, MountFlags, MountPropagationFlags, UnmountFlags};

use crate::init::InitSpec;
use crate::spec::MountKind;

/// Host devices a step gets (Docker's default device set), made as the host's (see
/// [`make_device`]).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Paths Docker hides (files get `/dev/null`, directories an empty read-only tmpfs).
const MASKED: [&str; 9] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Paths Docker makes read-only.
const READONLY: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Why the rootfs could not be set up.
type Result<T> = std::result::Result<T, String>;

fn ctx<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

/// A device node with the type, numbers and mode of the host's `host`: made with mknod, as
/// Docker's runtime makes them (so the mount list has no entry per device, as under docker);
/// bound from the host where the kernel refuses mknod (rootless forge's user namespace), as
/// runc does there.
fn make_device(host: &Path, target: &Path) -> std::io::Result<()> {
    let st = rustix::fs::stat(host)?;
    let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
    match rustix::fs::mknodat(CWD, target, rustix::fs::FileType::CharacterDevice, mode, st.st_rdev) {
        // mknod's mode passes through the umask.
        Ok(()) => Ok(rustix::fs::chmod(target, mode)?),
        Err(rustix::io::Errno::PERM) => {
            fs::write(target, b"")?;
            Ok(mount_bind(host, target)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Builds the whole filesystem and pivots into it. Called once, by the sandbox's PID 1.
/// With `userns`, the rootfs is an overlay of idmapped layers and `/dev/pts` names the tty
/// group by its host id (see `crate::userns`).
pub(crate) fn setup(spec: &InitSpec, userns: Option<BorrowedFd<'_>>) -> Result<()> {
    let root = &spec.rootfs;
    // Nothing mounted from here on may propagate back to the host.
    mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE).map_err(ctx("making / private"))?;
    mount_overlay(spec, userns)?;
    let root_fd = openat(CWD, root, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(ctx("opening the rootfs"))?;

    let proc_dir = in_root(&root_fd, "/proc", true)?;
    mnt("proc", fd_path(&proc_dir), "proc", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, "").map_err(ctx("mounting /proc"))?;

    let dev = in_root(&root_fd, "/dev", true)?;
    mnt("tmpfs", fd_path(&dev), "tmpfs", MountFlags::NOSUID | MountFlags::STRICTATIME, "mode=755,size=65536k").map_err(ctx("mounting /dev"))?;
    let dev_path = root.join("dev");
    for d in DEVICES {
        make_device(&Path::new("/dev").join(d), &dev_path.join(d)).map_err(ctx(format!("creating /dev/{d}")))?;
    }
    fs::create_dir(dev_path.join("pts")).map_err(ctx("creating /dev/pts"))?;
    let tty_gid = spec.run.userns.map_or(5, |m| m.host_gid_of(5));
    mnt("devpts", dev_path.join("pts"), "devpts", MountFlags::NOSUID | MountFlags::NOEXEC, &format!("newinstance,ptmxmode=0666,mode=0620,gid={tty_gid}"))
        .map_err(ctx("mounting /dev/pts"))?;
    symlink("pts/ptmx", dev_path.join("ptmx")).map_err(ctx("linking /dev/ptmx"))?;
    fs::create_dir(dev_path.join("shm")).map_err(ctx("creating /dev/shm"))?;
    mnt("shm", dev_path.join("shm"), "tmpfs", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, "mode=1777,size=65536k")
        .map_err(ctx("mounting /dev/shm"))?;
    for (name, target) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
        symlink(target, dev_path.join(name)).map_err(ctx(format!("linking /dev/{name}")))?;
    }

    let sys = in_root(&root_fd, "/sys", true)?;
    let ro = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RDONLY;
    if mnt("sysfs", fd_path(&sys), "sysfs", ro, "").is_err() {
        // sysfs refuses a new mount when the network namespace is the host's; a read-only
        // recursive bind of the host's shows the same.
        mount_bind_recursive("/sys", fd_path(&sys)).map_err(ctx("binding /sys"))?;
        // The old fd names the directory under the new mount; remounting needs the mount itself.
        let sys = in_root(&root_fd, "/sys", true)?;
        mount_remount(fd_path(&sys), MountFlags::BIND | ro, "").map_err(ctx("making /sys read-only"))?;
    }

    mount_cgroups(&root_fd)?;

    for (name, source) in &spec.etc_files {
        let target = in_root(&root_fd, &format!("/etc/{name}"), false)?;
        mount_bind(source, fd_path(&target)).map_err(ctx(format!("binding /etc/{name}")))?;
    }

    for m in &spec.run.mounts {
        match &m.kind {
            MountKind::Bind { source, readonly } => {
                let target = in_root(&root_fd, &m.target, source.is_dir())?;
                mount_bind_recursive(source, fd_path(&target)).map_err(ctx(format!("binding {} at {}", source.display(), m.target)))?;
                if *readonly {
                    let target = in_root(&root_fd, &m.target, source.is_dir())?;
                    mount_remount(fd_path(&target), MountFlags::BIND | MountFlags::RDONLY, "").map_err(ctx(format!("making {} read-only", m.target)))?;
                }
            }
            MountKind::Tmpfs { size } => {
                let target = in_root(&root_fd, &m.target, true)?;
                let data = size.map(|s| format!("size={s}")).unwrap_or_default();
                mnt("tmpfs", fd_path(&target), "tmpfs", MountFlags::NOSUID | MountFlags::NODEV, data.as_str())
                    .map_err(ctx(format!("mounting tmpfs at {}", m.target)))?;
            }
        }
    }

    pivot(root)?;
    if !spec.run.security.privileged {
        mask_paths();
    }
    if spec.run.readonly_rootfs {
        // The root mount only: /proc, /dev, the /etc files and the extra mounts are mounts of
        // their own and keep their modes.
        mount_remount("/", MountFlags::BIND | MountFlags::RDONLY, "").map_err(ctx("making the root filesystem read-only"))?;
    }
    Ok(())
}

/// The sandbox's own cgroups at `/sys/fs/cgroup`, read-only, as docker shows a container
/// its own: mounted from inside its cgroup namespace, each hierarchy's root is the sandbox's
/// cgroup, so its limits and accounting are readable and nothing above it is. cgroup v2: the
/// unified hierarchy; v1: a tmpfs with a directory per hierarchy (and docker's links from each
/// controller of a joint mount, `cpu -> cpu,cpuacct`).
fn mount_cgroups(root_fd: &OwnedFd) -> Result<()> {
    // Rootless: no cgroup of its own, and the kernel mounts no v1 hierarchy in a user
    // namespace; /sys/fs/cgroup stays sysfs's empty directory.
    if crate::rootless::in_user_namespace() {
        return Ok(());
    }
    let ro = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RDONLY;
    let target = in_root(root_fd, "/sys/fs/cgroup", true)?;
    let own = fs::read_to_string("/proc/self/cgroup").map_err(ctx("reading /proc/self/cgroup"))?;
    // `N:controllers:path`; v2 alone is the one line with no controllers. Only the hierarchies
    // the sandbox has a cgroup in: in another (`name=systemd`), its namespace's root would be
    // the host's cgroup, and the container would see every cgroup below it.
    let lines: Vec<&str> = own.lines().filter_map(|l| l.split(':').nth(1)).collect();
    let v1: Vec<&str> = lines.iter().copied().filter(|c| c.split(',').any(|c| crate::cgroup::V1_CONTROLLERS.contains(&c))).collect();
    if lines.iter().any(|c| !c.is_empty()) && v1.is_empty() {
        return Err("the sandbox's cgroup v1 hierarchies are missing from /proc/self/cgroup".into());
    }
    if v1.is_empty() {
        return mnt("cgroup2", fd_path(&target), "cgroup2", ro, "").map_err(ctx("mounting /sys/fs/cgroup"));
    }
    mnt("tmpfs", fd_path(&target), "tmpfs", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, "mode=755").map_err(ctx("mounting a tmpfs at /sys/fs/cgroup"))?;
    let dir = in_root(root_fd, "/sys/fs/cgroup", true)?;
    let dir = fd_path(&dir);
    for controllers in v1 {
        let name = controllers.strip_prefix("name=").unwrap_or(controllers);
        fs::create_dir(dir.join(name)).map_err(ctx(format!("creating /sys/fs/cgroup/{name}")))?;
        mnt("cgroup", dir.join(name), "cgroup", ro, controllers).map_err(ctx(format!("mounting /sys/fs/cgroup/{name}")))?;
        if controllers.contains(',') {
            for c in controllers.split(',') {
                symlink(name, dir.join(c)).map_err(ctx(format!("linking /sys/fs/cgroup/{c}")))?;
            }
        }
    }
    mount_remount(&dir, MountFlags::BIND | ro, "").map_err(ctx("making /sys/fs/cgroup read-only"))
}

/// Mounts the overlay rootfs (an empty lower stands in when the step has no layers).
fn mount_overlay(spec: &InitSpec, userns: Option<BorrowedFd<'_>>) -> Result<()> {
    let lowers = if spec.run.lowerdirs.is_empty() { vec![spec.empty_lower.clone()] } else { spec.run.lowerdirs.clone() };
    let upper = (spec.run.upperdir.as_path(), spec.run.workdir.as_path());
    match userns {
        Some(ns) => crate::overlay::mount_overlay_idmapped(&lowers, upper, &spec.rootfs, ns, spec.run.volatile_upper),
        None => crate::overlay::mount_overlay_with(&lowers, Some(upper), &spec.rootfs, spec.run.volatile_upper),
    }
    .map_err(|e| e.to_string())
}

/// Opens `path` inside the rootfs (resolved as if the rootfs were `/`), creating it as a
/// directory or an empty file when missing. The parent creates nothing: every component is
/// made relative to the fd of the one before it.
fn in_root(root: &OwnedFd, path: &str, dir: bool) -> Result<OwnedFd> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let open = |p: &str| openat2(root, if p.is_empty() { "." } else { p }, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), resolve);
    let mut done = String::new();
    for (i, part) in parts.iter().enumerate() {
        let parent = open(&done).map_err(ctx(format!("opening {path}")))?;
        let last = i + 1 == parts.len();
        if !done.is_empty() {
            done.push('/');
        }
        done.push_str(part);
        if open(&done).is_ok() {
            continue;
        }
        let parent = openat(&parent, ".", OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(ctx(format!("opening the parent of {path}")))?;
        if last && !dir {
            openat(&parent, *part, OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::from_raw_mode(0o644))
                .map_err(ctx(format!("creating {path}")))?;
        } else {
            mkdirat(&parent, *part, Mode::from_raw_mode(0o755)).map_err(ctx(format!("creating {path}")))?;
        }
    }
    open(&done).map_err(ctx(format!("opening {path}")))
}

/// mount(2) with its options as text (rustix takes them as a C string).
fn mnt(source: &str, target: impl AsRef<Path>, fstype: &str, flags: MountFlags, data: &str) -> std::io::Result<()> {
    let data = std::ffi::CString::new(data).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    Ok(rustix::mount::mount(source, target.as_ref(), fstype, flags, Some(data.as_c_str()))?)
}

/// The magic-link path that names an open fd, for syscalls that take paths.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Makes `root` the root and detaches the old one, so no host path stays reachable.
fn pivot(root: &Path) -> Result<()> {
    rustix::process::chdir(root).map_err(ctx("entering the rootfs"))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then
    // removes the old root without needing a directory for it inside the image.
    rustix::process::pivot_root(".", ".").map_err(ctx("pivot_root"))?;
    mount_change(".", MountPropagationFlags::REC | MountPropagationFlags::DOWNSTREAM).map_err(ctx("isolating the old root"))?;
    unmount(".", UnmountFlags::DETACH).map_err(ctx("detaching the old root"))?;
    rustix::process::chdir("/").map_err(ctx("entering /"))?;
    Ok(())
}

/// Docker's masked and read-only paths. Paths the kernel lacks are skipped.
fn mask_paths() {
    for p in MASKED {
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let _ = mnt("tmpfs", p, "tmpfs", MountFlags::RDONLY, "");
            }
            Ok(_) => {
                let _ = mount_bind("/dev/null", p);
            }
            Err(_) => {}
        }
    }
    for p in READONLY {
        if Path::new(p).exists() && mount_bind(p, p).is_ok() {
            let _ = mount_remount(p, MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, "");
        }
    }
}
