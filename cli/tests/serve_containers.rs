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

    let r = server.ok(&["run", "--network", "none", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(r.stdout, "out\n");
    assert_eq!(r.stderr, "err\n");
    assert!(forge_names(&forge).is_empty(), "--rm left a container: {:?}", forge_names(&forge));

    let three = server.docker(&["run", "--network", "none", "--rm", "--name", "three", "busybox", "sh", "-c", "echo bye; exit 3"]);
    assert_eq!((three.code, three.stdout.as_str()), (Some(3), "bye\n"), "{}", three.stderr);
    // Without --rm the container stays, exited with its code.
    let kept = server.docker(&["run", "--network", "none", "--name", "kept", "busybox", "sh", "-c", "exit 4"]);
    assert_eq!(kept.code, Some(4), "{}", kept.stderr);
    assert_eq!(server.ok(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "kept"]).stdout.trim(), "exited 4");

    let missing = server.docker(&["run", "--network", "none", "--rm", "busybox", "no-such-command"]);
    assert_eq!(missing.code, Some(127), "{}", missing.stderr);
    assert!(missing.stderr.contains("no-such-command"), "{}", missing.stderr);
    let not_exec = server.docker(&["run", "--network", "none", "--rm", "busybox", "/etc"]);
    assert_eq!(not_exec.code, Some(126), "{}", not_exec.stderr);
    let refused = server.docker(&["run", "--network", "none", "--rm", "--cap-add", "NET_ADMIN", "busybox", "true"]);
    assert_eq!(refused.code, Some(125), "{}", refused.stderr);
    assert!(refused.stderr.contains("CapAdd"), "{}", refused.stderr);
    assert_eq!(forge_names(&forge), ["kept"], "failed --rm runs left containers");
}

#[test]
fn docker_run_d_logs_follow_exec_top_stats_pause_kill_stop_wait_rm() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);

    let script = "trap 'echo got-usr1' USR1; echo started; while true; do sleep 0.2; done";
    let id = server.ok(&["run", "--network", "none", "-d", "--name", "ticker", "busybox", "sh", "-c", script]).stdout.trim().to_string();
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
    server.ok(&["run", "--network", "none", "-d", "--name", "five", "busybox", "sh", "-c", "sleep 1; exit 5"]);
    assert_eq!(server.ok(&["wait", "five"]).stdout.trim(), "5");
    let restarted = server.ok(&["restart", "-t", "0", "five"]);
    assert_eq!(restarted.stdout.trim(), "five");
    assert_eq!(server.ok(&["wait", "five"]).stdout.trim(), "5");
    server.ok(&["rm", "five"]);

    // An exec that its container's end kills: the client reads 137 from the exec's inspect.
    server.ok(&["run", "--network", "none", "-d", "--name", "brief", "busybox", "sh", "-c", "while [ ! -e /go ]; do sleep 0.1; done"]);
    let killed = server.docker(&["exec", "brief", "sh", "-c", "touch /go; exec sleep 60"]);
    assert_eq!(killed.code, Some(137), "{}", killed.stderr);
    server.ok(&["rm", "-f", "brief"]);
}

