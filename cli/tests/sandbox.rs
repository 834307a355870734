//! Attacks on the RUN sandbox through the `forge` binary: what a hostile Dockerfile, a hostile
//! image or the environment forge is started in must not get into a build step, and what a
//! killed forge must not leave running.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{eventually, pids_with, Forge, Ran};

/// What `--progress plain` printed, without the `#N ` step prefixes.
fn step_output(r: &Ran) -> String {
    r.stderr.lines().map(|l| if l.starts_with('#') { l.split_once(' ').map_or(l, |(_, rest)| rest) } else { l }).collect::<Vec<_>>().join("\n")
}

/// Builds the system-call probe (`tests/sandbox/probe.c`) as a static binary into `dir`.
fn probe_into(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sandbox/probe.c");
    let out = Command::new("cc").args(["-static", "-O", "-o"]).arg(dir.join("probe")).arg(&src).output();
    let out = out.expect("running cc: the sandbox tests need gcc and libc6-dev (scripts/install-deps.sh)");
    assert!(out.status.success(), "cc -static probe.c: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn inherited_descriptors_do_not_reach_a_step() {
    let forge = Forge::with_busybox();
    let host_dir = forge.dir.path().join("host-secrets");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("secret"), "host-secret-value\n").unwrap();
    let ctx = forge.context(
        "fds",
        &[("Dockerfile", "FROM busybox:latest\nRUN cat /proc/self/fd/7/secret /proc/1/fd/7/secret 2>&1; ls /proc/self/fd /proc/1/fd 2>&1; true\n")],
    );
    // As `exec 7</dir; forge build ...` in a shell: fd 7 is open (not close-on-exec) in forge.
    let script = r#"exec 7<"$1"; shift; exec "$@""#;
    let out = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&host_dir)
        .arg(env!("CARGO_BIN_EXE_forge"))
        .arg("--root")
        .arg(forge.store())
        .args(["build", "--progress", "plain", "-t", "fds:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    let r = Ran::from(out);
    assert!(r.ok, "{}", r.stderr);
    let out = step_output(&r);
    assert!(!out.contains("host-secret-value"), "a step read a host file through an inherited descriptor:\n{out}");
    assert!(out.contains("can't open '/proc/self/fd/7/secret': No such file or directory"), "{out}");
}

#[test]
fn run_gets_dockers_seccomp_profile_unless_the_user_opts_out() {
    let forge = Forge::with_busybox();
    let ctx = forge.context(
        "seccomp",
        &[(
            "Dockerfile",
            "FROM busybox:latest\nCOPY probe /probe\n\
             RUN grep -E '^(Seccomp|CapEff):' /proc/self/status; /probe; \
                 unshare -U true 2>&1 && echo unshare-cmd=ok; \
                 echo data > /tmp/f && cp /tmp/f /tmp/g && tar -cf /tmp/t.tar -C /tmp g && sh -c 'wc -c < /tmp/g' && echo busybox=ok\n",
        )],
    );
    probe_into(&ctx);

    let r = forge.build(&ctx, "seccomp:1", &["--network", "host"]);
    assert!(r.ok, "{}", r.stderr);
    let out = step_output(&r);
    assert!(out.contains("Seccomp:\t2"), "{out}");
    for call in ["unshare-user", "add_key", "keyctl", "io_uring_setup", "personality", "mount", "kexec_load", "open_by_handle_at", "bpf", "vsock"] {
        assert!(out.contains(&format!("{call}=Operation not permitted")), "{call} was not refused with EPERM:\n{out}");
    }
    assert!(out.contains("unshare: unshare(0x10000000): Operation not permitted"), "{out}");
    assert!(!out.contains("unshare-cmd=ok"), "{out}");
    // Ordinary work still works.
    assert!(out.contains("tcp-socket=ok") && out.contains("busybox=ok"), "{out}");

    // On the host's network: no CAP_NET_RAW, so no sniffing (Docker's set less bit 13).
    assert!(out.contains("CapEff:\t00000000a80405fb"), "{out}");
    assert!(out.contains("packet-socket=Operation not permitted") && out.contains("raw-socket=Operation not permitted"), "{out}");

    // The user may opt out, and only then does the filter go (a layer made with the filter is
    // not reused).
    let r = forge.build(&ctx, "seccomp:2", &["--network", "host", "--security-opt", "seccomp=unconfined"]);
    assert!(r.ok, "{}", r.stderr);
    let out = step_output(&r);
    assert!(out.contains("Seccomp:\t0"), "{out}");
    assert!(out.contains("personality=ok") && out.contains("unshare-user=ok") && out.contains("unshare-cmd=ok"), "{out}");

    // With its own network namespace (none, or the default bridged one) a step keeps Docker's
    // full default set.
    for (tag, network) in [("seccomp:3", "none"), ("seccomp:5", "default")] {
        let r = forge.build(&ctx, tag, &["--no-cache", "--network", network]);
        assert!(r.ok, "{}", r.stderr);
        assert!(step_output(&r).contains("CapEff:\t00000000a80425fb"), "{}", r.stderr);
    }

    let r = forge.build(&ctx, "seccomp:4", &["--security-opt", "seccomp=/etc/profile.json"]);
    assert!(!r.ok && r.stderr.contains("not supported yet"), "{}", r.stderr);
}

#[test]
fn device_nodes_made_in_a_step_or_shipped_in_a_layer_cannot_be_opened() {
    let forge = Forge::with_busybox();
    // A base image whose layer holds a block device node (a loop device's numbers).
    let rootfs = forge.dir.path().join("devimg-rootfs");
    forge_testkit::busybox_rootfs(&rootfs);
    assert!(Command::new("mknod").arg(rootfs.join("disk")).args(["b", "7", "0"]).status().unwrap().success());
    let tar = forge.dir.path().join("devimg.tar");
    assert!(Command::new("tar").arg("-C").arg(&rootfs).args(["--numeric-owner", "-cf"]).arg(&tar).arg(".").status().unwrap().success());
    forge.ok(&["import", tar.to_str().unwrap(), "devimg:1"]);

    let ctx = forge.context(
        "devices",
        &[(
            "Dockerfile",
            "FROM devimg:1\n\
             RUN ls -l /disk; mknod /tmp/d b 7 0 && echo mknod=ok; \
                 dd if=/tmp/d of=/dev/null bs=1 count=1 2>&1; dd if=/disk of=/dev/null bs=1 count=1 2>&1; \
                 echo x > /dev/null && head -c1 /dev/zero | wc -c && head -c4 /dev/urandom | wc -c && echo pseudo=ok\n",
        )],
    );
    let r = forge.build(&ctx, "devices:1", &[]);
    assert!(r.ok, "{}", r.stderr);
    let out = step_output(&r);
    assert!(out.contains("mknod=ok"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("brw")), "the layer's device node is missing: {out}");
    assert!(out.contains("dd: can't open '/tmp/d': Operation not permitted"), "{out}");
    assert!(out.contains("dd: can't open '/disk': Operation not permitted"), "{out}");
    assert!(out.contains("pseudo=ok"), "{out}");
}

/// The cgroup directories (v1: one per controller) a process is in, from the host's view.
fn cgroup_dirs(pid: u32) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut out = Vec::new();
    for l in text.lines() {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        if !path.contains("/forge/") {
            continue;
        }
        let base = match ctrls {
            "" => PathBuf::from("/sys/fs/cgroup"),
            c => PathBuf::from("/sys/fs/cgroup").join(c.split(',').next().unwrap()),
        };
        out.push(base.join(path.trim_start_matches('/')));
    }
    out
}

