//! What a step can see and do: its own PIDs, hostname, mounts, network, user, capabilities.

mod common;

use common::{run_collect, Step};
use forge_sandbox::{ExitStatus, Network};

#[test]
fn exit_codes_and_output_come_back_exactly() {
    let step = Step::new();
    for (script, want) in [("true", ExitStatus::Exited(0)), ("exit 3", ExitStatus::Exited(3)), ("exit 255", ExitStatus::Exited(255)), ("kill -9 $$", ExitStatus::Signaled(9))] {
        let (outcome, _) = run_collect(&step.spec(script));
        assert_eq!(outcome.unwrap().status, want, "{script}");
    }
    // Each stream keeps its order (the two are separate pipes, as in Docker).
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let outcome = forge_sandbox::run(&step.spec("echo one; echo two >&2; echo three"), &forge_sandbox::Cancel::new(), &mut |s, line| {
        let text = String::from_utf8_lossy(line);
        match s {
            forge_sandbox::Stream::Stdout => stdout.push_str(&text),
            forge_sandbox::Stream::Stderr => stderr.push_str(&text),
        }
    });
    assert!(outcome.unwrap().status.success());
    assert_eq!((stdout.as_str(), stderr.as_str()), ("one\nthree\n", "two\n"));
}

#[test]
fn a_step_sees_only_its_own_processes_hostname_and_mounts() {
    let step = Step::new();
    let mut spec = step.spec("ps -o pid,comm | tail -n +2; echo host=$(hostname); cat /proc/mounts; ls /proc | grep -c '^[0-9]'");
    spec.hostname = "sandboxed".into();
    let (outcome, out) = run_collect(&spec);
    assert!(outcome.unwrap().status.success(), "{out}");
    assert!(out.contains("host=sandboxed"), "{out}");
    // PID 1 is the sandbox's init; the shell and ps are the only others.
    let pids: Vec<u32> = out.lines().take_while(|l| !l.starts_with("host=")).filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    assert!(pids.contains(&1) && pids.len() <= 4, "{out}");
    // Mount points are the sandbox's own; only the root overlay's options name host dirs (as in
    // Docker, whose /proc/mounts shows the same).
    let mounts: Vec<&str> = out.lines().filter(|l| l.split(' ').count() == 6).collect();
    assert!(mounts.iter().any(|l| l.split(' ').nth(1) == Some("/") && l.contains(" overlay ")), "{out}");
    let host = step.dir.path().to_string_lossy().to_string();
    for l in &mounts {
        let point = l.split(' ').nth(1).unwrap();
        assert!(!point.contains(&host) && !point.starts_with("/tmp/") && !point.starts_with("/work"), "host mount visible: {l}");
        assert!(point == "/" || !l.contains(&host), "host path in a non-root mount: {l}");
    }
}

#[test]
fn network_none_has_only_loopback_and_host_sees_the_host() {
    let step = Step::new();
    let (outcome, out) = run_collect(&step.spec("ls /sys/class/net; ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-ok"));
    assert!(outcome.unwrap().status.success(), "{out}");
    assert_eq!(out, "lo\nlo-ok\n");
    let mut spec = step.spec("ls /sys/class/net");
    spec.network = Network::Host;
    // Other tests (and forges) on this host add and remove links meanwhile: the step sees every
    // link there both before and after it.
    let host = || std::fs::read_dir("/sys/class/net").unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect::<std::collections::BTreeSet<_>>();
    let before = host();
    let (outcome, out) = run_collect(&spec);
    let after = host();
    assert!(outcome.unwrap().status.success(), "{out}");
    let seen: std::collections::BTreeSet<String> = out.lines().map(str::to_string).collect();
    assert!(before.intersection(&after).all(|l| seen.contains(l)), "the host's links {before:?} / {after:?}, the step saw {seen:?}");
    assert!(before.intersection(&after).any(|l| l != "lo"), "no link but loopback on the host to look for: {before:?}");
}