#[test]
fn docker_cp_copies_both_ways_and_stays_inside_the_container() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    // A host directory, and a container symlink with its absolute path: what is copied through
    // the link must land in the container's directory of that name, never the host's.
    let host_dir = forge.dir.path().join("host-target");
    std::fs::create_dir(&host_dir).unwrap();
    let host = host_dir.to_str().unwrap();
    let script = format!("mkdir -p /data {host} && echo inside > /data/f && ln -s {host} /escape && echo ready > /ready && sleep 600");
    server.ok(&["run", "--network", "none", "-d", "--name", "files", "busybox", "sh", "-c", &script]);
    assert!(eventually(|| server.docker(&["exec", "files", "cat", "/ready"]).stdout == "ready\n"));

    let out = forge.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    server.ok(&["cp", "files:/data/f", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "inside\n");
    server.ok(&["cp", "files:/data", out.join("copied").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out.join("copied/f")).unwrap(), "inside\n");

    let src = forge.dir.path().join("in.txt");
    std::fs::write(&src, "from the host\n").unwrap();
    server.ok(&["cp", src.to_str().unwrap(), "files:/data/"]);
    assert_eq!(server.ok(&["exec", "files", "cat", "/data/in.txt"]).stdout, "from the host\n");
    // Owned by the container's root, not by the host file's owner.
    assert_eq!(server.ok(&["exec", "files", "stat", "-c", "%u:%g", "/data/in.txt"]).stdout.trim(), "0:0");

    // A tar padded past its end marker (as tar writers pad to whole records) is read to its
    // end: a server that answered after the marker and closed broke the client's pipe.
    let mut padded = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(7);
    header.set_mode(0o644);
    padded.append_data(&mut header, "padded.txt", &b"padded\n"[..]).unwrap();
    let mut padded = padded.into_inner().unwrap();
    padded.resize(padded.len() + (4 << 20), 0);
    let (code, body) = common::server::raw_whole(&server.socket, "PUT", "/v1.41/containers/files/archive?path=/data", "application/x-tar", &padded);
    assert_eq!(code, 200, "{body}");
    assert_eq!(server.ok(&["exec", "files", "cat", "/data/padded.txt"]).stdout, "padded\n");

    server.ok(&["cp", src.to_str().unwrap(), "files:/escape/"]);
    assert_eq!(server.ok(&["exec", "files", "cat", &format!("{host}/in.txt")]).stdout, "from the host\n");
    assert!(std::fs::read_dir(&host_dir).unwrap().next().is_none(), "a copy through an absolute symlink wrote on the host");

    // `../` past the root stays at the container's root (raw: docker's CLI cleans paths).
    let hostname = server.ok(&["exec", "files", "cat", "/etc/hostname"]).stdout;
    let (code, body) = common::server::raw(&server.socket, "GET", "/v1.41/containers/files/archive?path=/../../../../etc/hostname", "application/json", b"");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(hostname.trim()), "not the container's /etc/hostname: {body}");
    let (code, body) = common::server::raw(&server.socket, "HEAD", "/v1.41/containers/files/archive?path=/nothing", "application/json", b"");
    assert_eq!(code, 404, "{body}");
    let missing = server.docker(&["cp", "files:/nothing", out.to_str().unwrap()]);
    assert!(!missing.ok && missing.stderr.contains("No such container:path: files:/nothing"), "{}", missing.stderr);

    // A stopped container's files too.
    server.ok(&["stop", "-t", "0", "files"]);
    server.ok(&["cp", "files:/data/in.txt", out.join("after-stop").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out.join("after-stop")).unwrap(), "from the host\n");
    // diff and export see the same files.
    let diff = server.ok(&["diff", "files"]).stdout;
    assert!(diff.lines().any(|l| l == "A /data/in.txt") && diff.lines().any(|l| l == "A /escape"), "{diff}");
    let tar = forge.dir.path().join("export.tar");
    server.ok(&["export", "-o", tar.to_str().unwrap(), "files"]);
    let listed: common::Ran = std::process::Command::new("tar").arg("-tf").arg(&tar).output().unwrap().into();
    assert!(listed.stdout.lines().any(|l| l.trim_start_matches("./") == "data/in.txt"), "{}", listed.stdout);
    assert!(listed.stdout.lines().any(|l| l.trim_start_matches("./") == "bin/busybox"), "the image's files too");
    server.ok(&["rm", "files"]);
}

