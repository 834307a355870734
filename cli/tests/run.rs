//! Containers through the `forge` binary: `run`, `create`, `start -a`, `ps`, `rm`,
//! `container prune`, with docker's exit codes and configuration rules, state other commands
//! see, reconciling after a killed forge, and gc leaving containers' layers alone.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{cgroups_of, eventually, pids_with, Background, Forge, Ran};

/// An image with config to inherit: ENV, WORKDIR, USER and a CMD that prints them.
fn app_image(forge: &Forge) {
    let ctx = forge.context(
        "app",
        &[("Dockerfile", "FROM busybox:latest\nENV A=from-image B=also-image\nWORKDIR /srv/app\nUSER app\nCMD [\"sh\", \"-c\", \"echo $A $B; pwd; id -u\"]\n")],
    );
    let r = forge.build(&ctx, "app:1", &[]);
    assert!(r.ok, "{}", r.stderr);
}

/// The containers' record directories in the store.
fn container_dirs(forge: &Forge) -> Vec<PathBuf> {
    let dir = forge.store().join("forge/containers");
    std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect()
}

/// The snapshot records whose key is a container's.
fn container_snapshots(forge: &Forge) -> Vec<String> {
    let meta = forge.store().join("forge/snapshots/meta");
    std::fs::read_dir(meta)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|text| text.contains("\"key\":\"container-"))
        .collect()
}

/// Mounts under the store, as the host sees them.
fn mounts_under(store: &Path) -> Vec<String> {
    let store = std::fs::canonicalize(store).unwrap();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(store.to_str().unwrap()))).map(str::to_string).collect()
}