#[test]
fn users_env_and_cwd() {
    let step = Step::new();
    // As `id` prints them in a Docker 28.5 RUN step: the primary group is always among the
    // groups, and `user:group` gives exactly that group. No HOSTNAME variable either.
    for (user, want) in [
        ("", "uid=0(root) gid=0(root) groups=0(root)"),
        ("app", "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)"),
        ("1000:50", "uid=1000(app) gid=50(staff) groups=50(staff)"),
        ("nobody", "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"),
        ("4242", "uid=4242 gid=0(root) groups=0(root)"),
    ] {
        let mut spec = step.spec("id; env | grep ^HOSTNAME= || echo no HOSTNAME");
        spec.user = user.into();
        let (outcome, out) = run_collect(&spec);
        assert!(outcome.unwrap().status.success(), "{user}: {out}");
        assert_eq!(out.trim(), format!("{want}\nno HOSTNAME"), "{user}");
    }
    let mut spec = step.spec("pwd; echo $GREETING; echo $HOME");
    spec.cwd = "/work/dir".into();
    spec.env = vec!["GREETING=hello there".into()];
    spec.user = "app".into();
    let (outcome, out) = run_collect(&spec);
    assert!(outcome.unwrap().status.success(), "{out}");
    assert_eq!(out, "/work/dir\nhello there\n/home/app\n");
    let mut spec = step.spec("true");
    spec.user = "ghost".into();
    let err = run_collect(&spec).0.unwrap_err();
    assert!(err.to_string().contains("unable to find user ghost"), "{err}");
}

#[test]
fn capabilities_are_dockers_and_escapes_fail() {
    let step = Step::new();
    let script = "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; \
                  mount -o remount,rw /sys 2>/dev/null && echo remount-worked; \
                  { echo x > /proc/sysrq-trigger; } 2>/dev/null && echo sysrq-worked; \
                  echo kcore-bytes=$(cat /proc/kcore 2>/dev/null | head -c1 | wc -c); true";
    let (outcome, out) = run_collect(&step.spec(script));
    assert!(outcome.unwrap().status.success(), "{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(!out.contains("remount-worked") && !out.contains("sysrq-worked"), "{out}");
    assert!(out.contains("kcore-bytes=0"), "kcore is readable: {out}");
}

#[test]
fn seccomp_is_dockers_default_and_off_only_when_asked() {
    let step = Step::new();
    let script = "grep '^Seccomp:' /proc/self/status; unshare -U true 2>&1; echo x > /dev/null && echo ok";
    let (outcome, out) = run_collect(&step.spec(script));
    assert!(outcome.unwrap().status.success(), "{out}");
    assert_eq!(out, "Seccomp:\t2\nunshare: unshare(0x10000000): Operation not permitted\nok\n");
    let mut spec = step.spec(script);
    spec.seccomp = forge_sandbox::Seccomp::Unconfined;
    let (outcome, out) = run_collect(&spec);
    assert!(outcome.unwrap().status.success(), "{out}");
    assert_eq!(out, "Seccomp:\t0\nok\n");
}

#[test]
fn host_network_steps_lose_cap_net_raw() {
    let step = Step::new();
    let mut spec = step.spec("grep CapEff /proc/self/status");
    spec.network = Network::Host;
    let (outcome, out) = run_collect(&spec);
    assert!(outcome.unwrap().status.success(), "{out}");
    assert_eq!(out, "CapEff:\t00000000a80405fb\n");
}

#[test]
fn writes_land_in_the_upperdir_and_etc_files_do_not() {
    let step = Step::new();
    let (outcome, out) = run_collect(&step.spec("echo data > /made; test -e /etc/hostname || echo no /etc/hostname; cat /etc/hosts; rm /etc/nsswitch.conf"));
    assert!(outcome.unwrap().status.success(), "{out}");
    // What a Docker 28.5 RUN step finds.
    assert_eq!(out, "no /etc/hostname\n127.0.0.1\tlocalhost forge\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let upper = step.upper();
    assert_eq!(std::fs::read_to_string(upper.join("made")).unwrap(), "data\n");
    let mut names: Vec<String> = walk(&upper);
    names.sort();
    // The deletion is a whiteout in the copied-up /etc; no hosts, resolv.conf or hostname.
    assert_eq!(names, ["etc", "etc/nsswitch.conf", "made"], "upperdir: {names:?}");
    assert!(!upper.join("proc").exists() && !upper.join("etc/hosts").exists());
}

#[test]
fn a_noop_step_leaves_an_empty_upperdir_even_without_mountpoints_in_the_image() {
    let step = Step::new();
    for d in ["proc", "sys", "dev"] {
        std::fs::remove_dir(step.lower().join(d)).unwrap();
    }
    let mut spec = step.spec("true");
    spec.mounts.push(forge_sandbox::Mount { target: "/cache/deep".into(), kind: forge_sandbox::MountKind::Tmpfs { size: None } });
    let (outcome, out) = run_collect(&spec);
    assert!(outcome.unwrap().status.success(), "{out}");
    assert_eq!(walk(&step.upper()), Vec::<String>::new());
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    fn go(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                go(base, &p, out);
            }
        }
    }
    go(dir, dir, &mut out);
    out
}