#[test]
fn docker_exec_with_a_terminal_and_input_and_containers_outlive_a_restarted_server() {
    let forge = Forge::with_busybox();
    let mut server = Server::start(&forge, &[]);
    server.ok(&["run", "--network", "none", "-d", "--name", "long", "busybox", "sh", "-c", "echo up; exec sleep 600"]);
    let pid = server.ok(&["inspect", "--format", "{{.State.Pid}}", "long"]).stdout.trim().to_string();

    // -i: the client's input reaches the command, whose end ends the exec.
    let mut cat = server.docker_cmd(&["exec", "-i", "long", "sh", "-c", "cat; echo done"]);
    cat.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cat.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"typed in\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "typed in\ndone\n");

    // -it under a pseudo-terminal (script): the command gets a terminal.
    let docker = "docker exec -it long sh -c '[ -t 1 ] && echo on-a-terminal; exit 6'";
    let mut script = std::process::Command::new("script");
    script.args(["-qec", docker, "/dev/null"]).env("DOCKER_HOST", format!("unix://{}", server.socket.display())).env("DOCKER_CONFIG", server.docker_config.path());
    let ran: common::Ran = script.stdin(Stdio::piped()).output().unwrap().into();
    // The terminal's line discipline turns the newline into CR LF.
    assert!(ran.stdout.contains("on-a-terminal\r\n"), "{}\n{}\n{}", ran.stdout, ran.stderr, server.log());
    assert_eq!(ran.code, Some(6), "{}\n{}", ran.stdout, ran.stderr);

    // The terminal's size from the start request (newer clients send it); a client that does
    // not ask for an upgrade gets the output as a plain streamed answer.
    let (code, body) = common::server::raw(&server.socket, "POST", "/v1.43/containers/long/exec", "application/json", br#"{"Cmd": ["stty", "size"], "Tty": true, "AttachStdout": true}"#);
    assert_eq!(code, 201, "{body}");
    let exec_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["Id"].as_str().unwrap().to_string();
    let start = br#"{"Detach": false, "Tty": true, "ConsoleSize": [33, 111]}"#;
    let (code, body) = common::server::raw(&server.socket, "POST", &format!("/v1.43/exec/{exec_id}/start"), "application/json", start);
    assert!(code == 200 && body.contains("33 111\r\n"), "{code} {body:?}");
    let (_, inspect) = common::server::raw(&server.socket, "GET", &format!("/v1.43/exec/{exec_id}/json"), "application/json", b"");
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!((inspect["Running"].as_bool(), inspect["ExitCode"].as_i64()), (Some(false), Some(0)), "{inspect}");
    let (code, _) = common::server::raw(&server.socket, "POST", &format!("/v1.43/exec/{exec_id}/start"), "application/json", start);
    assert_eq!(code, 409, "an exec instance runs once");

    // The server goes; the container runs on under its monitor, and the next server finds it.
    // It exits on its own, though `run -d` left a wait behind whose container still runs (the
    // helper kills a server that has not exited after 20 s: no success then).
    assert!(server.stop().success(), "{}", server.log());
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the container died with the server");
    let server = Server::start(&forge, &[]);
    assert_eq!(server.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]).stdout.trim(), "long Up");
    assert_eq!(server.ok(&["logs", "long"]).stdout, "up\n");
    assert_eq!(server.ok(&["exec", "long", "echo", "still here"]).stdout, "still here\n");
    server.ok(&["rm", "-f", "long"]);
    assert!(eventually(|| !std::path::Path::new(&format!("/proc/{pid}")).exists()));
}