/// `ps -a --format json`, one object per container.
fn ps_json(forge: &Forge) -> Vec<serde_json::Value> {
    forge.ok(&["ps", "-a", "--format", "json"]).stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn exit_codes_are_dockers() {
    let forge = Forge::with_busybox();
    let code = |r: &Ran| r.code.unwrap();
    let r = forge.run(&["run", "--rm", "busybox", "true"]);
    assert_eq!((code(&r), r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    let r = forge.run(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(code(&r), 3, "{}", r.stderr);
    let r = forge.run(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(code(&r), 127, "{}", r.stderr);
    assert!(r.stderr.contains("\"no-such-command\": executable file not found in $PATH"), "{}", r.stderr);
    let r = forge.run(&["run", "--rm", "busybox", "/no/such/file"]);
    assert_eq!(code(&r), 127, "{}", r.stderr);
    let r = forge.run(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(code(&r), 126, "{}", r.stderr);
    assert!(r.stderr.contains("exec /etc/passwd: Permission denied"), "{}", r.stderr);
    let r = forge.run(&["run", "--rm", "busybox", "/etc"]);
    assert_eq!(code(&r), 126, "{}", r.stderr);
    // Forge's own failures: 125, with what went wrong.
    let r = forge.run(&["run", "--rm", "missing:1", "true"]);
    assert_eq!(code(&r), 125, "{}", r.stderr);
    assert!(r.stderr.contains("image \"missing:1\" not found in the store"), "{}", r.stderr);
    let r = forge.run(&["run", "--rm", "Bad//Name", "true"]);
    assert_eq!(code(&r), 125, "{}", r.stderr);
    assert!(r.stderr.contains("Bad//Name"), "{}", r.stderr);
    // The imported busybox has no CMD.
    let r = forge.run(&["run", "--rm", "busybox"]);
    assert_eq!(code(&r), 125, "{}", r.stderr);
    assert!(r.stderr.contains("no command specified"), "{}", r.stderr);
    let r = forge.run(&["run", "--rm", "--network", "nosuchnet", "busybox", "true"]);
    assert_eq!(code(&r), 125, "{}", r.stderr);
    assert!(r.stderr.contains("network nosuchnet not found"), "{}", r.stderr);
    // Killed by a signal: 128 + its number.
    let r = forge.run(&["run", "--rm", "busybox", "sh", "-c", "kill -9 $$"]);
    assert_eq!(code(&r), 137, "{}", r.stderr);
    assert_eq!(container_dirs(&forge), Vec::<PathBuf>::new(), "--rm left records");
}

#[test]
fn output_is_passed_through_unchanged() {
    let forge = Forge::with_busybox();
    let o = forge.cmd().args(["run", "--rm", "busybox", "sh", "-c", "printf 'no newline'; printf 'to\\rerr' >&2; printf '\\0\\001bin'"]).output().unwrap();
    assert!(o.status.success());
    assert_eq!(o.stdout, b"no newline\0\x01bin");
    assert_eq!(o.stderr, b"to\rerr");
}

#[test]
fn config_comes_from_the_image_and_flags_override_it() {
    let forge = Forge::with_busybox();
    app_image(&forge);
    let r = forge.ok(&["run", "--rm", "app:1"]);
    assert_eq!(r.stdout, "from-image also-image\n/srv/app\n1000\n");

    let env_file = forge.dir.path().join("env.list");
    std::fs::write(&env_file, "# comment\n\nB=from-file\nFROM_HOST\n").unwrap();
    let r = forge.cmd().env("FROM_HOST", "host-value").args(["run", "--rm", "-e", "A=from-flag", "--env-file", env_file.to_str().unwrap(), "-w", "/tmp/new", "-u", "0:50", "app:1", "sh", "-c", "echo $A $B $FROM_HOST; pwd; id"]).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(String::from_utf8_lossy(&r.stdout), "from-flag from-file host-value\n/tmp/new\nuid=0(root) gid=50(staff) groups=50(staff)\n");

    // --entrypoint replaces the entrypoint and drops the image's CMD; arguments are the new CMD.
    let r = forge.ok(&["run", "--rm", "--entrypoint", "echo", "app:1"]);
    assert_eq!(r.stdout, "\n");
    let r = forge.ok(&["run", "--rm", "--entrypoint", "echo", "app:1", "one", "two"]);
    assert_eq!(r.stdout, "one two\n");
    let r = forge.ok(&["run", "--rm", "--hostname", "named-host", "-u", "app", "app:1", "sh", "-c", "hostname; cat /etc/hostname; echo $HOME"]);
    assert_eq!(r.stdout, "named-host\nnamed-host\n/home/app\n");
}

#[test]
fn matches_podman_run_on_the_same_image() {
    let forge = Forge::with_busybox();
    let script = "id; echo --; hostname; cat /etc/hostname; echo; echo --; env | sort";
    let ours = forge.ok(&["run", "--rm", "busybox", "sh", "-c", script]).stdout;
    let podman = forge.podman_run("busybox", &["sh", "-c", script]);
    let parts = |out: &str| out.split("--\n").map(|p| p.trim_end().to_string()).collect::<Vec<_>>();
    let (ours, podman) = (parts(&ours), parts(&podman));
    // `id`: the same user and group; forge lists the primary group under groups= as Docker
    // does, podman 4.3 does not.
    let id = |text: &str| -> (String, String, std::collections::BTreeSet<String>) {
        let field = |k: &str| text.split(' ').find_map(|f| f.strip_prefix(k)).unwrap_or("").to_string();
        (field("uid="), field("gid="), field("groups=").split(',').filter(|g| !g.is_empty()).map(str::to_string).collect())
    };
    let (ours_id, mut podman_id) = (id(&ours[0]), id(&podman[0]));
    podman_id.2.insert(podman_id.1.clone());
    assert_eq!(ours_id, podman_id, "{} / {}", ours[0], podman[0]);
    // Both: the hostname is the container ID's first 12 hex digits, in /etc/hostname too
    // (podman writes that file without a newline).
    for p in [&ours[1], &podman[1]] {
        let (host, file) = p.split_once('\n').unwrap();
        assert!(host.len() == 12 && host.bytes().all(|b| b.is_ascii_hexdigit()), "{p:?}");
        assert_eq!(file.trim_end(), host);
    }
    // The same environment, but for the values of HOSTNAME (the ID) and what podman adds of its
    // own (`container=podman`, and TERM even without a terminal).
    let env = |text: &str, host: &str| -> Vec<String> {
        text.lines().filter(|l| !l.starts_with("container=") && !l.starts_with("TERM=")).map(|l| l.replace(host, "<id>")).collect()
    };
    let host = |p: &String| p.lines().next().unwrap().to_string();
    assert_eq!(env(&ours[2], &host(&ours[1])), env(&podman[2], &host(&podman[1])));
}

#[test]
fn rm_flag_leaves_no_state_snapshot_mount_or_cgroup() {
    let forge = Forge::with_busybox();
    let child = forge.cmd().args(["run", "--rm", "--name", "gone", "busybox", "sh", "-c", "echo hi > /file; cat /file"]).stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert_eq!((o.status.code(), o.stdout.as_slice()), (Some(0), &b"hi\n"[..]));
    assert_eq!(container_dirs(&forge), Vec::<PathBuf>::new());
    assert_eq!(container_snapshots(&forge), Vec::<String>::new());
    assert_eq!(mounts_under(&forge.store()), Vec::<String>::new());
    assert_eq!(cgroups_of(pid), Vec::<PathBuf>::new());
    assert!(std::fs::read_dir(forge.store().join("forge/container-names")).unwrap().next().is_none(), "the name is still taken");
    // The name is free again.
    forge.ok(&["run", "--rm", "--name", "gone", "busybox", "true"]);
}

#[test]
fn ps_create_start_rm_and_prune() {
    let forge = Forge::with_busybox();
    let r = forge.run(&["run", "--name", "three", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(r.code, Some(3));
    // Not running: only `-a` shows it, with its code.
    assert_eq!(forge.ok(&["ps"]).stdout.lines().count(), 1, "header only");
    let table = forge.ok(&["ps", "-a"]).stdout;
    let header = table.lines().next().unwrap();
    for col in ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] {
        assert!(header.contains(col), "{header}");
    }
    let row = table.lines().nth(1).unwrap();
    assert!(row.contains("busybox") && row.contains("\"sh -c exit 3\"") && row.contains("Exited (3) ") && row.ends_with("three"), "{table}");
    let ps = ps_json(&forge);
    assert_eq!((ps[0]["State"].as_str(), ps[0]["Names"].as_str()), (Some("exited"), Some("three")));

    // create + start -a, by ID prefix.
    let id = forge.ok(&["create", "busybox", "sh", "-c", "echo started; exit 4"]).stdout.trim().to_string();
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let created = ps_json(&forge).into_iter().find(|c| id.starts_with(c["ID"].as_str().unwrap())).unwrap();
    assert_eq!((created["State"].as_str(), created["Status"].as_str()), (Some("created"), Some("Created")));
    let r = forge.run(&["start", "-a", &id[..8]]);
    assert_eq!((r.code, r.stdout.as_str()), (Some(4), "started\n"), "{}", r.stderr);
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(forge.store().join("forge/containers").join(&id).join("state.json")).unwrap()).unwrap();
    assert_eq!((state["Status"].as_str(), state["ExitCode"].as_i64(), state["OOMKilled"].as_bool()), (Some("exited"), Some(4), Some(false)));
    assert_eq!(forge.ok(&["ps", "-a", "-q"]).stdout.lines().count(), 2);

    let r = forge.run(&["rm", "no-such-container"]);
    assert!(!r.ok && r.stderr.contains("no such container: no-such-container"), "{}", r.stderr);
    forge.ok(&["rm", "three"]);
    assert_eq!(ps_json(&forge).len(), 1);
    let pruned = forge.ok(&["container", "prune", "-f"]).stdout;
    assert!(pruned.contains(&id) && pruned.contains("Total reclaimed containers: 1"), "{pruned}");
    assert_eq!(container_dirs(&forge), Vec::<PathBuf>::new());
    assert_eq!(container_snapshots(&forge), Vec::<String>::new());
}

#[test]
fn a_name_is_unique() {
    let forge = Forge::with_busybox();
    let first = forge.ok(&["create", "--name", "dup", "busybox", "true"]).stdout.trim().to_string();
    let r = forge.run(&["create", "--name", "dup", "busybox", "true"]);
    assert_eq!(r.code, Some(125));
    assert!(r.stderr.contains(&format!("the container name \"dup\" is already in use by container {first}")), "{}", r.stderr);
    let r = forge.run(&["run", "--name", "dup", "busybox", "true"]);
    assert_eq!(r.code, Some(125));
    let r = forge.run(&["create", "--name", "bad/name", "busybox", "true"]);
    assert!(r.code == Some(125) && r.stderr.contains("invalid container name"), "{}", r.stderr);
    // The failed creates left nothing.
    assert_eq!(container_dirs(&forge).len(), 1);
    assert_eq!(container_snapshots(&forge).len(), 1);
    forge.ok(&["rm", "dup"]);
    forge.ok(&["create", "--name", "dup", "busybox", "true"]);
}

#[test]
fn gc_keeps_the_layers_of_a_created_container() {
    let forge = Forge::with_busybox();
    let id = forge.ok(&["create", "busybox", "cat", "/etc/group"]).stdout.trim().to_string();
    // Nothing but the container holds the image's layers now.
    forge.ok(&["rmi", "busybox:latest"]);
    let gc = forge.ok(&["store", "gc"]).stdout;
    assert_eq!(container_snapshots(&forge).len(), 1, "{gc}");
    let r = forge.ok(&["start", "-a", &id]);
    assert!(r.stdout.starts_with("root:x:0:"), "{}", r.stdout);
    forge.ok(&["rm", &id]);
    forge.ok(&["store", "gc"]);
    let left = std::fs::read_dir(forge.store().join("forge/snapshots/meta")).unwrap().count();
    assert_eq!(left, 0, "gc kept snapshots no container holds");
}

#[test]
fn a_running_container_is_seen_by_other_commands_and_gets_the_signal() {
    let forge = Forge::with_busybox();
    let mut bg = Background::start(&forge, "sig", "trap 'echo got TERM; exit 7' TERM; echo ready; for i in $(seq 600); do sleep 0.1; done");
    let ps = forge.ok(&["ps"]).stdout;
    assert!(ps.contains(" Up ") && ps.trim_end().ends_with("sig"), "{ps}");
    let r = forge.run(&["rm", "sig"]);
    assert!(!r.ok && r.stderr.contains("is running: stop it first, or remove it with -f"), "{}", r.stderr);
    // forge run passes SIGTERM on; the container's exit code becomes forge's.
    assert!(Command::new("kill").args(["-TERM", &bg.child.id().to_string()]).status().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut bg.stdout, &mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(bg.child.wait().unwrap().code(), Some(7));
    assert_eq!(ps_json(&forge)[0]["Status"].as_str().map(|s| s.starts_with("Exited (7)")), Some(true));
}

#[test]
fn rm_force_kills_a_running_container() {
    let forge = Forge::with_busybox();
    let mut bg = Background::start(&forge, "victim", "echo ready; exec sleep 1000");
    forge.ok(&["rm", "-f", "victim"]);
    assert_eq!(bg.child.wait().unwrap().code(), Some(137));
    assert_eq!(container_dirs(&forge), Vec::<PathBuf>::new());
    assert_eq!(container_snapshots(&forge), Vec::<String>::new());
}

#[test]
fn a_container_whose_forge_was_killed_shows_as_exited_and_rm_cleans_it() {
    let forge = Forge::with_busybox();
    let marker = format!("forge-run-kill9-{}", std::process::id());
    let mut bg = Background::start(&forge, "orphan", &format!("echo ready; sleep 1000; : {marker}"));
    let pid = bg.child.id();
    let cgroups = cgroups_of(pid);
    assert!(!cgroups.is_empty(), "the container is in no forge cgroup");
    bg.child.kill().unwrap();
    bg.child.wait().unwrap();
    // Its processes die with the forge that ran them.
    assert!(eventually(|| pids_with(&marker).is_empty()), "the container outlived its forge");
    // The state still says running; the next command finds out.
    let ps = ps_json(&forge);
    assert_eq!((ps[0]["State"].as_str(), ps[0]["Status"].as_str().map(|s| s.starts_with("Exited (255)"))), (Some("exited"), Some(true)), "{ps:?}");
    let state = std::fs::read_to_string(container_dirs(&forge)[0].join("state.json")).unwrap();
    assert!(state.contains("\"Status\": \"exited\"") && state.contains("that ran it is gone"), "{state}");
    assert_eq!(cgroups.iter().filter(|d| d.exists()).count(), 0, "the killed forge's cgroup remains");
    forge.ok(&["rm", "orphan"]);
    assert_eq!(container_dirs(&forge), Vec::<PathBuf>::new());
    assert_eq!(container_snapshots(&forge), Vec::<String>::new());
    assert_eq!(mounts_under(&forge.store()), Vec::<String>::new());
}

#[test]
fn run_rm_cycles_leave_nothing_behind() {
    let forge = Forge::with_busybox();
    let mut pids = Vec::new();
    for i in 0..25 {
        let mut child = forge.cmd().args(["run", "--rm", "busybox", "sh", "-c", &format!("echo {i} > /f; test $(cat /f) = {i}")]).spawn().unwrap();
        pids.push(child.id());
        assert!(child.wait().unwrap().success(), "cycle {i}");
    }
    let store = forge.store().join("forge");
    let entries = |d: &str| std::fs::read_dir(store.join(d)).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>()).unwrap_or_default();
    for d in ["containers", "container-names", "tmp", "leases"] {
        assert_eq!(entries(d), Vec::<PathBuf>::new(), "left in {d}");
    }
    // Only the image's one layer, unpacked by the first run.
    assert_eq!(entries("snapshots/meta").len(), 1, "snapshots left");
    assert_eq!(mounts_under(&forge.store()), Vec::<String>::new());
    assert_eq!(pids.iter().flat_map(|&p| cgroups_of(p)).collect::<Vec<_>>(), Vec::<PathBuf>::new());
}

#[test]
fn a_rm_container_whose_forge_was_killed_is_removed_by_the_next_command() {
    let forge = Forge::with_busybox();
    let mut bg = Background::start_with(&forge, &["--rm"], "lost", "echo ready; exec sleep 1000");
    bg.child.kill().unwrap();
    bg.child.wait().unwrap();
    assert_eq!(container_dirs(&forge).len(), 1);
    // `ps` finds its supervisor gone, and does what it would have done.
    assert_eq!(ps_json(&forge), Vec::<serde_json::Value>::new());
    assert_eq!(container_dirs(&forge), Vec::<PathBuf>::new());
    assert_eq!(container_snapshots(&forge), Vec::<String>::new());
    forge.ok(&["run", "--rm", "--name", "lost", "busybox", "true"]);
}

/// forge ignores SIGPIPE (Rust's runtime does), and an ignored signal stays ignored across
/// exec: a container's command or a RUN step must start with no signal ignored, as under
/// docker, or `yes | head` never ends.
#[test]
fn commands_start_with_no_signal_ignored() {
    let forge = Forge::with_busybox();
    let run = forge.ok(&["run", "--rm", "--network", "none", "busybox:latest", "grep", "SigIgn", "/proc/self/status"]);
    assert_eq!(run.stdout.trim(), "SigIgn:\t0000000000000000", "{}", run.stdout);
    let ctx = forge.context("sigign", &[("Dockerfile", "FROM busybox:latest\nRUN --network=none grep SigIgn /proc/self/status > /sigign && yes | head -c 100000 | wc -c > /piped\n")]);
    let built = forge.build(&ctx, "sigign:1", &[]);
    assert!(built.ok, "{}", built.stderr);
    let rootfs = forge.rootfs("sigign:1");
    assert_eq!(std::fs::read_to_string(rootfs.join("sigign")).unwrap().trim(), "SigIgn:\t0000000000000000");
    assert_eq!(std::fs::read_to_string(rootfs.join("piped")).unwrap().trim(), "100000");
}
