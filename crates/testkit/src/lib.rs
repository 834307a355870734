//! Real parts for forge's tests, made locally with no internet.
//!
//! - [`busybox_rootfs`]: a busybox root filesystem built from Debian's `busybox-static`, the
//!   base image of most tests (`/bin/busybox` must exist; `.ci/run` installs it).
//! - [`Registry`]: Debian's `docker-registry` (the CNCF distribution server) on a free
//!   `127.0.0.1` port with its own temporary storage, stopped on drop.
//! - [`cached_bytes`], [`direct_io_works`]: what a write past the page cache left in it.
//!
//! Everything here panics on failure: it is test setup, and a panic names what is missing.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes of `path` in the page cache, by util-linux's `fincore` (`.ci/run` installs
/// util-linux-extra).
pub fn cached_bytes(path: &Path) -> u64 {
    let out = Command::new("fincore").args(["--bytes", "--noheadings", "--output", "RES"]).arg(path).output().expect("fincore (apt-get install util-linux-extra)");
    assert!(out.status.success(), "fincore: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("fincore prints a byte count")
}

/// Whether the filesystem of `dir` takes `O_DIRECT` writes (tmpfs before Linux 6.6 does not),
/// asked of dd, which aligns its own buffer.
pub fn direct_io_works(dir: &Path) -> bool {
    let probe = dir.join("direct-probe");
    let ok = Command::new("dd")
        .args(["if=/dev/zero", "bs=4096", "count=1", "oflag=direct", "status=none"])
        .arg(format!("of={}", probe.display()))
        .status()
        .is_ok_and(|s| s.success());
    let _ = std::fs::remove_file(probe);
    ok
}

/// Fills `dir` with a minimal busybox rootfs: `/bin/busybox`, one symlink per applet at the path
/// busybox advertises, `/etc/passwd` and `/etc/group` with root, nobody and a `app` user
/// (uid 1000), and the usual empty directories. The result is deterministic.
pub fn busybox_rootfs(dir: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.exists(), "/bin/busybox is missing: apt-get install busybox-static");
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root", "proc", "sys", "dev", "var/tmp", "home/app"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    for d in ["tmp", "var/tmp"] {
        std::fs::set_permissions(dir.join(d), std::fs::Permissions::from_mode(0o1777)).unwrap();
    }
    std::fs::set_permissions(dir.join("root"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    std::fs::set_permissions(dir.join("bin/busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let list = Command::new(busybox).arg("--list-full").output().expect("run busybox --list-full");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet == "bin/busybox" || applet.is_empty() {
            continue;
        }
        let depth = applet.matches('/').count();
        let target = match applet.rsplit_once('/') {
            Some(("bin", _)) => "busybox".to_string(),
            _ => format!("{}bin/busybox", "../".repeat(depth)),
        };
        let link = dir.join(applet);
        let _ = std::fs::remove_file(&link);
        symlink(target, link).unwrap();
    }
    write(dir, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
    write(dir, "etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n");
    write(dir, "etc/nsswitch.conf", "hosts: files dns\n");
    std::os::unix::fs::chown(dir.join("home/app"), Some(1000), Some(1000)).unwrap();
}

fn write(root: &Path, rel: &str, text: &str) {
    std::fs::File::create(root.join(rel)).unwrap().write_all(text.as_bytes()).unwrap();
}

/// A free TCP port on 127.0.0.1 (the kernel picks it; there is a small race until it is bound again).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `docker-registry` with its own storage, killed and removed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`, the host part of image references.
    pub addr: String,
    /// Temporary directory holding the config and the storage.
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a plain-HTTP registry with no auth.
    pub fn start() -> Registry {
        Registry::start_with("")
    }

    /// Starts a registry whose config gets `extra` appended under the top level
    /// (for example an `auth:` section, or `http.tls` — pass the whole `http:` block then).
    pub fn start_with(extra: &str) -> Registry {
        Registry::start_in(tempfile::tempdir().unwrap(), extra)
    }

    /// Starts a registry that speaks only HTTPS, with a self-signed certificate for 127.0.0.1
    /// (`cert.pem` in [`Registry::dir`]).
    pub fn start_tls() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        self_signed_cert(dir.path());
        let tls = format!("http:\n  addr: {{addr}}\n  tls:\n    certificate: {d}/cert.pem\n    key: {d}/key.pem\n", d = dir.path().display());
        Registry::start_in(dir, &tls)
    }

    fn start_in(dir: tempfile::TempDir, extra: &str) -> Registry {
        let bin = "/usr/bin/docker-registry";
        assert!(Path::new(bin).exists(), "{bin} is missing: apt-get install docker-registry");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let has_http = extra.lines().any(|l| l.starts_with("http:"));
        let http = if has_http { String::new() } else { format!("http:\n  addr: {addr}\n") };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{http}{}\n",
            dir.path().join("data").display(),
            extra.replace("{addr}", &addr)
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { child, addr, dir };
        registry.wait_listening();
        registry
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not listen on {} in 20 s; log:\n{}", self.addr, self.log());
    }

    /// The registry's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the registry keeps its blobs and repositories.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// Writes a self-signed certificate for 127.0.0.1 that is its own CA (`cert.pem`, `key.pem`)
/// into `dir`, with openssl.
pub fn self_signed_cert(dir: &Path) {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:TRUE"])
        .current_dir(dir)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's Docker daemon (20.10, BuildKit built in), the reference implementation, on a
/// private socket with its own data directory, no bridge and no iptables rules (so containers
/// and builds use `--network none` or `host`). Stopped on drop.
pub struct Dockerd {
    child: Child,
    /// Data, exec root and socket.
    pub dir: tempfile::TempDir,
}

impl Dockerd {
    /// Starts the daemon and waits until it answers.
    pub fn start() -> Dockerd {
        let bin = "/usr/sbin/dockerd";
        assert!(Path::new(bin).exists(), "{bin} is missing: apt-get install docker.io");
        let dir = tempfile::Builder::new().prefix("dockerd-").tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(bin)
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.path().join("docker.sock").display()))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let d = Dockerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if d.cmd(&["version"]).status.success() {
                return d;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("dockerd did not answer in 60 s; log:\n{}", std::fs::read_to_string(d.dir.path().join("log")).unwrap_or_default());
    }

    /// Runs Debian's docker CLI against this daemon, with BuildKit on.
    pub fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("/usr/bin/docker")
            .env("DOCKER_HOST", format!("unix://{}", self.dir.path().join("docker.sock").display()))
            .env("DOCKER_BUILDKIT", "1")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run /usr/bin/docker")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM lets dockerd unmount its layers before the directory is removed.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The project's shared test data beside the repository (`../shared/<rel>`: conformance tables,
/// anchor workloads), or `None` when this clone has none beside it. CI always has it; a person's
/// clone usually does not, and there the test that asked says on stderr that it was skipped and
/// returns early (cargo has no runtime skip).
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(rel);
    if path.exists() {
        return Some(path);
    }
    // libtest runs each test on a thread named after it.
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let line = format!("\nskipped: {test}: ../shared/{rel} is not beside the repository (a plain clone has none)\n");
    // Straight to fd 2 in one write: libtest captures only the print macros, and a skip must
    // be seen, whole, among the other tests' lines.
    let _ = std::io::stderr().write_all(line.as_bytes());
    None
}

/// True when the tests run as root, which the sandbox, overlay and cgroup tests need.
/// CI runs as root; a test that needs it and finds otherwise fails loudly rather than skipping.
pub fn require_root() {
    assert!(rustix_is_root(), "this test needs root (overlayfs, namespaces, cgroups)");
}

fn rustix_is_root() -> bool {
    // Read the effective uid from /proc rather than pull in libc for one call.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_rootfs_has_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        busybox_rootfs(dir.path());
        let sh = std::fs::read_link(dir.path().join("bin/sh")).unwrap();
        assert_eq!(sh, Path::new("busybox"));
        assert!(dir.path().join("usr/bin/env").symlink_metadata().is_ok());
        let passwd = std::fs::read_to_string(dir.path().join("etc/passwd")).unwrap();
        assert!(passwd.contains("app:x:1000:1000"));
    }

    #[test]
    fn registry_answers_v2() {
        let reg = Registry::start();
        let mut s = std::net::TcpStream::connect(&reg.addr).unwrap();
        use std::io::Read;
        write!(s, "GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", reg.addr).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