#[test]
fn resize_changes_the_terminal_of_a_running_container_and_of_an_exec() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let post = |path: &str, body: &[u8]| common::server::raw(&server.socket, "POST", path, "application/json", body);
    // The command notes its terminal's size in a file, over and over.
    let noting = |file: &str| format!("while :; do stty size > {file}.new && mv {file}.new {file}; sleep 0.1; done");
    server.ok(&["run", "-d", "-t", "--network", "none", "--name", "term", "busybox", "sh", "-c", &noting("/tmp/size")]);
    let size = |file: &str| server.docker(&["exec", "term", "cat", file]).stdout.trim().to_string();
    assert!(eventually(|| size("/tmp/size") == "24 80"), "a detached terminal starts at 24x80: {:?}", size("/tmp/size"));
    let (code, body) = post("/v1.43/containers/term/resize?h=40&w=132", b"");
    assert_eq!(code, 200, "{body}");
    assert!(eventually(|| size("/tmp/size") == "40 132"), "{:?}", size("/tmp/size"));

    // An exec's own terminal, resized while it runs.
    let create = serde_json::json!({ "Cmd": ["sh", "-c", noting("/tmp/esize")], "Tty": true, "AttachStdout": true }).to_string();
    let (code, body) = post("/v1.43/containers/term/exec", create.as_bytes());
    assert_eq!(code, 201, "{body}");
    let exec_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["Id"].as_str().unwrap().to_string();
    let (code, body) = post(&format!("/v1.43/exec/{exec_id}/start"), br#"{"Detach": true, "Tty": true, "ConsoleSize": [20, 70]}"#);
    assert_eq!(code, 200, "{body}");
    assert!(eventually(|| size("/tmp/esize") == "20 70"), "{:?}", size("/tmp/esize"));
    let (code, body) = post(&format!("/v1.43/exec/{exec_id}/resize?h=50&w=150"), b"");
    assert_eq!(code, 200, "{body}");
    assert!(eventually(|| size("/tmp/esize") == "50 150"), "{:?}", size("/tmp/esize"));
    assert_eq!(size("/tmp/size"), "40 132", "the exec's resize reached the container's terminal");

    // Nothing to resize without a terminal; a stopped container, a missing size: clear errors.
    server.ok(&["run", "-d", "--network", "none", "--name", "plain", "busybox", "sleep", "600"]);
    assert_eq!(post("/v1.43/containers/plain/resize?h=10&w=10", b"").0, 200);
    let (code, body) = post("/v1.43/containers/term/resize?h=10", b"");
    assert!(code == 400 && body.contains("h and w"), "{code} {body}");
    server.ok(&["stop", "-t", "1", "term"]);
    let (code, body) = post("/v1.43/containers/term/resize?h=10&w=10", b"");
    assert!(code == 409 && body.contains("running"), "{code} {body}");
    server.ok(&["rm", "-f", "term", "plain"]);
}

