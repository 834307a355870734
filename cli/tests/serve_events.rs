//! `docker events` against `forge serve`: what the daemonless CLI and the server do to the
//! store, streamed live and replayed with `--since`/`--until` and filters.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::server::{message, raw, Server};
use common::Forge;

const FORMAT: &str = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}";

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Now, as the docker CLI's `--since` takes it to the nanosecond.
fn unix_now_precise() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

#[test]
fn docker_events_streams_what_every_forge_process_records() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let start = unix_now();
    let since = unix_now_precise();
    // Live, from `start` on (so nothing recorded before it connected is missed); it ends by
    // itself within 30 s, so a missing event fails the test instead of hanging it.
    let mut live = server
        .docker_cmd(&["events", "--since", &since, "--until", &(start + 30).to_string(), "--format", FORMAT])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut live_out = BufReader::new(live.stdout.take().unwrap());
    let mut next = || {
        let mut line = String::new();
        live_out.read_line(&mut line).unwrap();
        // Volume events carry no name attribute: their ID is the name.
        line.trim().replace("<no value>", "evvol")
    };
    forge.ok(&["tag", "busybox", "evimg:1"]);
    let mut seen = vec![next()];
    // The stream is open now: what follows comes from the server tailing the journal.
    server.ok(&["network", "create", "--label", "team=a", "evnet"]);
    forge.ok(&["run", "--rm", "--name", "evbox", "--network", "evnet", "busybox", "true"]);
    server.ok(&["volume", "create", "evvol"]);
    server.ok(&["volume", "rm", "evvol"]);
    server.ok(&["network", "rm", "evnet"]);
    forge.ok(&["rmi", "evimg:1"]);
    let expected = [
        "image tag evimg:1",
        "network create evnet",
        "container create evbox",
        // The container's attachment, named by the network.
        "network connect evnet",
        "container start evbox",
        "network disconnect evnet",
        "container die evbox",
        "container destroy evbox",
        "volume create evvol",
        "volume destroy evvol",
        "network destroy evnet",
        "image untag evimg:1",
    ];
    while seen.len() < expected.len() {
        match next() {
            l if l.is_empty() => break,
            l => seen.push(l),
        }
    }
    let _ = live.kill();
    let _ = live.wait();
    assert_eq!(seen, expected);

    // Replayed from the journal, and filtered.
    let until = unix_now_precise();
    let replay = |filters: &[&str]| {
        let mut args = vec!["events", "--since", &since, "--until", &until, "--format", FORMAT];
        args.extend_from_slice(filters);
        server.ok(&args).stdout.lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(replay(&[]).len(), expected.len());
    assert_eq!(replay(&["--filter", "container=evbox"]), ["container create evbox", "container start evbox", "container die evbox", "container destroy evbox"]);
    assert_eq!(replay(&["--filter", "type=network", "--filter", "event=create"]), ["network create evnet"]);
    let connects = server.ok(&["events", "--since", &since, "--until", &until, "--filter", "event=connect", "--format", "{{.Actor.Attributes.container}}"]).stdout;
    let evbox = replay(&["--filter", "container=evbox", "--filter", "event=create"]);
    assert_eq!(evbox, ["container create evbox"]);
    assert_eq!(connects.trim().len(), 64, "{connects}");
    assert_eq!(replay(&["--filter", "image=evimg:1"]), ["image tag evimg:1", "image untag evimg:1"]);
    assert_eq!(replay(&["--filter", "event=die", "--filter", "event=start"]), ["container start evbox", "container die evbox"]);
    let die = server.ok(&["events", "--since", &since, "--until", &until, "--filter", "event=die", "--format", "{{.Actor.Attributes.exitCode}} {{.Status}} {{.From}}"]);
    assert_eq!(die.stdout.trim(), "0 die busybox");
    // Nothing from before `since`.
    let later = unix_now_precise();
    assert_eq!(server.ok(&["events", "--since", &later, "--until", &unix_now_precise()]).stdout, "");

    let (code, body) = raw(&server.socket, "GET", "/v1.41/events?filters=%7B%22node%22%3A%5B%22x%22%5D%7D", "application/json", b"");
    assert_eq!((code, message(&body).contains("swarm or plugin objects")), (400, true), "{body}");
    let (code, body) = raw(&server.socket, "GET", "/v1.41/events?since=yesterday", "application/json", b"");
    assert_eq!((code, message(&body).contains("invalid since")), (400, true), "{body}");
}

#[test]
fn docker_events_shows_image_pull_push_and_delete() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let registry = forge_testkit::Registry::start();
    let remote = format!("{}/ev/img:1", registry.addr);
    let since = unix_now_precise();
    server.ok(&["tag", "busybox", &remote]);
    server.ok(&["push", "-q", &remote]);
    server.ok(&["rmi", &remote]);
    // Its last name: the image goes.
    server.ok(&["rmi", "busybox"]);
    // The daemonless CLI's pull is recorded as the server's is.
    forge.ok(&["pull", "-q", &remote]);
    let until = unix_now_precise();
    let events = server.ok(&["events", "--since", &since, "--until", &until, "--filter", "type=image", "--format", "{{.Action}} {{.Actor.ID}}"]).stdout;
    let actions: Vec<&str> = events.lines().filter(|l| !l.starts_with("tag ") && !l.starts_with("untag ")).collect();
    assert_eq!(actions.len(), 3, "{events}");
    assert_eq!(actions[0], format!("push {remote}"), "{events}");
    assert!(actions[1].starts_with("delete sha256:"), "{events}");
    assert_eq!(actions[2], format!("pull {remote}"), "{events}");
    assert_eq!(server.ok(&["events", "--since", &since, "--until", &until, "--filter", "event=delete", "--format", "{{.Actor.Attributes.name}}"]).stdout.trim(), "busybox:latest");
}
