//! A `forge serve` for tests that drive it with the real docker CLIs, and raw HTTP helpers.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{eventually, Forge, Ran};

/// Debian's docker.io 20.10 client.
pub const DOCKER: &str = "/usr/bin/docker";

/// A `forge serve` on a socket in its own directory; stopped with SIGTERM on drop, and the
/// containers of its store removed (they run under monitors that outlive the server and the
/// test: a failed test must not leave them running).
pub struct Server {
    pub child: Option<Child>,
    store: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// A docker config directory of its own, so root's credentials are never read.
    pub docker_config: tempfile::TempDir,
}

impl Server {
    pub fn start(forge: &Forge, extra: &[&str]) -> Server {
        let dir = forge.dir.path().join("run");
        std::fs::create_dir_all(&dir).unwrap();
        // Open to everyone, so that only the socket's own mode decides who may connect.
        std::fs::set_permissions(forge.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.join("api.sock");
        let log = forge.dir.path().join("serve.log");
        let child = forge
            .cmd()
            .args(["serve", "-H", &format!("unix://{}", socket.display())])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server { child: Some(child), store: forge.store(), socket, log, docker_config: tempfile::tempdir().unwrap() };
        let up = eventually(|| UnixStream::connect(&server.socket).is_ok() || server.exited());
        assert!(up && !server.exited(), "forge serve did not start:\n{}", server.log());
        server
    }

    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        self.client_cmd(Path::new(DOCKER), args)
    }

    /// `client` (a docker CLI) pointed at this server.
    pub fn client_cmd(&self, client: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(client);
        c.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("DOCKER_BUILDKIT")
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn docker(&self, args: &[&str]) -> Ran {
        self.docker_cmd(args).output().unwrap().into()
    }

    /// Runs docker and asserts success.
    pub fn ok(&self, args: &[&str]) -> Ran {
        let r = self.docker(args);
        assert!(r.ok, "docker {args:?} failed:\n{}\n{}\nserver log:\n{}", r.stdout, r.stderr, self.log());
        r
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal_term();
        self.wait_exit()
    }

    pub fn signal_term(&self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.as_ref().expect("running").id().to_string()).status();
    }

    /// Waits for the server to exit (killed if it does not within 20 s).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        if !eventually(|| matches!(child.try_wait(), Ok(Some(_)))) {
            let _ = child.kill();
        }
        child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let forge = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_forge")).arg("--root").arg(&self.store).args(args).stdin(Stdio::null()).output();
        if let Ok(listed) = forge(&["ps", "-aq"]) {
            let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout).split_whitespace().map(str::to_string).collect();
            if !ids.is_empty() {
                let _ = forge(&[&["rm", "-f"][..], &ids.iter().map(String::as_str).collect::<Vec<_>>()].concat());
            }
        }
    }
}

/// Sends a raw HTTP request; returns the status and the body. A server may answer (a 404, a
/// 400) and close before it read the body: its answer is still there to read.
pub fn raw(socket: &Path, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    request(socket, method, path, content_type, body, false)
}

/// As [`raw`], for a body that must be read whole: a server that answers and closes before its
/// end fails the test (the client's write breaks).
pub fn raw_whole(socket: &Path, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    request(socket, method, path, content_type, body, true)
}

fn request(socket: &Path, method: &str, path: &str, content_type: &str, body: &[u8], whole: bool) -> (u16, String) {
    let mut s = UnixStream::connect(socket).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: forge\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len());
    let sent = s.write_all(head.as_bytes()).and_then(|()| s.write_all(body));
    if let (Err(e), true) = (sent, whole) {
        panic!("{method} {path}: the server closed before reading the whole body: {e}");
    }
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The `message` of docker's error document in `body` (which may be chunk-framed).
pub fn message(body: &str) -> String {
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map_or(body.len(), |e| e + 1);
    let v: serde_json::Value = serde_json::from_str(&body[start..end]).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["message"].as_str().unwrap_or_else(|| panic!("no message in {body}")).to_string()
}