#[test]
fn docker_28_5_client_runs_execs_copies_and_stops_containers() {
    let modern = std::path::Path::new(common::modern::CHROOT).join("usr/bin/docker");
    if !modern.exists() {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("\nskipped: {} is missing (run ../shared/anchors/start-dockerd-modern.sh once)\n", modern.display()).as_bytes());
        return;
    }
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let docker = |args: &[&str]| -> common::Ran { server.client_cmd(&modern, args).output().unwrap().into() };
    let ok = |args: &[&str]| -> common::Ran {
        let r = docker(args);
        assert!(r.ok, "docker 28.5 {args:?}:\n{}\n{}\nserver log:\n{}", r.stdout, r.stderr, server.log());
        r
    };

    assert_eq!(ok(&["run", "--rm", "--network", "none", "busybox", "echo", "hello"]).stdout, "hello\n");
    let three = docker(&["run", "--rm", "--network", "none", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(three.code, Some(3), "{}", three.stderr);
    assert_eq!(docker(&["run", "--rm", "--network", "none", "busybox", "no-such-command"]).code, Some(127));

    ok(&["run", "-d", "--network", "none", "--name", "mod", "busybox", "sh", "-c", "echo up; mkdir /box; exec sleep 600"]);
    assert!(eventually(|| docker(&["logs", "mod"]).stdout == "up\n"));
    assert_eq!(ok(&["exec", "mod", "sh", "-c", "echo $((6 * 7))"]).stdout, "42\n");
    let file = forge.dir.path().join("modern.txt");
    std::fs::write(&file, "modern\n").unwrap();
    ok(&["cp", file.to_str().unwrap(), "mod:/box/"]);
    assert_eq!(ok(&["exec", "mod", "cat", "/box/modern.txt"]).stdout, "modern\n");
    let back = forge.dir.path().join("back.txt");
    ok(&["cp", "mod:/box/modern.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "modern\n");
    assert!(ok(&["top", "mod"]).stdout.contains("sleep 600"));
    let stats = ok(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "mod"]);
    let (name, pids) = stats.stdout.trim().split_once(' ').unwrap();
    assert!(name == "mod" && pids.parse::<u32>().unwrap() >= 1, "{}", stats.stdout);
    ok(&["pause", "mod"]);
    assert_eq!(ok(&["ps", "--format", "{{.Names}} {{.State}}"]).stdout.trim(), "mod paused");
    ok(&["unpause", "mod"]);
    ok(&["stop", "-t", "1", "mod"]);
    assert_eq!(ok(&["wait", "mod"]).stdout.trim(), "143", "ended by the stop signal, SIGTERM");
    ok(&["rm", "mod"]);
}

#[test]
fn docker_sdk_for_python_runs_logs_execs_waits_and_removes_containers() {
    let has_sdk = std::process::Command::new("python3").args(["-c", "import docker"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !has_sdk {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), b"\nskipped: python3's docker module is missing (pip install docker)\n");
        return;
    }
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let script = r#"
import sys, docker
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
out = c.containers.run("busybox", ["sh", "-c", "echo ran; echo to-err >&2"], remove=True, network_mode="none")
assert out == b"ran\n", out
ct = c.containers.run("busybox", ["sh", "-c", "echo first; while true; do sleep 0.1; done"], detach=True, name="py", network_mode="none")
ct.reload()
assert ct.status == "running", ct.status
code, output = ct.exec_run(["sh", "-c", "echo exec-out; exit 4"])
assert (code, output) == (4, b"exec-out\n"), (code, output)
code, output = ct.exec_run(["cat", "/etc/hostname"], demux=True)
assert code == 0 and output[0].strip(), output
assert ct.logs() == b"first\n", ct.logs()
assert ct.top()["Processes"], ct.top()
stats = ct.stats(stream=False)
assert stats["pids_stats"]["current"] >= 1, stats
# The stream: a sample a second, each with the one before it.
samples = ct.stats(stream=True, decode=True)
first, second = next(samples), next(samples)
samples.close()
assert second["precpu_stats"]["cpu_usage"]["total_usage"] == first["cpu_stats"]["cpu_usage"]["total_usage"], (first, second)
assert second["cpu_stats"]["system_cpu_usage"] > first["cpu_stats"]["system_cpu_usage"], (first, second)
ct.kill(signal="SIGKILL")
assert ct.wait()["StatusCode"] == 137
ct.remove()
assert c.containers.list(all=True) == []
print("OK")
"#;
    let o = std::process::Command::new("python3").args(["-c", script, server.socket.to_str().unwrap()]).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && out.trim() == "OK", "{out}\n{err}\nserver log:\n{}", server.log());
}

#[test]
fn docker_run_i_and_it_and_attach_pass_input_to_the_container() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);

    // -i: piped input reaches the command; its end ends the command.
    let mut run = server.docker_cmd(&["run", "-i", "--rm", "--network", "none", "busybox", "sh", "-c", "cat; echo end"]);
    run.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = run.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"piped in\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped in\nend\n", "{}", String::from_utf8_lossy(&out.stderr));

    // -it under a pseudo-terminal: typed input is read through the container's terminal.
    let docker = "docker run -it --rm --network none busybox sh -c 'read line; echo got-$line; exit 9'";
    let mut script = std::process::Command::new("script");
    script.args(["-qec", docker, "/dev/null"]).env("DOCKER_HOST", format!("unix://{}", server.socket.display())).env("DOCKER_CONFIG", server.docker_config.path());
    script.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = script.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Typed at once: what comes before the container runs waits for it in the server.
    std::io::Write::write_all(&mut stdin, b"typed\r").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("got-typed"), "{shown}\n{}\n{}", String::from_utf8_lossy(&out.stderr), server.log());
    assert_eq!(out.status.code(), Some(9));

    // attach to a detached -i container (no StdinOnce, as docker's `run -di`): each client's
    // input reaches it in turn, and a client's end of input is not the command's (as Docker
    // 28.5 does: its attach then waits for the container to exit).
    server.ok(&["run", "-di", "--network", "none", "--name", "reader", "busybox", "sh", "-c", "while read l && [ \"$l\" != end ]; do echo seen-$l; done; echo closed"]);
    let _reader = common::Removed(&forge, "reader");
    let attach = |input: &[u8]| {
        let mut attach = server.docker_cmd(&["attach", "reader"]);
        attach.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = attach.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
        child
    };
    let logs = || server.ok(&["logs", "reader"]).stdout;
    let mut first = attach(b"one\ntwo\n");
    assert!(eventually(|| logs() == "seen-one\nseen-two\n"), "{}", logs());
    assert_eq!(server.ok(&["inspect", "--format", "{{.State.Running}} {{.Config.StdinOnce}}", "reader"]).stdout.trim(), "true false");
    let mut second = attach(b"three\nend\n");
    for child in [&mut second, &mut first] {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(logs(), "seen-one\nseen-two\nseen-three\nclosed\n");
    assert_eq!(server.ok(&["wait", "reader"]).stdout.trim(), "0");
}

