//! Containers through `forge serve`, driven by the real docker CLIs: `run` (attached, `--rm`,
//! `-d`), `logs -f`, `exec`, `stop`, `wait`, `pause`/`unpause`, `stats`, `top`, `kill -s`, `cp`,
//! and docker-py; and containers that outlive a restarted server.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::server::Server;
use common::{eventually, Forge};

/// Names of the store's containers, as forge's own CLI lists them.
fn forge_names(forge: &Forge) -> Vec<String> {
    let listed = forge.ok(&["ps", "-a", "--format", "json"]).stdout;
    listed.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["Names"].as_str().unwrap().to_string()).collect()
}

#[test]
fn docker_run_rm_prints_the_output_and_exits_with_the_commands_code() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);

    let r = server.ok(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(r.stdout, "out\n");
    assert_eq!(r.stderr, "err\n");
    assert!(forge_names(&forge).is_empty(), "--rm left a container: {:?}", forge_names(&forge));

    let three = server.docker(&["run", "--rm", "--name", "three", "busybox", "sh", "-c", "echo bye; exit 3"]);
    assert_eq!((three.code, three.stdout.as_str()), (Some(3), "bye\n"), "{}", three.stderr);
    // Without --rm the container stays, exited with its code.
    let kept = server.docker(&["run", "--name", "kept", "busybox", "sh", "-c", "exit 4"]);
    assert_eq!(kept.code, Some(4), "{}", kept.stderr);
    assert_eq!(server.ok(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "kept"]).stdout.trim(), "exited 4");

    let missing = server.docker(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(missing.code, Some(127), "{}", missing.stderr);
    assert!(missing.stderr.contains("no-such-command"), "{}", missing.stderr);
    let not_exec = server.docker(&["run", "--rm", "busybox", "/etc"]);
    assert_eq!(not_exec.code, Some(126), "{}", not_exec.stderr);
    let refused = server.docker(&["run", "--rm", "--cap-add", "NET_ADMIN", "busybox", "true"]);
    assert_eq!(refused.code, Some(125), "{}", refused.stderr);
    assert!(refused.stderr.contains("CapAdd"), "{}", refused.stderr);
    assert_eq!(forge_names(&forge), ["kept"], "failed --rm runs left containers");
}

#[test]
fn docker_run_d_logs_follow_exec_top_stats_pause_kill_stop_wait_rm() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);

    let script = "trap 'echo got-usr1' USR1; echo started; while true; do sleep 0.2; done";
    let id = server.ok(&["run", "-d", "--name", "ticker", "busybox", "sh", "-c", script]).stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    assert!(eventually(|| server.docker(&["logs", "ticker"]).stdout == "started\n"));
    assert_eq!(server.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]).stdout.trim(), "ticker Up");

    // logs -f runs until the container stops, showing what comes meanwhile.
    let mut follow = server.docker_cmd(&["logs", "-f", "ticker"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut followed = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    followed.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");

    let exec = server.ok(&["exec", "ticker", "sh", "-c", "echo in-$HOSTNAME; cat /proc/1/cmdline | tr '\\0' ' '"]);
    assert!(exec.stdout.starts_with("in-"), "{}", exec.stdout);
    let code = server.docker(&["exec", "ticker", "sh", "-c", "exit 7"]);
    assert_eq!(code.code, Some(7), "{}", code.stderr);

    let top = server.ok(&["top", "ticker"]);
    let mut rows = top.stdout.lines();
    assert!(rows.next().unwrap().contains("PID"), "{}", top.stdout);
    assert!(rows.any(|r| r.contains("while true")), "{}", top.stdout);
    let top = server.ok(&["top", "ticker", "-o", "pid,comm"]);
    assert!(top.stdout.lines().any(|r| r.trim_end().ends_with(" sh")), "{}", top.stdout);

    let stats = server.ok(&["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", "ticker"]);
    let fields: Vec<&str> = stats.stdout.split_whitespace().collect();
    assert_eq!(fields[0], "ticker", "{}", stats.stdout);
    assert!(fields[1].ends_with("iB") && fields[2] == "/" && fields.last().unwrap().parse::<u32>().unwrap() >= 1, "{}", stats.stdout);

    server.ok(&["pause", "ticker"]);
    assert_eq!(server.ok(&["inspect", "--format", "{{.State.Status}} {{.State.Paused}}", "ticker"]).stdout.trim(), "paused true");
    let again = server.docker(&["pause", "ticker"]);
    assert!(!again.ok && again.stderr.contains("already paused"), "{}", again.stderr);
    server.ok(&["unpause", "ticker"]);
    assert_eq!(server.ok(&["inspect", "--format", "{{.State.Status}}", "ticker"]).stdout.trim(), "running");

    server.ok(&["kill", "-s", "USR1", "ticker"]);
    line.clear();
    followed.read_line(&mut line).unwrap();
    assert_eq!(line, "got-usr1\n");

    // stop ends `logs -f`; wait then reports the exit code of the signal.
    server.ok(&["stop", "-t", "1", "ticker"]);
    let rest = std::io::read_to_string(&mut followed).unwrap();
    assert!(!rest.contains("started"), "{rest}");
    assert!(follow.wait().unwrap().success());
    assert_eq!(server.ok(&["wait", "ticker"]).stdout.trim(), "143");
    server.ok(&["rm", "ticker"]);
    assert!(forge_names(&forge).is_empty());

    // wait blocks until the exit, and tells its code.
    server.ok(&["run", "-d", "--name", "five", "busybox", "sh", "-c", "sleep 1; exit 5"]);
    assert_eq!(server.ok(&["wait", "five"]).stdout.trim(), "5");
    let restarted = server.ok(&["restart", "-t", "0", "five"]);
    assert_eq!(restarted.stdout.trim(), "five");
    assert_eq!(server.ok(&["wait", "five"]).stdout.trim(), "5");
    server.ok(&["rm", "five"]);
}
