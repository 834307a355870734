//! Docker 28.5, the reference: its daemon from `../shared/anchors/start-dockerd-modern.sh` (a
//! Debian trixie chroot on a private socket), started when it is not up and stopped again on
//! drop by whoever started it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const ANCHORS: &str = "/tmp/forge-anchors";
pub const CHROOT: &str = "/tmp/forge-anchors/trixie";
pub const SOCKET: &str = "/tmp/forge-anchors/trixie/run/modern/docker.sock";

/// The modern daemon, stopped on drop when this test started it.
pub struct Modern {
    started: bool,
    config: tempfile::TempDir,
}

impl Modern {
    pub fn up() -> bool {
        Path::new(SOCKET).exists() && Command::new("/usr/bin/docker").env("DOCKER_HOST", format!("unix://{SOCKET}")).arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    }

    /// Connects to the daemon, starting it (with the scripts of `anchors`) when it is not up.
    pub fn start(anchors: &Path) -> Modern {
        let mut started = false;
        if !Modern::up() {
            stop_containerd();
            std::fs::create_dir_all(ANCHORS).unwrap();
            for e in std::fs::read_dir(anchors).unwrap().flatten() {
                if e.file_type().unwrap().is_file() {
                    std::fs::copy(e.path(), Path::new(ANCHORS).join(e.file_name())).unwrap();
                }
            }
            let out = Command::new("bash").arg(Path::new(ANCHORS).join("start-dockerd-modern.sh")).output().unwrap();
            let log = std::fs::read_to_string(Path::new(ANCHORS).join("logs/dockerd-modern.log")).unwrap_or_default();
            assert!(
                out.status.success() && Modern::up(),
                "Docker 28.5 could not start ({}):\n{}\n{}\ndaemon log:\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            started = true;
        }
        // bookworm's CLI builds through the daemon's BuildKit with the chroot's buildx plugin.
        let config = tempfile::tempdir().unwrap();
        std::fs::create_dir(config.path().join("cli-plugins")).unwrap();
        std::os::unix::fs::symlink(Path::new(CHROOT).join("usr/libexec/docker/cli-plugins/docker-buildx"), config.path().join("cli-plugins/docker-buildx")).unwrap();
        Modern { started, config }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("/usr/bin/docker");
        c.env("DOCKER_HOST", format!("unix://{SOCKET}")).env("DOCKER_CONFIG", self.config.path()).env("DOCKER_BUILDKIT", "1").stdin(Stdio::null());
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Modern {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        if let Ok(pid) = std::fs::read_to_string(Path::new(CHROOT).join("run/modern/pid")) {
            let pid = pid.trim().to_string();
            let _ = Command::new("kill").arg(&pid).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        stop_containerd();
        // The mounts the start script made for the chroot.
        for m in ["proc", "sys", "dev", ""] {
            let _ = Command::new("umount").args(["-R", "-l"]).arg(Path::new(CHROOT).join(m)).status();
        }
    }
}

/// Stops the containerd a modern dockerd started, if it outlived its daemon: a new dockerd
/// waits for a running one and gives up ("containerd is still running"), so the next test
/// binary that starts the daemon (lifecycle's, then the differential's) would fail.
fn stop_containerd() {
    let pattern = "run/modern/exec/containerd";
    let _ = Command::new("pkill").args(["-f", pattern]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Command::new("pgrep").args(["-f", pattern]).stdout(Stdio::null()).status().is_ok_and(|s| s.success()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
}