#[test]
fn docker_logs_keeps_the_streams_apart_and_selects_lines() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    // The pause keeps o2 last in the log: the monitor reads stdout and stderr on two threads,
    // so lines written together on both may be logged in either order (as with docker).
    server.ok(&["run", "-d", "--network", "none", "--name", "talker", "busybox", "sh", "-c", "echo o1; echo e1 >&2; sleep 0.5; echo o2"]);
    assert_eq!(server.ok(&["wait", "talker"]).stdout.trim(), "0");
    let all = server.ok(&["logs", "talker"]);
    assert_eq!((all.stdout.as_str(), all.stderr.as_str()), ("o1\no2\n", "e1\n"));
    assert_eq!(server.ok(&["logs", "--tail", "1", "talker"]).stdout, "o2\n");
    let stamped = server.ok(&["logs", "-t", "talker"]).stdout;
    for line in stamped.lines() {
        let (time, text) = line.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && humantime::parse_rfc3339(time).is_ok() && text.starts_with('o'), "{stamped}");
    }
    // docker's framing on the wire: stream 1 or 2, three zero bytes, the length big-endian;
    // also for a client that attaches without asking for an upgrade (a plain streamed answer).
    let framed = ["\u{1}\0\0\0\0\0\0\u{3}o1\n", "\u{2}\0\0\0\0\0\0\u{3}e1\n"];
    for (method, path) in [("GET", "/v1.43/containers/talker/logs?stdout=1&stderr=1"), ("POST", "/v1.43/containers/talker/attach?logs=1&stdout=1&stderr=1")] {
        let (code, body) = common::server::raw(&server.socket, method, path, "application/json", b"");
        assert_eq!(code, 200, "{body}");
        assert!(framed.iter().all(|f| body.contains(f)), "{method} {path}: {body:?}");
    }
    let later = server.ok(&["logs", "--since", "2099-01-01T00:00:00Z", "talker"]);
    assert_eq!((later.stdout.as_str(), later.stderr.as_str()), ("", ""));
    // With a terminal: one raw stream, as the terminal showed it.
    server.ok(&["run", "-d", "-t", "--network", "none", "--name", "tty", "busybox", "sh", "-c", "echo on-tty >&2"]);
    server.ok(&["wait", "tty"]);
    assert_eq!(server.ok(&["logs", "tty"]).stdout, "on-tty\r\n");
    server.ok(&["rm", "talker", "tty"]);
}

