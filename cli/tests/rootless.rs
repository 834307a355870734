//! Rootless forge: an unprivileged user (made here with useradd, with subuid/subgid ranges)
//! imports, builds (RUN and COPY) and runs, in its own store under `$XDG_DATA_HOME/forge`,
//! and resource limits, which need a cgroup it cannot have on cgroup v1, are refused.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const USER: &str = "forge-rl-test";

/// The test user, removed (with its home and ranges) afterwards if this test made it.
struct TestUser {
    uid: u32,
    gid: u32,
    made: bool,
}

impl TestUser {
    fn get() -> TestUser {
        let made = !Command::new("id").arg(USER).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success();
        if made {
            assert!(Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", USER]).status().unwrap().success(), "useradd");
        }
        let id = |flag: &str| String::from_utf8(Command::new("id").args([flag, USER]).output().unwrap().stdout).unwrap().trim().parse::<u32>().unwrap();
        let user = TestUser { uid: id("-u"), gid: id("-g"), made };
        // useradd gives a range where login.defs asks it to; otherwise one is added here.
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if !text.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
                assert!(Command::new("usermod").args(["--add-subuids", "600000-665535", "--add-subgids", "600000-665535", USER]).status().unwrap().success());
            }
        }
        user
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if self.made {
            let _ = Command::new("userdel").args(["--remove", USER]).stderr(Stdio::null()).status();
        }
    }
}

/// `forge ARGS` as the test user, with `home` as its HOME and XDG_DATA_HOME under it.
fn forge_as(user: &TestUser, home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir(home)
        .uid(user.uid)
        .gid(user.gid)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_unprivileged_user_builds_and_runs() {
    forge_testkit::require_root();
    let user = TestUser::get();
    let home = tempfile::Builder::new().prefix("forge-rootless-").tempdir().unwrap();
    let home = home.path();
    let rootfs = home.join("busybox-rootfs");
    forge_testkit::busybox_rootfs(&rootfs);
    let tar = home.join("busybox.tar");
    assert!(Command::new("tar").arg("-C").arg(&rootfs).args(["--numeric-owner", "-cf"]).arg(&tar).arg(".").status().unwrap().success());
    let ctx = home.join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:latest\nRUN echo built > /built && id -u > /built-by\nCOPY hello.txt /hello.txt\n").unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello\n").unwrap();
    assert!(Command::new("chown").args(["-R", &format!("{}:{}", user.uid, user.gid)]).arg(home).status().unwrap().success());
    std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let ok = |args: &[&str]| {
        let out = forge_as(&user, home, args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "forge {args:?}: {stderr}");
        stdout
    };
    ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    ok(&["build", "-t", "rl:1", ctx.to_str().unwrap()]);
    let out = ok(&["run", "--rm", "rl:1", "sh", "-c", "id; read map < /proc/self/uid_map; echo $map; cat /built /built-by /hello.txt; stat -c %u:%g /bin/busybox /hello.txt"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "uid=0(root) gid=0(root) groups=0(root)", "{out}");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["0", &user.uid.to_string(), "1"], "{out}");
    assert_eq!(&lines[2..], ["built", "0", "hello", "0:0", "0:0"], "{out}");
    // The user's own store, owned by the user on the host.
    let store = home.join("data/forge");
    assert_eq!(std::fs::metadata(&store).unwrap().uid(), user.uid);
    assert!(!Path::new("/var/lib/forge/forge/containers").read_dir().is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.metadata().is_ok_and(|m| m.uid() == user.uid)))));

    // A limit would need a cgroup: refused at create, with the reason, and nothing is left.
    let out = forge_as(&user, home, &["run", "--rm", "-m", "64m", "rl:1", "true"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("resource limits need a cgroup") && stderr.contains("cgroup v1"), "{stderr}");
    assert_eq!(ok(&["ps", "-a", "-q"]), "");
    // Only host root can map the forge range.
    let out = forge_as(&user, home, &["run", "--rm", "--userns=remap", "rl:1", "true"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("--userns=remap cannot be combined with rootless forge"), "{stderr}");
}
