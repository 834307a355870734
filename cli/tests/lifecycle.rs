//! Detached containers through the `forge` binary: `run -d` and `start` under a monitor that
//! outlives the CLI, docker's json-file log and `logs`, `stop` (and its escalation to SIGKILL),
//! `kill`, `restart`, `wait`, `inspect`, restart policies, and a killed monitor.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::modern::Modern;
use common::{cgroups_of, eventually, pids_with, processes, Forge};

/// A detached container, removed (`rm -f`) on drop, pass or fail.
struct Detached<'a> {
    forge: &'a Forge,
    id: String,
}

impl<'a> Detached<'a> {
    /// `run -d` with `flags`, then waits until its log shows `ready` (when `script` says it).
    fn run(forge: &'a Forge, flags: &[&str], script: &str) -> Detached<'a> {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "sh", "-c", script]);
        let out = forge.ok(&args).stdout;
        let id = out.trim_end().to_string();
        assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "run -d printed {out:?}, not a full ID");
        let c = Detached { forge, id };
        if script.contains("echo ready") {
            assert!(eventually(|| c.forge.ok(&["logs", &c.id]).stdout.contains("ready\n")), "the container never said ready");
        }
        c
    }

    fn dir(&self) -> PathBuf {
        self.forge.store().join("forge/containers").join(&self.id)
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir().join("state.json")).unwrap()).unwrap()
    }

    fn inspect(&self) -> serde_json::Value {
        let all: serde_json::Value = serde_json::from_str(&self.forge.ok(&["inspect", &self.id]).stdout).unwrap();
        all[0].clone()
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        let _ = self.forge.run(&["rm", "-f", &self.id]);
    }
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

/// Mounts under the store, as the host sees them.
fn mounts_under(store: &Path) -> Vec<String> {
    let store = std::fs::canonicalize(store).unwrap();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(store.to_str().unwrap()))).map(str::to_string).collect()
}

