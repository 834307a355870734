//! `forge serve`'s networks driven by the real docker CLI (Debian's docker.io 20.10): create,
//! ls, inspect, rm, prune, connect, disconnect, and the network part of `docker create`.
//! Containers are started by the daemonless CLI on the same store (which the server sees).
//! User networks get subnets of their own (10.147.x.0/24): the free private candidates are
//! few, and tests of other stores run at the same time.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use common::server::{message, raw, Server};
use common::{eventually, Background, Forge, Removed};

#[test]
fn docker_cli_creates_lists_inspects_and_removes_networks() {
    let forge = Forge::empty();
    let server = Server::start(&forge, &[]);
    // docker's predefined networks are there from the start, as docker lists them.
    let ls = server.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"]);
    assert_eq!(ls.stdout, "bridge bridge local\nhost host local\nnone null local\n");

    let id = server.ok(&["network", "create", "--label", "app=shop", "--subnet", "10.147.7.0/24", "--gateway", "10.147.7.254", "front"]).stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    server.ok(&["network", "create", "--internal", "--subnet", "10.147.6.0/24", "back"]);
    let taken = server.docker(&["network", "create", "front"]);
    assert!(!taken.ok && taken.stderr.contains("network with name front already exists"), "{}", taken.stderr);
    let (code, _) = raw(&server.socket, "POST", "/v1.41/networks/create", "application/json", br#"{"Name": "front", "CheckDuplicate": true}"#);
    assert_eq!(code, 409);

    let ls = server.ok(&["network", "ls", "--format", "{{.ID}} {{.Name}}"]);
    assert!(ls.stdout.lines().any(|l| l == format!("{} front", &id[..12])), "{}", ls.stdout);
    assert_eq!(server.ok(&["network", "ls", "-q", "--filter", "label=app=shop"]).stdout.trim(), &id[..12]);
    assert_eq!(server.ok(&["network", "ls", "-q", "--filter", "label=app=other"]).stdout.trim(), "");
    assert_eq!(server.ok(&["network", "ls", "--format", "{{.Name}}", "--filter", "type=custom"]).stdout, "back\nfront\n");
    assert_eq!(server.ok(&["network", "ls", "--format", "{{.Name}}", "--filter", "dangling=true"]).stdout, "back\nfront\n");
    assert_eq!(server.ok(&["network", "ls", "--format", "{{.Name}}", "--filter", "name=fro"]).stdout, "front\n");

    // By name, by ID and by ID prefix.
    for key in ["front", id.as_str(), &id[..6]] {
        let inspect = server.ok(&["network", "inspect", "--format", "{{.Name}} {{.Driver}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{.Labels}} {{.Internal}}", key]);
        assert_eq!(inspect.stdout.trim(), "front bridge 10.147.7.0/24 10.147.7.254 map[app:shop] false", "{key}");
    }
    assert_eq!(server.ok(&["network", "inspect", "--format", "{{.Internal}}", "back"]).stdout.trim(), "true");
    let missing = server.docker(&["network", "inspect", "nothing"]);
    assert!(!missing.ok && missing.stderr.contains("No such network: nothing"), "{}", missing.stderr);
    // The daemonless CLI sees the same networks.
    let forge_ls = forge.ok(&["network", "ls"]).stdout;
    assert!(forge_ls.contains("front") && forge_ls.contains("10.147.7.0/24"), "{forge_ls}");

    // What forge's networks cannot be is refused with the reason.
    for (args, why) in [
        (&["network", "create", "-d", "overlay", "x1"][..], "network driver \"overlay\" is not supported"),
        (&["network", "create", "--ipv6", "x2"][..], "EnableIPv6 is not supported"),
        (&["network", "create", "--subnet", "10.147.7.128/25", "x3"][..], "it overlaps another network of the store"),
        (&["network", "create", "-o", "com.docker.network.bridge.name=br9", "x4"][..], "Options is not supported"),
        (&["network", "create", "host"][..], "operation is not permitted on predefined host network"),
        (&["network", "rm", "bridge"][..], "bridge is a pre-defined network and cannot be removed"),
        (&["network", "rm", "none"][..], "none is a pre-defined network and cannot be removed"),
    ] {
        let r = server.docker(args);
        assert!(!r.ok && r.stderr.contains(why), "{args:?}: {}", r.stderr);
    }
    // A refused create holds no bridge name (claims are host-wide: a leaked one is a name lost).
    let claims: Vec<String> = std::fs::read_dir("/run/forge/network/bridges").unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default()).collect();
    let ours = format!("{}\nx3", forge.store().join("forge/network").display());
    assert!(!claims.contains(&ours), "the refused network x3 still claims a bridge");
    let (code, body) = raw(&server.socket, "POST", "/v1.41/networks/create", "application/json", br#"{"Name": "x5", "IPAM": {"Config": [{"Subnet": "nonsense"}]}}"#);
    assert_eq!((code, message(&body).contains("invalid subnet \"nonsense\"")), (400, true), "{body}");
    let (code, body) = raw(&server.socket, "POST", "/v1.41/networks/create", "application/json", br#"{"Name": "x6", "IPAM": {"Config": [{"Subnet": "fd00::/64"}]}}"#);
    assert_eq!((code, message(&body).contains("IPv4 CIDR")), (400, true), "{body}");
    let names = server.ok(&["network", "ls", "--format", "{{.Name}}"]).stdout;
    assert_eq!(names, "back\nbridge\nfront\nhost\nnone\n");

    assert_eq!(server.ok(&["network", "rm", "back"]).stdout.trim(), "back");
    let prune = server.ok(&["network", "prune", "-f"]);
    assert!(prune.stdout.contains("Deleted Networks:\nfront"), "{}", prune.stdout);
    assert_eq!(server.ok(&["network", "ls", "--format", "{{.Name}}"]).stdout, "bridge\nhost\nnone\n");
    assert!(!forge.ok(&["network", "ls"]).stdout.contains("front"));
}

#[test]
fn docker_cli_connects_and_disconnects_running_containers() {
    let forge = Forge::with_busybox();
    // The default network on a subnet of its own too (its config's default_subnet).
    let network_dir = forge.store().join("forge/network");
    std::fs::create_dir_all(&network_dir).unwrap();
    std::fs::write(network_dir.join("config.json"), r#"{"default_subnet": "10.147.11.0/24"}"#).unwrap();
    let server = Server::start(&forge, &[]);
    server.ok(&["network", "create", "--subnet", "10.147.9.0/24", "front"]);
    let one = Background::start_with(&forge, &["--network", "front", "--network-alias", "alpha"], "one", "echo ready; exec sleep 300");
    let two = Background::start_with(&forge, &[], "two", "echo ready; exec sleep 300");
    let hosts_of_one = || forge.ok(&["exec", "one", "cat", "/etc/hosts"]).stdout;

    let attached = |net: &str| server.ok(&["network", "inspect", "--format", "{{range .Containers}}{{.Name}} {{.IPv4Address}};{{end}}", net]).stdout;
    let front = attached("front");
    assert!(front.starts_with("one ") && front.matches(';').count() == 1, "{front}");
    // The default network's containers, as docker shows them.
    assert!(attached("bridge").starts_with("two "), "{}", attached("bridge"));

    server.ok(&["network", "connect", "--alias", "beta", "front", "two"]);
    let front = attached("front");
    assert!(front.contains("one 10.147.9."), "{front}");
    assert_eq!(front.matches(';').count(), 2, "{front}");
    // Its peer finds it by name and alias, and inspect shows both of its networks.
    assert!(eventually(|| hosts_of_one().lines().any(|l| l.contains("\ttwo beta "))), "{}", hosts_of_one());
    let networks = server.ok(&["inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}:{{$v.IPAddress}}:{{$v.Aliases}} {{end}}", "two"]).stdout;
    let short = &server.ok(&["inspect", "--format", "{{.Id}}", "two"]).stdout.trim().to_string()[..12];
    // The top-level address is the default network's, as docker's.
    let bridge_ip = server.ok(&["inspect", "--format", "{{.NetworkSettings.IPAddress}}", "two"]).stdout.trim().to_string();
    assert!(bridge_ip.parse::<std::net::Ipv4Addr>().is_ok(), "{bridge_ip:?}");
    assert!(networks.starts_with(&format!("bridge:{bridge_ip}:[] front:")), "{networks}");
    assert!(networks.contains(&format!(":[beta {short}]")), "{networks}");

    let twice = server.docker(&["network", "connect", "front", "two"]);
    assert!(!twice.ok && twice.stderr.contains("already connected"), "{}", twice.stderr);
    // Restarted through the API: on front again, known there by its alias.
    server.ok(&["restart", "-t", "0", "two"]);
    let addresses = forge.ok(&["exec", "two", "ip", "-4", "-o", "addr"]).stdout;
    assert!(addresses.contains("10.147.9."), "{addresses}");
    assert!(eventually(|| hosts_of_one().lines().any(|l| l.contains("\ttwo beta "))), "{}", hosts_of_one());
    let busy = server.docker(&["network", "rm", "front"]);
    assert!(!busy.ok && busy.stderr.contains("cannot be removed"), "{}", busy.stderr);
    let nobody = server.docker(&["network", "connect", "front", "nobody"]);
    assert!(!nobody.ok && nobody.stderr.contains("No such container: nobody"), "{}", nobody.stderr);
    let on_host = Background::start_with(&forge, &["--network", "host"], "three", "echo ready; exec sleep 300");
    let shared = server.docker(&["network", "connect", "front", "three"]);
    assert!(!shared.ok && shared.stderr.contains("cannot be connected to other networks"), "{}", shared.stderr);
    drop(on_host);
    let host = server.docker(&["network", "connect", "host", "two"]);
    assert!(!host.ok && host.stderr.contains("cannot be connected to the host network"), "{}", host.stderr);

    server.ok(&["network", "disconnect", "front", "two"]);
    assert_eq!(attached("front").matches(';').count(), 1);
    assert!(eventually(|| !hosts_of_one().contains("beta")), "{}", hosts_of_one());
    let again = server.docker(&["network", "disconnect", "front", "two"]);
    assert!(!again.ok, "a second disconnect succeeded");
    server.ok(&["network", "disconnect", "--force", "front", "two"]);
    drop((one, two));
    server.ok(&["network", "rm", "front"]);
}

/// An HTTP GET of `path` on the host's `port`; the body, or None when nothing answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

#[test]
fn docker_create_takes_ports_dns_extra_hosts_and_aliases() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    server.ok(&["network", "create", "--subnet", "10.147.8.0/24", "front"]);
    // Free now; the container binds it right after.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let id = server
        .ok(&[
            "create", "--name", "web", "--network", "front", "--network-alias", "www", "-p", &format!("127.0.0.1:{port}:80"), "--dns", "192.0.2.53",
            "--add-host", "db:192.0.2.9", "busybox", "sh", "-c", "cat /etc/resolv.conf /etc/hosts > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
        ])
        .stdout
        .trim()
        .to_string();
    let _web = Removed(&forge, "web");
    // Before it runs: its network, and the short ID among its aliases (compose looks for it).
    let networks = server.ok(&["inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.Aliases}}{{end}}", "web"]).stdout;
    assert_eq!(networks.trim(), format!("front [www {}]", &id[..12]));
    forge.ok(&["start", "web"]);
    assert!(eventually(|| http_get(port, "/index.html").is_some_and(|b| b.contains("nameserver 192.0.2.53"))), "nothing answered on port {port}");
    let page = http_get(port, "/index.html").unwrap();
    assert!(page.contains("192.0.2.9\tdb"), "{page}");
    let ports = server.ok(&["port", "web"]).stdout;
    assert_eq!(ports.trim(), format!("80/tcp -> 127.0.0.1:{port}"));
    let ip = server.ok(&["inspect", "--format", "{{.NetworkSettings.Networks.front.IPAddress}}", "web"]).stdout;
    assert!(ip.trim().parse::<std::net::Ipv4Addr>().is_ok(), "{ip:?}");

    // What the docker CLI checks itself, sent raw.
    for (body, why) in [
        (r#"{"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}}"#, "HostConfig.PortBindings"),
        (r#"{"Image": "busybox", "HostConfig": {"ExtraHosts": ["db:nowhere"]}}"#, "HostConfig.ExtraHosts"),
        (r#"{"Image": "busybox", "HostConfig": {"NetworkMode": "front"}, "NetworkingConfig": {"EndpointsConfig": {"front": {"Aliases": ["-bad"]}}}}"#, "invalid alias \"-bad\""),
        (r#"{"Image": "busybox", "HostConfig": {"NetworkMode": "front"}, "NetworkingConfig": {"EndpointsConfig": {"other": {}}}}"#, "not the container's NetworkMode"),
        (r#"{"Image": "busybox", "HostConfig": {"NetworkMode": "container:"}}"#, "NetworkMode"),
    ] {
        let (code, answer) = raw(&server.socket, "POST", "/v1.41/containers/create", "application/json", body.as_bytes());
        assert_eq!((code, message(&answer).contains(why)), (400, true), "{body}: {answer}");
    }
    assert_eq!(server.ok(&["ps", "-aq"]).stdout.trim(), &id[..12]);
}

#[test]
fn docker_sdk_for_python_drives_networks_and_volumes() {
    let has_sdk = std::process::Command::new("python3").args(["-c", "import docker"]).stderr(std::process::Stdio::null()).status().is_ok_and(|s| s.success());
    if !has_sdk {
        let _ = writeln!(std::io::stderr(), "\nskipped: docker_sdk_for_python: python3's docker module is missing (pip install docker)\n");
        return;
    }
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let script = r#"
import sys, docker
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.147.14.0/24", gateway="10.147.14.1")])
net = c.networks.create("pynet", driver="bridge", ipam=ipam, labels={"from": "python"})
assert c.networks.get(net.id).name == "pynet"
assert [n.name for n in c.networks.list(filters={"label": "from=python"})] == ["pynet"]
assert net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.147.14.0/24"
try:
    c.networks.create("pynet")
    raise SystemExit("a duplicate was created")
except docker.errors.APIError as e:
    assert e.status_code == 409, e
vol = c.volumes.create("pyvol", labels={"from": "python"})
assert [v.name for v in c.volumes.list(filters={"label": "from=python"})] == ["pyvol"]
ct = c.containers.run("busybox", ["sh", "-c", "echo kept > /data/f; exec sleep 300"], name="pyweb", network="pynet", volumes={"pyvol": {"bind": "/data", "mode": "rw"}}, detach=True)
net.reload()
assert list(net.containers[0].attrs["NetworkSettings"]["Networks"]) == ["pynet"], net.containers
address = c.containers.get("pyweb").attrs["NetworkSettings"]["Networks"]["pynet"]["IPAddress"]
assert address.startswith("10.147.14."), address
code, out = ct.exec_run(["cat", "/data/f"])
assert (code, out) == (0, b"kept\n"), (code, out)
ct.remove(force=True)
net.remove()
vol.remove()
assert [n.name for n in c.networks.list()] == ["bridge", "host", "none"]
print("OK")
"#;
    // Removed whatever the script got to.
    let _pyweb = Removed(&forge, "pyweb");
    let o = std::process::Command::new("python3").args(["-c", script, server.socket.to_str().unwrap()]).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && out.trim() == "OK", "{out}\n{err}\nserver log:\n{}", server.log());
}

#[test]
fn docker_cli_connects_a_created_container_which_is_attached_at_start() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    server.ok(&["network", "create", "--subnet", "10.147.15.0/24", "front"]);
    server.ok(&["network", "create", "--subnet", "10.147.16.0/24", "back"]);
    server.ok(&["network", "create", "--subnet", "10.147.17.0/24", "side"]);
    server.ok(&["create", "--name", "both", "--network", "front", "busybox", "sleep", "300"]);
    let _both = Removed(&forge, "both");
    server.ok(&["network", "connect", "--alias", "bee", "back", "both"]);
    // Listed before it runs, with no address yet, as docker's.
    let listed = server.ok(&["inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}:{{$v.IPAddress}}:{{$v.Aliases}} {{end}}", "both"]).stdout;
    assert!(listed.starts_with("back::[bee ") && listed.contains(" front::"), "{listed}");
    let twice = server.docker(&["network", "connect", "back", "both"]);
    assert!(!twice.ok && twice.stderr.contains("already connected"), "{}", twice.stderr);
    // Disconnected before it runs: not attached at start.
    server.ok(&["network", "connect", "side", "both"]);
    server.ok(&["network", "disconnect", "side", "both"]);
    let again = server.docker(&["network", "disconnect", "side", "both"]);
    assert!(!again.ok, "a second disconnect succeeded");
    server.ok(&["start", "both"]);
    let networks = server.ok(&["inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}:{{$v.IPAddress}}:{{$v.Aliases}} {{end}}", "both"]).stdout;
    let error = server.ok(&["inspect", "--format", "{{.State.Error}}", "both"]).stdout;
    assert!(networks.contains("back:10.147.16.") && networks.contains("front:10.147.15.") && networks.contains(":[bee "), "{networks} {error}");
    assert!(!networks.contains("side"), "{networks}");
    let addresses = server.ok(&["exec", "both", "ip", "-4", "-o", "addr"]).stdout;
    assert!(addresses.contains("10.147.15.") && addresses.contains("10.147.16.") && !addresses.contains("10.147.17."), "{addresses}");
    // The daemonless CLI connects a created container too.
    forge.ok(&["create", "--name", "later", "--network", "front", "busybox", "sleep", "300"]);
    let _later = Removed(&forge, "later");
    forge.ok(&["network", "connect", "back", "later"]);
    forge.ok(&["start", "later"]);
    let addresses = forge.ok(&["exec", "later", "ip", "-4", "-o", "addr"]).stdout;
    assert!(addresses.contains("10.147.16."), "{addresses}");
    // A create naming two networks (newer clients' `--network front --network back`) attaches
    // both at start; a failed one leaves no container behind.
    let body = br#"{"Image": "busybox", "Cmd": ["sleep", "300"], "HostConfig": {"NetworkMode": "front"}, "NetworkingConfig": {"EndpointsConfig": {"front": {}, "back": {"Aliases": ["bee2"]}}}}"#;
    let (code, answer) = raw(&server.socket, "POST", "/v1.43/containers/create?name=pair", "application/json", body);
    assert_eq!(code, 201, "{answer}");
    let _pair = Removed(&forge, "pair");
    server.ok(&["start", "pair"]);
    let networks = server.ok(&["inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}:{{$v.IPAddress}}:{{$v.Aliases}} {{end}}", "pair"]).stdout;
    assert!(networks.contains("back:10.147.16.") && networks.contains("front:10.147.15.") && networks.contains(":[bee2 "), "{networks}");
    // Both attached before the command starts: its first instruction sees both addresses.
    let body = br#"{"Image": "busybox", "Cmd": ["ip", "-4", "-o", "addr"], "HostConfig": {"NetworkMode": "front"}, "NetworkingConfig": {"EndpointsConfig": {"front": {}, "back": {}}}}"#;
    let (code, answer) = raw(&server.socket, "POST", "/v1.43/containers/create?name=first-sight", "application/json", body);
    assert_eq!(code, 201, "{answer}");
    let _first_sight = Removed(&forge, "first-sight");
    let seen = server.ok(&["start", "-a", "first-sight"]).stdout;
    assert!(seen.contains("inet 10.147.15.") && seen.contains("inet 10.147.16."), "{seen}");
    drop(_first_sight);
    let body = br#"{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "front"}, "NetworkingConfig": {"EndpointsConfig": {"front": {}, "nowhere": {}}}}"#;
    let (code, answer) = raw(&server.socket, "POST", "/v1.43/containers/create?name=lost", "application/json", body);
    assert_eq!((code, message(&answer).contains("nowhere")), (404, true), "{answer}");
    assert!(!server.ok(&["ps", "-a", "--format", "{{.Names}}"]).stdout.contains("lost"));
    drop((_pair, _later, _both));
    for n in ["front", "back", "side"] {
        server.ok(&["network", "rm", n]);
    }
}