#[test]
fn a_killed_forge_leaves_no_step_running_and_the_next_run_removes_its_cgroup() {
    let forge = Forge::with_busybox();
    let next_ctx = forge.context("next", &[("Dockerfile", "FROM busybox:latest\nRUN true\n")]);
    // What removes a killed forge's cgroups: the next step any forge starts, or `store gc`.
    let nexts: [&[&str]; 2] = [&["build", "-q", "--no-cache", "-t", "next:1", next_ctx.to_str().unwrap()], &["store", "gc"]];
    for (i, next) in nexts.iter().enumerate() {
        let marker = format!("forge-kill9-{}-{i}", std::process::id());
        let ctx = forge.context(&format!("slow{i}"), &[("Dockerfile", &format!("FROM busybox:latest\nRUN sh -c 'sleep 1000; : {marker}' & sleep 1000; : {marker}\n"))]);
        // The step's scratch files go to the store, where gc finds a dead forge's: none to TMPDIR.
        let tmp = tempfile::tempdir().unwrap();
        let mut child = forge.cmd().env("TMPDIR", tmp.path()).args(["build", "--progress", "plain", "-t", "slow:1"]).arg(&ctx).stderr(std::process::Stdio::null()).spawn().unwrap();
        let started = eventually(|| pids_with(&marker).len() >= 2);
        let step = pids_with(&marker);
        let cgroups: Vec<PathBuf> = step.iter().flat_map(|p| cgroup_dirs(*p)).collect();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(started, "the step did not start");
        assert!(!cgroups.is_empty(), "the step's processes are in no forge cgroup");

        let gone = eventually(|| pids_with(&marker).is_empty());
        let left = pids_with(&marker);
        for pid in &left {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        assert!(gone, "processes of the step outlived forge: {left:?}");
        // The dead forge could not remove its cgroup; the next forge does. (Whether they still
        // exist here is not asserted: a step that any other forge on the host starts meanwhile,
        // such as a test running beside this one, removes them too, by design.)
        forge.ok(next);
        let left: Vec<&PathBuf> = cgroups.iter().filter(|d| d.exists()).collect();
        assert!(left.is_empty(), "cgroups of the killed forge remain after forge {next:?}: {left:?}");
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "the killed forge left scratch files outside the store: {left:?}");
    }
}
