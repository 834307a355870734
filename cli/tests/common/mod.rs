//! Running the real `forge` binary against a scratch store with a busybox base image.

#![allow(dead_code)]

pub mod modern;
pub mod server;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use sha2::{Digest, Sha256};

/// A scratch store and the binary.
pub struct Forge {
    pub dir: tempfile::TempDir,
}

/// What a command printed.
pub struct Ran {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(o: Output) -> Ran {
        Ran { ok: o.status.success(), code: o.status.code(), stdout: String::from_utf8_lossy(&o.stdout).into_owned(), stderr: String::from_utf8_lossy(&o.stderr).into_owned() }
    }
}

/// A store that used a bridged network leaves its bridge and firewall rules on the host until
/// they are pruned: every test's store prunes them when it goes.
impl Drop for Forge {
    fn drop(&mut self) {
        if self.store().join("forge").join("network").exists() {
            let _ = self.run(&["network", "prune"]);
        }
        // A build's detached finisher of pending tags must not write into a store being removed.
        for pid in self.finishers() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        eventually(|| self.finishers().is_empty());
    }
}

impl Forge {
    /// A fresh store holding `busybox:latest`, imported from a busybox-static rootfs.
    /// An empty store.
    pub fn empty() -> Forge {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // Lowercase only: podman turns an `oci:` path into an image name, which must be lowercase.
        let prefix = format!("forge-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        Forge { dir: tempfile::Builder::new().prefix(&prefix).rand_bytes(0).tempdir().unwrap() }
    }

    pub fn with_busybox() -> Forge {
        forge_testkit::require_root();
        let forge = Forge::empty();
        let rootfs = forge.dir.path().join("busybox-rootfs");
        forge_testkit::busybox_rootfs(&rootfs);
        let tar = forge.dir.path().join("busybox.tar");
        assert!(Command::new("tar").arg("-C").arg(&rootfs).args(["--numeric-owner", "-cf"]).arg(&tar).arg(".").status().unwrap().success());
        forge.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
        forge
    }

    /// A fresh store holding the very same `busybox:latest` as `other` (same tarball, so the
    /// same digests: a rootfs made at another second would differ in mtimes).
    pub fn with_busybox_of(other: &Forge) -> Forge {
        let forge = Forge::empty();
        forge.ok(&["import", other.dir.path().join("busybox.tar").to_str().unwrap(), "busybox:latest"]);
        forge
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The live `forge store finish-tags` processes of this store (a build's detached finisher
    /// of pending tags, or one a later command restarted).
    pub fn finishers(&self) -> Vec<u32> {
        let store = self.store();
        processes(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.windows(2).any(|w| w[0] == b"--root" && w[1] == store.as_os_str().as_encoded_bytes()) && args.contains(&&b"finish-tags"[..])
        })
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_forge"));
        c.arg("--root").arg(self.store()).stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        self.cmd().args(args).output().unwrap().into()
    }

    /// Runs and asserts success.
    pub fn ok(&self, args: &[&str]) -> Ran {
        let r = self.run(args);
        assert!(r.ok, "forge {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
        r
    }

    /// Writes a context directory with these files (path, content) under `name`.
    pub fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir.path().join(name);
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    /// Builds `context` tagged `tag`; returns the run.
    pub fn build(&self, context: &Path, tag: &str, extra: &[&str]) -> Ran {
        let mut args = vec!["build", "--progress", "plain", "-t", tag];
        args.extend_from_slice(extra);
        args.push(context.to_str().unwrap());
        self.run(&args)
    }

    /// The image's root filesystem unpacked into a directory, as `--output type=local` gives it.
    pub fn rootfs(&self, image: &str) -> PathBuf {
        let out = self.dir.path().join(format!("rootfs-{}", image.replace([':', '/'], "_")));
        let _ = std::fs::remove_dir_all(&out);
        // Loaded through umoci, a tool nobody here wrote, from the OCI layout the store is.
        let bundle = self.dir.path().join(format!("bundle-{}", image.replace([':', '/'], "_")));
        let _ = std::fs::remove_dir_all(&bundle);
        self.publish_tags();
        let name = forge_layerstore::store::normalize_tag(image);
        let o = Command::new("umoci").arg("unpack").arg("--image").arg(format!("{}:{name}", self.store().display())).arg(&bundle).output().unwrap();
        assert!(o.status.success(), "umoci unpack {image}: {}", String::from_utf8_lossy(&o.stderr));
        std::fs::rename(bundle.join("rootfs"), &out).unwrap();
        out
    }

    /// Waits until the tags a build left pending (an image with big layers) are in the
    /// layout's `index.json`, where other tools read them.
    pub fn publish_tags(&self) {
        self.ok(&["store", "finish-tags"]);
    }

    /// The image config, as `forge inspect` shows it.
    pub fn inspect(&self, image: &str) -> serde_json::Value {
        let r = self.ok(&["inspect", image]);
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()[0].clone()
    }

    /// Runs the image under podman and returns its stdout.
    pub fn podman_run(&self, image: &str, args: &[&str]) -> String {
        let name = forge_layerstore::store::normalize_tag(image);
        self.publish_tags();
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/podman/containers.conf");
        let o = Command::new("podman")
            .env("CONTAINERS_CONF", conf)
            .args(["run", "--rm", "--network", "none"])
            .arg(format!("oci:{}:{name}", self.store().display()))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "podman run {image}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// A rootfs as `path -> "type mode uid:gid what"` (what: a content hash, link target or device
/// numbers), for comparing the trees two builders made.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = m.file_type();
            let what = if ft.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_char_device() || ft.is_block_device() {
                let kind = if ft.is_char_device() { "char" } else { "block" };
                format!("{kind} {}:{}", rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev()))
            } else if ft.is_fifo() {
                "fifo".to_string()
            } else {
                let hash: String = Sha256::digest(std::fs::read(&p).unwrap()).iter().take(8).map(|b| format!("{b:02x}")).collect();
                format!("file {hash}")
            };
            out.insert(rel, format!("{what} {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid()));
        }
    }
    out
}

/// The cgroup directories forge made for the sandboxes (RUN steps, containers) of `pid`, wherever the hierarchy is.
pub fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut found = Vec::new();
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for line in own.lines() {
            let path = line.splitn(3, ':').nth(2).unwrap_or("/").trim_start_matches('/');
            let forge_dir = hierarchy.path().join(path).join("forge");
            for e in std::fs::read_dir(&forge_dir).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&format!("{pid}-")) {
                    found.push(e.path());
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Polls `f` until it holds or 20 s pass; returns whether it held.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(20) {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// A `forge run` in the background whose container printed `ready`; killed (and its container
/// removed) on drop, pass or fail.
pub struct Background<'a> {
    pub forge: &'a Forge,
    pub child: Child,
    pub name: String,
    pub stdout: BufReader<std::process::ChildStdout>,
}

impl<'a> Background<'a> {
    pub fn start(forge: &'a Forge, name: &str, script: &str) -> Background<'a> {
        Background::start_with(forge, &[], name, script)
    }

    pub fn start_with(forge: &'a Forge, flags: &[&str], name: &str, script: &str) -> Background<'a> {
        let mut child = forge.cmd().arg("run").args(flags).args(["--name", name, "busybox", "sh", "-c", script]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n", "the container did not start");
        Background { forge, child, name: name.into(), stdout }
    }
}

impl Drop for Background<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.forge.run(&["rm", "-f", &self.name]);
    }
}

/// A container removed (stopped first) on drop, pass or fail.
pub struct Removed<'a>(pub &'a Forge, pub &'a str);

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["rm", "-f", self.1]);
    }
}

/// The pids of host processes whose command line (its arguments, each ended by a NUL) `keep`
/// accepts. A process that ends meanwhile is left out, and so is a zombie: its command line
/// reads empty.
pub fn processes(keep: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    // Unreadable, /proc must fail the test: an empty list would pass every "nothing left".
    std::fs::read_dir("/proc")
        .expect("listing /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty() && keep(&c)))
        .collect()
}

/// The pids of host processes whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<u32> {
    processes(|cmdline| String::from_utf8_lossy(cmdline).contains(marker))
}