#[test]
fn a_detached_container_outlives_the_cli_and_logs_in_docker_json_file_format() {
    let forge = Forge::with_busybox();
    let c = Detached::run(&forge, &["--name", "web"], "echo oops >&2; echo ready; trap 'echo bye; exit 3' TERM; while :; do sleep 0.1; done");
    // `run -d` has returned; the container runs on, supervised by its monitor in a session of its own.
    let state = c.state();
    assert_eq!(state["Status"], "running", "{state}");
    let monitor = state["Supervisor"].as_u64().unwrap();
    assert!(alive(monitor));
    let sid = std::fs::read_to_string(format!("/proc/{monitor}/stat")).unwrap();
    let fields: Vec<&str> = sid[sid.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_eq!(fields[3], monitor.to_string(), "the monitor leads its own session");
    let ps = forge.ok(&["ps"]).stdout;
    assert!(ps.contains(&c.id[..12]) && ps.contains("Up "), "{ps}");

    // docker's json-file: one object a line with log, stream and time (the two streams are two
    // pipes: their lines may come in either order, as under docker).
    let log_path = c.dir().join(format!("{}-json.log", c.id));
    assert!(eventually(|| std::fs::read_to_string(&log_path).unwrap().lines().count() == 2));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let entries: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut lines: Vec<(&str, &str)> = entries.iter().map(|e| (e["log"].as_str().unwrap(), e["stream"].as_str().unwrap())).collect();
    lines.sort();
    assert_eq!(lines, [("oops\n", "stderr"), ("ready\n", "stdout")]);
    assert!(entries.iter().all(|e| e["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('.'))), "{log}");

    // `logs` sends each line to the stream it came from.
    let r = forge.ok(&["logs", "web"]);
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("ready\n", "oops\n"));
    let last = forge.ok(&["logs", "--tail", "1", "web"]);
    assert_eq!(format!("{}{}", last.stdout, last.stderr), entries[1]["log"].as_str().unwrap());
    let ready = entries.iter().find(|e| e["stream"] == "stdout").unwrap();
    let stamped = forge.ok(&["logs", "-t", "web"]).stdout;
    assert_eq!(stamped, format!("{} ready\n", ready["time"].as_str().unwrap()));
    assert_eq!(forge.ok(&["logs", "--since", "2100-01-01T00:00:00Z", "web"]).stdout, "");
    assert_eq!(forge.ok(&["logs", "--since", "1h", "web"]).stdout, "ready\n");

    // `stop` sends SIGTERM, which the command handles; `wait` prints its code.
    assert_eq!(forge.ok(&["stop", "web"]).stdout, "web\n");
    assert_eq!(forge.ok(&["wait", "web"]).stdout, "3\n");
    assert_eq!(forge.ok(&["logs", "web"]).stdout, "ready\nbye\n");
    assert!(eventually(|| !alive(monitor)), "the monitor stayed after its container exited");
    let inspect = c.inspect();
    assert_eq!((inspect["State"]["Status"].as_str(), inspect["State"]["ExitCode"].as_i64(), inspect["State"]["Running"].as_bool()), (Some("exited"), Some(3), Some(false)));

    // `start` runs it again under a new monitor, and prints what it was given.
    assert_eq!(forge.ok(&["start", "web"]).stdout, "web\n");
    assert!(eventually(|| forge.ok(&["logs", "web"]).stdout.matches("ready\n").count() == 2));
    assert_eq!(c.state()["Status"], "running");
    let monitor = c.state()["Supervisor"].as_u64();
    assert_eq!(forge.ok(&["start", "web"]).stdout, "web\n", "starting a running container is no error");
    assert_eq!(c.state()["Supervisor"].as_u64(), monitor, "nor a second monitor");
    assert_eq!(forge.ok(&["kill", "web"]).stdout, "web\n");
    assert_eq!(forge.ok(&["wait", "web"]).stdout, "137\n");
    let usr1 = Detached::run(&forge, &[], "trap 'echo got USR1; exit 6' USR1; echo ready; while :; do sleep 0.1; done");
    forge.ok(&["kill", "-s", "USR1", &usr1.id]);
    assert_eq!(forge.ok(&["wait", &usr1.id]).stdout, "6\n", "SIGUSR1 reached the command");
    let r = forge.run(&["kill", "web"]);
    assert_eq!(r.code, Some(1), "killing an exited container: {}", r.stderr);
    assert!(r.stderr.contains("not running") || r.stderr.contains("is exited"), "{}", r.stderr);
}

#[test]
fn logs_follow_streams_until_the_container_ends() {
    let forge = Forge::with_busybox();
    let c = Detached::run(&forge, &[], "echo ready; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done");
    let mut follow = forge.cmd().args(["logs", "-f", &c.id]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // Still following: it only ends with the container.
    assert_eq!(follow.try_wait().unwrap(), None);
    forge.ok(&["stop", &c.id]);
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "bye\n");
    assert!(follow.wait().unwrap().success());
}

#[test]
fn stop_escalates_to_sigkill_after_the_timeout_and_honours_the_stop_signal() {
    let forge = Forge::with_busybox();
    let deaf = Detached::run(&forge, &[], "trap '' TERM; echo ready; while :; do sleep 0.1; done");
    forge.ok(&["stop", "-t", "1", &deaf.id]);
    assert_eq!(forge.ok(&["wait", &deaf.id]).stdout, "137\n", "SIGKILL after the timeout");

    let hup = Detached::run(&forge, &["--stop-signal", "SIGHUP", "--stop-timeout", "30"], "trap 'echo got HUP; exit 5' HUP; echo ready; while :; do sleep 0.1; done");
    assert_eq!(hup.inspect()["Config"]["StopSignal"], "SIGHUP");
    forge.ok(&["stop", &hup.id]);
    assert_eq!(forge.ok(&["wait", &hup.id]).stdout, "5\n");
    assert_eq!(forge.ok(&["logs", &hup.id]).stdout, "ready\ngot HUP\n");

    let r = forge.run(&["run", "-d", "--stop-signal", "NOPE", "busybox", "true"]);
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    assert!(r.stderr.contains("signal"), "{}", r.stderr);
}

#[test]
fn restart_policies_restart_on_failure_up_to_n_and_stop_ends_always() {
    let forge = Forge::with_busybox();
    let failing = Detached::run(&forge, &["--restart", "on-failure:2"], "echo run; exit 4");
    // The first exit, then two restarts: `wait` returns once the monitor gives up.
    assert_eq!(forge.ok(&["wait", &failing.id]).stdout, "4\n");
    assert_eq!(forge.ok(&["logs", &failing.id]).stdout, "run\nrun\nrun\n");
    let inspect = failing.inspect();
    assert_eq!(inspect["RestartCount"], 2);
    assert_eq!(inspect["HostConfig"]["RestartPolicy"], serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 2}));

    let fine = Detached::run(&forge, &["--restart", "on-failure"], "echo run; exit 0");
    assert_eq!(forge.ok(&["wait", &fine.id]).stdout, "0\n");
    assert_eq!(fine.inspect()["RestartCount"], 0, "a clean exit is no failure");

    let always = Detached::run(&forge, &["--restart", "always"], "echo ready; sleep 0.2; exit 1");
    assert!(eventually(|| always.state()["RestartCount"].as_u64() >= Some(2)), "always did not restart");
    forge.ok(&["stop", "-t", "1", &always.id]);
    let state = always.state();
    assert_eq!(state["Status"], "exited", "{state}");
    assert_eq!(forge.ok(&["ps", "-q"]).stdout, "", "restarted after stop");

    for bad in ["sometimes", "always:3", "on-failure:x"] {
        let r = forge.run(&["run", "-d", "--restart", bad, "busybox", "true"]);
        assert_eq!(r.code, Some(125), "--restart {bad}: {}", r.stderr);
        assert!(r.stderr.contains("restart policy"), "{}", r.stderr);
    }
    let r = forge.run(&["run", "-d", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    // A detached `--rm` container is removed by its monitor when it exits.
    let id = forge.ok(&["run", "-d", "--rm", "busybox", "true"]).stdout.trim_end().to_string();
    assert!(eventually(|| !forge.store().join("forge/containers").join(&id).exists()), "a --rm container stayed");
}

#[test]
fn a_killed_monitor_leaves_an_exited_container_that_rm_cleans() {
    let forge = Forge::with_busybox();
    let marker = format!("forge-monitor-kill9-{}", std::process::id());
    let c = Detached::run(&forge, &["--name", "orphan"], &format!("echo ready; sleep 1000; : {marker}"));
    let monitor = c.state()["Supervisor"].as_u64().unwrap();
    let cgroups = cgroups_of(monitor as u32);
    assert!(!cgroups.is_empty(), "the container is in no forge cgroup");
    assert!(std::process::Command::new("kill").args(["-9", &monitor.to_string()]).status().unwrap().success());
    // The container's processes die with their monitor.
    assert!(eventually(|| pids_with(&marker).is_empty() && !alive(monitor)), "the container outlived its monitor");
    let ps = forge.ok(&["ps", "-a", "--format", "json"]).stdout;
    let row: serde_json::Value = serde_json::from_str(ps.lines().next().unwrap()).unwrap();
    assert_eq!((row["State"].as_str(), row["Status"].as_str().map(|s| s.starts_with("Exited (255)"))), (Some("exited"), Some(true)), "{row}");
    assert_eq!(cgroups.iter().filter(|d| d.exists()).count(), 0, "the killed monitor's cgroup remains");
    forge.ok(&["rm", "orphan"]);
    assert!(!c.dir().exists());
    assert_eq!(mounts_under(&forge.store()), Vec::<String>::new());
}

/// A holder of a stopped container's lock that is not its supervisor (here the test; in
/// `forge serve`, a child spawned by another thread before it executes its program) is waited
/// for, not taken for a running container; one that stays is reported as busy.
#[test]
fn a_brief_holder_of_a_stopped_containers_lock_is_waited_for() {
    let forge = Forge::with_busybox();
    let id = forge.ok(&["create", "--name", "held", "busybox", "sleep", "1000"]).stdout.trim().to_string();
    let c = Detached { forge: &forge, id };
    let hold = || {
        let file = std::fs::File::open(c.dir().join("lock")).unwrap();
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        file
    };
    let held = hold();
    let start = forge.cmd().args(["start", "held"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(c.state()["Status"], "created", "it started while its lock was held");
    drop(held);
    let out = start.wait_with_output().unwrap();
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(c.state()["Status"], "running");
    forge.ok(&["stop", "-t", "0", "held"]);
    let held = hold();
    let r = forge.run(&["rm", "held"]);
    assert!(!r.ok && r.stderr.contains("another forge command is using it; try again"), "{}", r.stderr);
    drop(held);
    forge.ok(&["rm", "held"]);
    assert!(!c.dir().exists());
}

#[test]
fn inspect_shows_a_container_in_dockers_shape_and_images_still() {
    let forge = Forge::with_busybox();
    let c = Detached::run(&forge, &["--name", "shape", "-l", "tier=web", "-e", "A=1"], "echo ready; exec sleep 1000");
    let i = c.inspect();
    assert_eq!(i["Id"], c.id.as_str());
    assert_eq!(i["Name"], "/shape");
    assert_eq!(i["State"]["Status"], "running");
    assert_eq!(i["State"]["Running"], true);
    assert_eq!(i["State"]["Pid"], c.state()["Pid"]);
    assert!(i["State"]["StartedAt"].as_str().is_some_and(|t| t.starts_with("20")));
    assert_eq!(i["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(i["Config"]["Labels"]["tier"], "web");
    assert!(i["Config"]["Env"].as_array().unwrap().contains(&"A=1".into()));
    assert_eq!(i["Config"]["Image"], "busybox");
    assert_eq!(i["Path"], "sh");
    assert_eq!(i["HostConfig"]["RestartPolicy"]["Name"], "no");
    let by_name: serde_json::Value = serde_json::from_str(&forge.ok(&["inspect", "shape"]).stdout).unwrap();
    assert_eq!(by_name[0]["Id"], c.id.as_str());
    // Images are still found when no container has the name.
    let image: serde_json::Value = serde_json::from_str(&forge.ok(&["inspect", "busybox:latest"]).stdout).unwrap();
    assert!(image[0]["RootFS"].is_object());
    assert!(forge.run(&["inspect", "nothing:here"]).stderr.contains("not found"));
}

#[test]
fn exec_joins_the_running_container_with_its_defaults_and_restrictions() {
    let forge = Forge::with_busybox();
    let status = "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs)' /proc/self/status; cat /proc/self/cgroup";
    let c = Detached::run(&forge, &["--name", "box", "--hostname", "boxhost", "-e", "FOO=bar", "-w", "/srv"], &format!("{status}; echo ready; exec sleep 1000"));
    let main_view = forge.ok(&["logs", "box"]).stdout.replace("ready\n", "");

    // The same PID namespace (the container's command is there, nothing of the host's), UTS
    // namespace, environment and working directory.
    let r = forge.ok(&["exec", "box", "sh", "-c", "ps -o pid,args; echo --; hostname; echo $FOO; pwd"]);
    let (ps, rest) = r.stdout.split_once("--\n").unwrap();
    assert!(ps.lines().any(|l| l.trim_end().ends_with("sleep 1000")), "{ps}");
    assert!(ps.lines().count() < 10, "exec sees processes beyond the container's: {ps}");
    assert_eq!(rest, "boxhost\nbar\n/srv\n");
    // The same capabilities, seccomp filter, no_new_privs and cgroups as the container's command.
    assert_eq!(forge.ok(&["exec", "box", "sh", "-c", status]).stdout, main_view);

    // -u, -w and -e override the container's.
    let r = forge.ok(&["exec", "-u", "65534", "-w", "/tmp", "-e", "FOO=baz", "box", "sh", "-c", "id -u; pwd; echo $FOO"]);
    assert_eq!(r.stdout, "65534\n/tmp\nbaz\n");
    // docker's exit codes: the command's, 127 not found, 126 not executable.
    assert_eq!(forge.run(&["exec", "box", "sh", "-c", "exit 7"]).code, Some(7));
    let r = forge.run(&["exec", "box", "no-such-command"]);
    assert_eq!(r.code, Some(127), "{}", r.stderr);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
    assert_eq!(forge.run(&["exec", "box", "/etc/passwd"]).code, Some(126));
    // What exec started is gone with it; the container runs on.
    assert_eq!(c.state()["Status"], "running");
    let ps = forge.ok(&["exec", "box", "ps", "-o", "args"]).stdout;
    assert!(!ps.contains("no-such") && !ps.contains("sh -c"), "{ps}");

    // -i: forge's input is the command's; -t: a terminal.
    let with_input = |args: &[&str], input: &[u8]| {
        let mut child = forge.cmd().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(with_input(&["exec", "-i", "box", "cat"], b"piped\n"), (Some(0), "piped\n".into()));
    assert_eq!(with_input(&["exec", "box", "cat"], b"ignored\n"), (Some(0), String::new()));
    let (code, out) = with_input(&["exec", "-it", "box", "sh"], b"test -t 0 && echo $((6*7))\nexit 5\n");
    assert_eq!(code, Some(5));
    assert!(out.contains("\r\n42\r\n"), "{out:?}");

    forge.ok(&["stop", "-t", "1", "box"]);
    let r = forge.run(&["exec", "box", "true"]);
    assert_eq!(r.code, Some(1), "exec into a stopped container: {}", r.stderr);
    assert!(r.stderr.contains("running"), "{}", r.stderr);
}

/// The end of a container kills what exec started in it, and exec then exits as podman's does
/// (137, its command's SIGKILL), not with an error about forge's init.
#[test]
fn an_exec_ended_by_its_containers_end_exits_137() {
    let forge = Forge::with_busybox();
    let c = Detached::run(&forge, &[], "echo ready; while [ ! -e /go ]; do sleep 0.1; done");
    let r = forge.run(&["exec", &c.id, "sh", "-c", "touch /go; exec sleep 60"]);
    assert_eq!(r.code, Some(137), "{}", r.stderr);
    assert!(eventually(|| c.state()["Status"] == "exited"), "{}", c.state());
}

/// The parent of the host process whose command line is `argv`, if one runs.
fn parent_of(argv: &[&str]) -> Option<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    processes(|c| c == want).into_iter().find_map(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()
    })
}

/// An exec whose init dies of anything but SIGKILL before it reports fails and says how,
/// rather than giving its command a status it never had. SIGALRM: not forwarded to the
/// command, and fatal by default (forge's SIGSEGV, which Rust's runtime handles to detect stack
/// overflows, survives a first one sent by `kill`).
#[test]
fn an_exec_whose_init_dies_fails_with_the_cause() {
    let forge = Forge::with_busybox();
    let c = Detached::run(&forge, &[], "echo ready; exec sleep 1000");
    // The command outlives its init, so it must not hold exec's output open.
    let exec = forge.cmd().args(["exec", &c.id, "sh", "-c", "exec sleep 4242 >/dev/null 2>&1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // The init's second stage, which waits for the command to report its end.
    let mut stage2 = None;
    assert!(eventually(|| {
        stage2 = parent_of(&["sleep", "4242"]);
        stage2.is_some()
    }));
    let pid = rustix::process::Pid::from_raw(stage2.unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::ALARM).unwrap();
    let out = exec.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the sandbox init died without reporting a status (its second stage was killed by SIGALRM)"), "{stderr}");
    assert_eq!(c.state()["Status"], "running", "an exec's end leaves its container running");
}

/// A podman container, removed on drop.
struct Podman(String);

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.0]).output();
    }
}

fn podman() -> std::process::Command {
    let mut c = std::process::Command::new("podman");
    c.env("CONTAINERS_CONF", Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/podman/containers.conf"));
    c
}

#[test]
fn exec_sees_what_podman_exec_sees() {
    let forge = Forge::with_busybox();
    let name = format!("forge-exec-{}", std::process::id());
    let c = Detached::run(&forge, &["--hostname", "same"], "echo ready; exec sleep 1000");
    let started = podman()
        .args(["run", "-d", "--network", "none", "--hostname", "same", "--name", &name])
        .arg(format!("oci:{}:busybox:latest", forge.store().display()))
        .args(["sleep", "1000"])
        .output()
        .unwrap();
    let _guard = Podman(name.clone());
    assert!(started.status.success(), "podman run: {}", String::from_utf8_lossy(&started.stderr));
    let script = "id; echo --; hostname; echo --; ps -o args | grep -c '^sleep 1000'; echo --; pwd";
    for user in ["0", "65534"] {
        let ours = forge.ok(&["exec", "-u", user, &c.id, "sh", "-c", script]).stdout;
        let theirs = podman().args(["exec", "-u", user, &name, "sh", "-c", script]).output().unwrap();
        assert!(theirs.status.success(), "podman exec: {}", String::from_utf8_lossy(&theirs.stderr));
        let theirs = String::from_utf8_lossy(&theirs.stdout).into_owned();
        let parts = |out: &str| out.split("--\n").map(str::to_string).collect::<Vec<_>>();
        let (ours, theirs) = (parts(&ours), parts(&theirs));
        // `id`: podman 4.3 leaves the primary group out of groups=, docker (and forge) list it.
        let id = |text: &str| -> (String, String, std::collections::BTreeSet<String>) {
            let field = |k: &str| text.trim_end().split(' ').find_map(|f| f.strip_prefix(k)).unwrap_or("").to_string();
            (field("uid="), field("gid="), field("groups=").split(',').filter(|g| !g.is_empty()).map(str::to_string).collect())
        };
        let (ours_id, mut theirs_id) = (id(&ours[0]), id(&theirs[0]));
        theirs_id.2.insert(theirs_id.1.clone());
        assert_eq!(ours_id, theirs_id, "-u {user}: {} / {}", ours[0], theirs[0]);
        assert_eq!(ours[1..], theirs[1..], "-u {user}: hostname, the container's command in view, working directory");
    }
}

#[test]
fn logs_of_a_foreground_container_and_init_reaps_orphans() {
    let forge = Forge::with_busybox();
    // `--init`: forge's own init is PID 1 of every container, forwarding signals and reaping
    // the orphans the command leaves (here: a background job whose parent exits at once).
    let script = "sh -c 'sleep 0.2 & exit 0'; sleep 0.5; echo zombies: $(grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null | wc -l); printf 'no newline'";
    let r = forge.ok(&["run", "--init", "--name", "fg", "busybox", "sh", "-c", script]);
    assert_eq!(r.stdout, "zombies: 0\nno newline");
    assert_eq!(forge.ok(&["logs", "fg"]).stdout, r.stdout, "a foreground container's output is logged too");
    forge.ok(&["rm", "fg"]);
}

#[test]
fn attach_streams_passes_signals_on_and_exits_with_the_code() {
    let forge = Forge::with_busybox();
    let c = Detached::run(&forge, &[], "trap 'echo bye; exit 9' TERM; echo ready; while :; do echo tick; sleep 0.1; done");
    let mut attach = forge.cmd().args(["attach", &c.id]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(attach.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // Only what comes after attaching: the `ready` from before is not repeated.
    assert_eq!(line, "tick\n");
    // Attached: forge's SIGTERM goes to the container.
    assert!(std::process::Command::new("kill").args(["-TERM", &attach.id().to_string()]).status().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.ends_with("bye\n") && rest.trim_end_matches("bye\n").lines().all(|l| l == "tick"), "{rest:?}");
    assert_eq!(attach.wait().unwrap().code(), Some(9));
    let r = forge.run(&["attach", &c.id]);
    assert_eq!(r.code, Some(1), "attaching to an exited container: {}", r.stderr);
}

#[test]
fn interactive_keeps_stdin_open() {
    let forge = Forge::with_busybox();
    let with_input = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut child = forge.cmd().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // `-i`: forge's input reaches the command, and its end ends it.
    assert_eq!(with_input(&["run", "-i", "--rm", "busybox", "sh"], "echo from-input\nexit 4\n"), (Some(4), "from-input\n".into()));
    // Without: /dev/null, as docker's.
    assert_eq!(with_input(&["run", "--rm", "busybox", "cat"], "ignored\n"), (Some(0), String::new()));
    // `run -di IMAGE sh`: a shell whose input stays open runs on, for `exec`.
    let c = Detached::run(&forge, &["-i"], "echo ready; exec cat");
    assert_eq!(c.inspect()["Config"]["OpenStdin"], true);
    assert_eq!(c.state()["Status"], "running", "cat got end of file");
    assert_eq!(forge.ok(&["exec", &c.id, "echo", "inside"]).stdout, "inside\n");
    forge.ok(&["stop", &c.id]);
    assert_eq!(forge.ok(&["wait", &c.id]).stdout, "143\n");
}

#[test]
fn attached_clients_feed_a_detached_interactive_container_in_turn() {
    let forge = Forge::with_busybox();
    // `forge attach ID` fed `input`, which then ends.
    let attach = |id: &str, input: &str| {
        use std::io::Write;
        let mut child = forge.cmd().args(["attach", id]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child
    };
    // `run -di` (docker's StdinOnce off): a client's end of input is not the command's, and the
    // next client's input follows; each attach waits for the container to stop, as docker's.
    let c = Detached::run(&forge, &["-i"], "echo ready; while read l && [ \"$l\" != end ]; do echo seen-$l; done; echo closed");
    let logs = |id: &str| forge.ok(&["logs", id]).stdout;
    let mut first = attach(&c.id, "one\n");
    assert!(eventually(|| logs(&c.id) == "ready\nseen-one\n"), "{}", logs(&c.id));
    assert_eq!(c.state()["Status"], "running", "the first client's end of input ended the command's");
    let mut second = attach(&c.id, "two\nend\n");
    for child in [&mut second, &mut first] {
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
    assert_eq!(logs(&c.id), "ready\nseen-one\nseen-two\nclosed\n");
    // `create -i` (StdinOnce on): the first client's end of input is the command's.
    let once = forge.ok(&["create", "-i", "busybox", "sh", "-c", "cat; echo closed"]).stdout.trim().to_string();
    let _once = Detached { forge: &forge, id: once.clone() };
    forge.ok(&["start", &once]);
    assert_eq!(attach(&once, "x\n").wait().unwrap().code(), Some(0));
    assert_eq!(logs(&once), "x\nclosed\n");
}

#[test]
fn run_d_and_start_fail_with_dockers_codes_when_the_command_cannot_run() {
    let forge = Forge::with_busybox();
    let r = forge.run(&["run", "-d", "--name", "nope", "busybox", "no-such-command"]);
    assert_eq!(r.code, Some(127), "{}", r.stderr);
    assert!(r.stderr.contains("not found") && r.stdout.is_empty(), "{} / {}", r.stdout, r.stderr);
    let r = forge.run(&["start", "nope"]);
    assert_eq!(r.code, Some(127), "{}", r.stderr);
    let r = forge.run(&["run", "-d", "busybox", "/etc/passwd"]);
    assert_eq!(r.code, Some(126), "{}", r.stderr);
    let ps = forge.ok(&["ps", "-a", "--format", "json"]).stdout;
    assert_eq!(ps.lines().filter(|l| l.contains("Exited (127)") || l.contains("Exited (126)")).count(), 2, "{ps}");
    forge.ok(&["container", "prune"]);
}

#[test]
fn tty_gives_the_command_a_terminal() {
    let forge = Forge::with_busybox();
    // Its streams are one terminal (docker's default 24x80 when forge's input is none), its
    // output all on stdout through the terminal's line discipline.
    let r = forge.ok(&["run", "-t", "--rm", "busybox", "sh", "-c", "test -t 0 && test -t 1 && test -t 2 && echo tty; stty size; echo err >&2"]);
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("tty\r\n24 80\r\nerr\r\n", ""));
    assert_eq!(forge.ok(&["run", "--rm", "busybox", "sh", "-c", "test -t 1 || echo none"]).stdout, "none\n");
    // `-it`: forge's input is the terminal's; the shell's exit code is forge's.
    let mut child = forge.cmd().args(["run", "-it", "--rm", "busybox", "sh"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"echo $((6*7))\nexit 3\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\r\n42\r\n"), "{:?}", String::from_utf8_lossy(&out.stdout));
    // Detached, its monitor holds the terminal and logs what it shows.
    let c = Detached::run(&forge, &["-t"], "test -t 1 && echo tty");
    assert_eq!(forge.ok(&["wait", &c.id]).stdout, "0\n");
    assert_eq!(forge.ok(&["logs", &c.id]).stdout, "tty\r\n");
    assert_eq!(c.inspect()["Config"]["Tty"], true);
}

/// `forge run -it` in a terminal (python3's pty module) that is resized while it runs: the
/// container's terminal follows (forge passes SIGWINCH on, as the docker CLI does).
#[test]
fn a_resized_terminal_resizes_the_containers() {
    let forge = Forge::with_busybox();
    let script = r#"
import fcntl, os, pty, select, struct, sys, termios, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "--root", sys.argv[2], "run", "-it", "--rm", "--network", "none", "busybox", "sh", "-c", "stty size; while read x; do stty size; done"])
def resize(rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
resize(30, 100)
seen, resized, deadline = b"", False, time.time() + 20
while time.time() < deadline:
    if select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    if b"30 100" in seen and not resized:
        resize(45, 120)
        resized = True
    if resized:
        if b"45 120" in seen:
            break
        os.write(fd, b"\n")
os.write(fd, b"\x04")
os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
"#;
    let out = std::process::Command::new("python3").args(["-c", script, env!("CARGO_BIN_EXE_forge"), forge.store().to_str().unwrap()]).output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(seen.contains("30 100"), "the terminal's size at the start: {seen:?} {}", String::from_utf8_lossy(&out.stderr));
    assert!(seen.contains("45 120"), "the size after the resize: {seen:?} {}", String::from_utf8_lossy(&out.stderr));
}

/// A docker object of this run, removed on drop (the daemon is shared).
struct DockerObject<'a> {
    modern: &'a Modern,
    kind: &'static str,
    name: String,
}

impl Drop for DockerObject<'_> {
    fn drop(&mut self) {
        let _ = self.modern.cmd().args([self.kind, "-f", &self.name]).output();
    }
}

/// forge's busybox in both stores, under a tag of this run only (the daemon is shared); the
/// docker side goes on drop.
fn busybox_in_docker<'a>(forge: &Forge, modern: &'a Modern, what: &str) -> (String, DockerObject<'a>) {
    let tag = format!("forge-{what}-{}:1", std::process::id());
    forge.ok(&["tag", "busybox:latest", &tag]);
    let saved = forge.dir.path().join(format!("{what}.tar"));
    forge.ok(&["save", "-o", saved.to_str().unwrap(), &tag]);
    modern.ok(&["load", "-i", saved.to_str().unwrap()]);
    let image = DockerObject { modern, kind: "rmi", name: tag.clone() };
    (tag, image)
}

#[test]
fn stop_signals_logs_wait_and_init_match_docker_28() {
    let Some(anchors) = forge_testkit::shared_data("anchors") else { return };
    let forge = Forge::with_busybox();
    let modern = Modern::start(&anchors);
    let (tag, _image) = busybox_in_docker(&forge, &modern, "lifecycle");

    let spin = "echo ready; while :; do sleep 0.1; done";
    let cases: [(&str, &[&str], String, &[&str]); 4] = [
        ("a handled SIGTERM", &[], format!("trap 'echo got TERM; exit 7' TERM; {spin}"), &[]),
        ("an ignored SIGTERM, then SIGKILL", &[], format!("trap '' TERM; {spin}"), &["-t", "1"]),
        ("--stop-signal", &["--stop-signal", "SIGHUP"], format!("trap 'echo got HUP; exit 5' HUP; {spin}"), &[]),
        // docker's --init (tini) reaps the orphan and passes SIGTERM to the shell, which dies of it.
        ("--init", &["--init"], format!("sh -c 'sleep 0.2 & exit 0'; sleep 0.5; echo zombies: $(grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null | wc -l); {spin}"), &[]),
    ];
    for (what, flags, script, stop) in &cases {
        let c = Detached::run(&forge, flags, script);
        let name = format!("forge-lifecycle-{}-{}", std::process::id(), what.len());
        let mut run = vec!["run", "-d", "--network", "none", "--name", &name];
        run.extend_from_slice(flags);
        run.extend_from_slice(&[&tag, "sh", "-c", script]);
        modern.ok(&run);
        let _container = DockerObject { modern: &modern, kind: "rm", name: name.clone() };
        assert!(eventually(|| modern.ok(&["logs", &name]).contains("ready\n")), "{what}: docker's container never said ready");

        let mut ours_stop = vec!["stop"];
        ours_stop.extend_from_slice(stop);
        ours_stop.push(&c.id);
        forge.ok(&ours_stop);
        let mut docker_stop = vec!["stop"];
        docker_stop.extend_from_slice(stop);
        docker_stop.push(&name);
        modern.ok(&docker_stop);

        let ours = (forge.ok(&["wait", &c.id]).stdout, forge.ok(&["logs", &c.id]).stdout);
        let docker = (modern.ok(&["wait", &name]), modern.ok(&["logs", &name]));
        assert_eq!(ours, docker, "{what}: (exit code, log) differ from docker's");

        // inspect: docker's State keys, with the same values where both have them.
        let docker_state = serde_json::from_str::<serde_json::Value>(&modern.ok(&["inspect", &name])).unwrap()[0]["State"].clone();
        let ours_state = c.inspect()["State"].clone();
        for (key, value) in ours_state.as_object().unwrap() {
            assert!(docker_state.get(key).is_some(), "{what}: docker's State has no {key}");
            if ["Status", "Running", "Paused", "OOMKilled", "Dead", "Pid", "ExitCode"].contains(&key.as_str()) {
                assert_eq!(value, &docker_state[key], "{what}: State.{key}");
            }
        }
    }
}

/// What a container sees, side by side with `docker run` on Docker 28.5 and the same image:
/// `id` (docker lists the primary group under `groups=`), the hostname (the ID's first 12 hex
/// digits, in `/etc/hostname` too), the environment, the capability sets, and the shape of the
/// mount list (every mount point forge makes, docker makes too).
#[test]
fn a_container_sees_what_docker_28_shows() {
    let Some(anchors) = forge_testkit::shared_data("anchors") else { return };
    let forge = Forge::with_busybox();
    let modern = Modern::start(&anchors);
    let (tag, _image) = busybox_in_docker(&forge, &modern, "sees");

    let script = "id; echo --; hostname; cat /etc/hostname; echo --; env | sort; echo --; grep ^Cap /proc/self/status; echo --; cut -d' ' -f2 /proc/self/mounts | sort -u";
    let ours = forge.ok(&["run", "--rm", "--network", "none", &tag, "sh", "-c", script]).stdout;
    let docker = modern.ok(&["run", "--rm", "--network", "none", &tag, "sh", "-c", script]);
    let parts = |out: &str| out.split("--\n").map(|p| p.trim_end().to_string()).collect::<Vec<_>>();
    let (ours, docker) = (parts(&ours), parts(&docker));
    assert_eq!(ours.len(), 5, "{ours:?}");
    assert_eq!(ours[0], docker[0], "id");
    let host = |p: &str| {
        let (name, file) = p.split_once('\n').unwrap();
        assert!(name.len() == 12 && name.bytes().all(|b| b.is_ascii_hexdigit()), "{p:?}");
        assert_eq!(file.trim_end(), name);
        name.to_string()
    };
    let (our_host, docker_host) = (host(&ours[1]), host(&docker[1]));
    assert_eq!(ours[2].replace(&our_host, "<id>"), docker[2].replace(&docker_host, "<id>"), "environment");
    assert_eq!(ours[3], docker[3], "capabilities");
    let docker_mounts: std::collections::BTreeSet<&str> = docker[4].lines().collect();
    let extra: Vec<&str> = ours[4].lines().filter(|m| !docker_mounts.contains(m)).collect();
    assert!(extra.is_empty(), "forge mounts what docker does not: {extra:?}\nforge: {}\ndocker: {}", ours[4], docker[4]);
    for m in ["/", "/proc", "/dev", "/sys", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"] {
        assert!(ours[4].lines().any(|l| l == m), "forge lacks the mount {m}: {}", ours[4]);
    }
}