#[test]
fn bad_container_requests_get_clear_errors() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    server.ok(&["create", "--network", "none", "--name", "idle", "busybox", "true"]);
    let post = |path: &str, body: &str| common::server::raw(&server.socket, "POST", path, "application/json", body.as_bytes());
    let get = |path: &str| common::server::raw(&server.socket, "GET", path, "application/json", b"");
    let message = |(code, body): (u16, String)| (code, common::server::message(&body));
    let cases: Vec<((u16, String), u16, &str)> = vec![
        (post("/v1.43/containers/nothing/start", ""), 404, "No such container: nothing"),
        (post("/v1.43/containers/idle/start?bogus=1", ""), 400, "unknown query parameter \"bogus\""),
        (post("/v1.43/containers/idle/wait?condition=later", ""), 400, "invalid condition \"later\""),
        (get("/v1.43/containers/idle/logs"), 400, "you must choose at least one stream"),
        (get("/v1.43/containers/idle/logs?stdout=1&tail=some"), 400, "invalid tail \"some\""),
        (get("/v1.43/containers/idle/logs?stdout=1&since=yesterday"), 400, "invalid since"),
        (get("/v1.43/containers/idle/stats?stream=0"), 409, "is not running"),
        (get("/v1.43/containers/idle/top"), 409, "only a running container has processes"),
        (post("/v1.43/containers/idle/kill?signal=SIGNOPE", ""), 400, "SIGNOPE"),
        (post("/v1.43/containers/idle/pause", ""), 409, "only a running container can be paused"),
        (post("/v1.43/containers/idle/exec", "{}"), 400, "No exec command specified"),
        (post("/v1.43/containers/idle/exec", r#"{"Cmd": ["true"]}"#), 409, "is not running"),
        (post("/v1.43/containers/idle/exec", r#"{"Cmd": "#), 400, "invalid JSON in the exec config"),
        (post("/v1.43/exec/nothing/start", "{}"), 404, "No such exec instance: nothing"),
        (get("/v1.43/exec/nothing/json"), 404, "No such exec instance: nothing"),
        (get("/v1.43/containers/idle/archive"), 400, "the path parameter is required"),
        (get("/v1.43/containers/idle/archive?path=/nothing/here"), 404, "Could not find the file /nothing/here"),
    ];
    for (got, code, text) in cases {
        let (status, msg) = message(got);
        assert!(status == code && msg.contains(text), "expected {code} {text:?}, got {status} {msg:?}");
    }
    // rename: to a free name; a taken or bad one is refused.
    server.ok(&["create", "--network", "none", "--name", "other", "busybox", "true"]);
    let taken = server.docker(&["rename", "idle", "other"]);
    assert!(!taken.ok && taken.stderr.contains("already in use"), "{}", taken.stderr);
    let bad = server.docker(&["rename", "idle", "no/slash"]);
    assert!(!bad.ok && bad.stderr.contains("invalid container name"), "{}", bad.stderr);
    server.ok(&["rename", "idle", "renamed"]);
    let mut names: Vec<String> = server.ok(&["ps", "-a", "--format", "{{.Names}}"]).stdout.lines().map(str::to_string).collect();
    names.sort();
    assert_eq!(names, ["other", "renamed"]);
    assert_eq!(server.ok(&["inspect", "--format", "{{.Name}}", "renamed"]).stdout.trim(), "/renamed");
    // The old name is free again, and the daemonless CLI sees the new one.
    server.ok(&["create", "--network", "none", "--name", "idle", "busybox", "true"]);
    assert!(forge.ok(&["ps", "-a"]).stdout.contains("renamed"));
    server.ok(&["rm", "idle", "other"]);
    server.ok(&["rename", "renamed", "idle"]);
    // A stopped container's stop is docker's 304, with nothing to say.
    assert_eq!(post("/v1.43/containers/idle/stop", "").0, 304);
    // None of it changed the container.
    assert_eq!(server.ok(&["inspect", "--format", "{{.State.Status}}", "idle"]).stdout.trim(), "created");
}

#[test]
fn docker_run_mount_binds_volumes_and_tmpfs() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "from-host\n").unwrap();
    let bind = format!("type=bind,source={},target=/host", host.path().display());
    let script = "cat /host/in.txt; echo from-box > /host/out.txt; echo kept > /vol/v.txt; grep ' /scratch ' /proc/mounts | cut -d' ' -f3,4";
    let out = server.ok(&["run", "--rm", "--network", "none", "--mount", &bind, "--mount", "type=volume,source=mvol,target=/vol", "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1048576", "busybox", "sh", "-c", script]).stdout;
    assert!(out.starts_with("from-host\ntmpfs rw,") && out.contains("size=1024k"), "{out}");
    assert_eq!(std::fs::read_to_string(host.path().join("out.txt")).unwrap(), "from-box\n");
    // The named volume keeps what was written, for the next container.
    let out = server.ok(&["run", "--rm", "--network", "none", "--mount", "type=volume,source=mvol,target=/v,readonly", "busybox", "sh", "-c", "cat /v/v.txt; touch /v/x 2>/dev/null || echo read-only"]).stdout;
    assert_eq!(out, "kept\nread-only\n");
    server.ok(&["volume", "rm", "mvol"]);
}