#[test]
fn exec_failures_are_typed_and_raw_output_is_unchanged() {
    let step = Step::new();
    for (argv0, not_found) in [("no-such-program", true), ("/no/such/file", true), ("/etc/passwd", false), ("/etc", false)] {
        let mut spec = step.spec("true");
        spec.argv = vec![argv0.into()];
        match run_collect(&spec).0 {
            Err(forge_sandbox::Error::Exec { not_found: got, message }) => assert_eq!(got, not_found, "{argv0}: {message}"),
            other => panic!("{argv0}: {other:?}"),
        }
    }
    // Raw: bytes as they come, with no line framing; and Started comes first, with the init's pid.
    let mut spec = step.spec("printf 'a'; sleep 0.2; printf 'b\\nc'");
    spec.output = forge_sandbox::Output::Raw;
    let (mut pid, mut chunks) = (None, Vec::new());
    let outcome = forge_sandbox::run_observed(&spec, &forge_sandbox::Cancel::new(), &mut |event| match event {
        forge_sandbox::Event::Started { pid: p } => {
            // Out of the caller's process group, so a terminal's Ctrl-C does not reach it directly.
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
            let pgrp: i32 = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(2).unwrap().parse().unwrap();
            assert_ne!(pgrp, nix::unistd::getpgrp().as_raw());
            pid = Some(p);
        }
        forge_sandbox::Event::Output(_, bytes) => {
            assert!(pid.is_some(), "output before Started");
            chunks.push(bytes.to_vec());
        }
        _ => {}
    });
    assert!(outcome.unwrap().status.success());
    assert_eq!(chunks.concat(), b"ab\nc");
}

#[test]
fn what_the_namespaces_observer_adds_to_them_is_there_when_the_command_starts() {
    let step = Step::new();
    // Its first instruction lists the interfaces (and /sys, mounted in the new namespace, shows
    // that namespace's).
    let spec = step.spec("ls /sys/class/net");
    let mut added = None;
    let (mut out, mut executed_after, mut started_after) = (String::new(), false, false);
    let outcome = forge_sandbox::run_observed(&spec, &forge_sandbox::Cancel::new(), &mut |event| match event {
        forge_sandbox::Event::Namespaces { pid } => {
            let ns = |p: &str| std::fs::read_link(p).unwrap();
            assert_ne!(ns(&format!("/proc/{pid}/ns/net")), ns("/proc/self/ns/net"), "reported before the init was in its network namespace");
            // A veth pair in the step's namespace, as a `network connect` adds an interface.
            let r = std::process::Command::new("nsenter").arg(format!("--net=/proc/{pid}/ns/net")).args(["ip", "link", "add", "fgstart0", "type", "veth", "peer", "name", "fgstart1"]).output().unwrap();
            added = Some(r.status.success());
        }
        forge_sandbox::Event::Started { .. } => started_after = added.is_some(),
        forge_sandbox::Event::Executed => executed_after = added.is_some(),
        forge_sandbox::Event::Output(_, bytes) => out.push_str(&String::from_utf8_lossy(bytes)),
        _ => {}
    });
    assert!(outcome.unwrap().status.success(), "{out}");
    assert_eq!(added, Some(true));
    assert!(executed_after && started_after, "the command was executed, or Started reported, before Namespaces");
    // The pair went with the namespace.
    assert_eq!(out, "fgstart0\nfgstart1\nlo\n");
}

#[test]
fn the_callers_blocked_signals_do_not_reach_the_command() {
    let step = Step::new();
    // A caller waiting for signals in a thread blocks them in all its threads (forge run does).
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGTERM);
    let t = std::thread::spawn(move || {
        set.thread_block().unwrap();
        run_collect(&step.spec("grep SigBlk /proc/self/status"))
    });
    let (outcome, out) = t.join().unwrap();
    assert!(outcome.unwrap().status.success());
    assert_eq!(out.trim(), "SigBlk:\t0000000000000000");
}
