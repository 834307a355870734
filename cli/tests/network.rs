//! Networking through the forge binary: RUN steps on the default (bridged) network, `host`
//! and `none`, and what a killed forge leaves for `forge network prune`. Traffic goes only
//! between the host and namespaces forge made, or to 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{eventually, Forge, Ran, Removed};

/// An HTTP server on the host's 127.0.0.1 that answers every request with `body`; stopped
/// (and its thread joined) when dropped.
struct HostServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostServer {
    fn start(body: &'static str) -> HostServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = write!(conn, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            }
        });
        HostServer { port, stop, thread: Some(thread) }
    }
}

impl Drop for HostServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn step_output(r: &Ran) -> String {
    r.stderr.lines().map(|l| if l.starts_with('#') { l.split_once(' ').map_or(l, |(_, rest)| rest) } else { l }).collect::<Vec<_>>().join("\n")
}

fn network_dir(forge: &Forge) -> PathBuf {
    forge.store().join("forge").join("network")
}

/// The files in a directory of the network store.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
}

/// The bridge of the store's default network, once it was made.
fn bridge_of(forge: &Forge) -> Option<String> {
    let text = std::fs::read_to_string(network_dir(forge).join("networks").join("bridge.json")).ok()?;
    Some(serde_json::from_str::<serde_json::Value>(&text).unwrap()["bridge"].as_str().unwrap().to_string())
}

fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", name]).output().unwrap().status.success()
}

/// forge's iptables rules tagged for `bridge`.
fn rules_of(bridge: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (table, chain) in [("nat", "FORGE-POSTROUTING"), ("filter", "FORGE-FORWARD")] {
        let o = Command::new("iptables").args(["-w", "-t", table, "-S", chain]).output().unwrap();
        out.extend(String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.split_whitespace().any(|w| w.trim_matches('"') == format!("forge:{bridge}"))).map(String::from));
    }
    out
}

#[test]
fn run_on_the_default_network_cannot_reach_the_hosts_loopback_but_host_can() {
    let forge = Forge::with_busybox();
    let server = HostServer::start("hello-from-host\n");
    // busybox's nc: its static wget crashes on a rootfs without glibc's NSS libraries.
    let dockerfile = format!("FROM busybox:latest\nRUN echo x | nc 127.0.0.1 {}\n", server.port);
    let ctx = forge.context("loopback", &[("Dockerfile", &dockerfile)]);

    let r = forge.build(&ctx, "lo:default", &[]);
    assert!(!r.ok, "a step on the default network reached the host's loopback:\n{}", r.stderr);
    assert!(!step_output(&r).contains("hello-from-host"), "{}", r.stderr);

    // The same through RUN --network=default (BuildKit's: the build's network, which is the
    // default one here).
    let explicit = format!("FROM busybox:latest\nRUN --network=default echo x | nc 127.0.0.1 {}\n", server.port);
    let ctx2 = forge.context("loopback2", &[("Dockerfile", &explicit)]);
    let r = forge.build(&ctx2, "lo:explicit", &[]);
    assert!(!r.ok && !step_output(&r).contains("hello-from-host"), "{}", r.stderr);

    let r = forge.build(&ctx, "lo:host", &["--network", "host"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(step_output(&r).contains("hello-from-host"), "{}", r.stderr);
}

#[test]
fn default_network_gives_eth0_and_a_default_route_none_only_loopback() {
    let forge = Forge::with_busybox();
    let probe = "FROM busybox:latest\nRUN ls /sys/class/net; cat /proc/net/route; ip -4 -o addr show\n";
    let ctx = forge.context("ifaces", &[("Dockerfile", probe)]);

    let r = forge.build(&ctx, "if:default", &[]);
    assert!(r.ok, "{}", r.stderr);
    let out = step_output(&r);
    assert!(out.lines().any(|l| l.trim() == "eth0") && out.lines().any(|l| l.trim() == "lo"), "{out}");
    // A default route (destination 0) through eth0, and an address on eth0.
    assert!(out.lines().any(|l| l.starts_with("eth0\t00000000\t")), "{out}");
    assert!(out.contains(": eth0    inet ") || out.lines().any(|l| l.contains("eth0") && l.contains("inet ")), "{out}");

    // Builds on the default network stay cacheable: the same step is reused.
    let r = forge.build(&ctx, "if:again", &[]);
    assert!(r.ok && r.stderr.contains("CACHED"), "{}", r.stderr);

    let r = forge.build(&ctx, "if:none", &["--network", "none", "--no-cache"]);
    assert!(r.ok, "{}", r.stderr);
    let out = step_output(&r);
    assert!(out.lines().any(|l| l.trim() == "lo") && !out.contains("eth0"), "{out}");

    // Each step's namespace, veth pair and lease went with the step.
    let dir = network_dir(&forge);
    assert_eq!(entries(&dir.join("leases")), Vec::<String>::new());
    assert_eq!(entries(&dir.join("netns")), Vec::<String>::new());
    let bridge = bridge_of(&forge).expect("the default network was made");
    assert!(link_exists(&bridge));
    assert!(rules_of(&bridge).iter().any(|r| r.contains("MASQUERADE")), "no NAT rule for {bridge}: {:?}", rules_of(&bridge));

    // And prune takes the unused bridge and its rules away.
    forge.ok(&["network", "prune"]);
    assert!(!link_exists(&bridge), "{bridge} survived prune");
    assert_eq!(rules_of(&bridge), Vec::<String>::new());
}

#[test]
fn a_forge_killed_during_network_set_up_leaves_nothing_after_prune() {
    let forge = Forge::with_busybox();
    let leases = network_dir(&forge).join("leases");
    let mut veths = Vec::new();
    for i in 0..4 {
        let ctx = forge.context(&format!("kill{i}"), &[("Dockerfile", &format!("FROM busybox:latest\nRUN echo {i}; sleep 600\n"))]);
        let mut child = forge.cmd().args(["build", "--progress", "plain", "-t", &format!("kill:{i}")]).arg(&ctx).stderr(std::process::Stdio::null()).spawn().unwrap();
        // Killed as soon as the lease exists, and a little later each round: somewhere in the
        // middle of the namespace's set-up, or in the step.
        let leased = common::eventually(|| entries(&leases).iter().any(|e| e.ends_with(".json")));
        std::thread::sleep(std::time::Duration::from_millis(15 * i));
        let _ = child.kill();
        let _ = child.wait();
        assert!(leased, "no lease appeared");
        for e in entries(&leases).iter().filter(|e| e.ends_with(".json")) {
            let text = std::fs::read_to_string(leases.join(e)).unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                veths.push(v["veth"].as_str().unwrap().to_string());
            }
        }
    }
    let bridge = bridge_of(&forge).unwrap();
    let r = forge.ok(&["network", "prune"]);
    assert!(r.stdout.contains(&bridge), "{}", r.stdout);
    assert_eq!(entries(&leases), Vec::<String>::new());
    assert_eq!(entries(&network_dir(&forge).join("netns")), Vec::<String>::new());
    for v in &veths {
        assert!(!link_exists(v), "veth {v} survived");
    }
    assert!(!link_exists(&bridge));
    assert_eq!(rules_of(&bridge), Vec::<String>::new());
    // The next build works as before.
    let ctx = forge.context("after", &[("Dockerfile", "FROM busybox:latest\nRUN ls /sys/class/net\n")]);
    let r = forge.build(&ctx, "after:1", &[]);
    assert!(r.ok && step_output(&r).contains("eth0"), "{}", r.stderr);
}

/// A `forge run` in the background, removed (`rm -f`) and reaped when dropped.
struct Background<'a> {
    forge: &'a Forge,
    name: String,
    child: std::process::Child,
}

impl<'a> Background<'a> {
    fn run(forge: &'a Forge, name: &str, args: &[&str]) -> Background<'a> {
        let child = forge.cmd().args(["run", "--name", name]).args(args).stdout(std::process::Stdio::null()).spawn().unwrap();
        let bg = Background { forge, name: name.to_string(), child };
        assert!(common::eventually(|| forge.run(&["ps"]).stdout.lines().any(|l| l.ends_with(&format!(" {name}")))), "{name} did not start");
        bg
    }
}

impl Drop for Background<'_> {
    fn drop(&mut self) {
        let _ = self.forge.run(&["rm", "-f", &self.name]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on the host (free now; the test binds it right away).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An HTTP GET of `/` from the host; the body, or None when nothing answers.
fn http_get(ip: &str, port: u16) -> Option<String> {
    let mut s = TcpStream::connect((ip, port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// busybox httpd serving `text` as its index on port 8080.
fn httpd(text: &str) -> String {
    format!("mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 8080 -h /www")
}

#[test]
fn containers_get_their_network_mode() {
    let forge = Forge::with_busybox();
    let probe = "ls /sys/class/net; echo ==; cat /etc/hosts; echo ==; cat /etc/resolv.conf; echo ==; cat /etc/hostname; echo ==; ip -4 -o addr show eth0";
    let r = forge.ok(&["run", "--rm", "--hostname", "web", "--dns", "192.0.2.53", "--add-host", "db:198.51.100.7", "busybox", "sh", "-c", probe]);
    let parts: Vec<&str> = r.stdout.split("==\n").collect();
    assert_eq!(parts[0], "eth0\nlo\n", "{}", r.stdout);
    let bridge = bridge_of(&forge).unwrap();
    let net: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(network_dir(&forge).join("networks/bridge.json")).unwrap()).unwrap();
    let subnet = net["subnet"].as_str().unwrap();
    let prefix = subnet.rsplit_once('.').unwrap().0.rsplit_once('.').unwrap().0;
    let ip = parts[4].split_whitespace().nth(3).unwrap().split('/').next().unwrap().to_string();
    assert!(ip.starts_with(prefix), "{ip} is not in {subnet}");
    assert!(parts[1].contains("198.51.100.7\tdb\n") && parts[1].contains(&format!("{ip}\tweb\n")), "{}", parts[1]);
    assert_eq!(parts[2], "nameserver 192.0.2.53\n");
    assert_eq!(parts[3], "web\n");

    // --ip gives the address asked for.
    let wanted = format!("{prefix}.0.200");
    let r = forge.ok(&["run", "--rm", "--ip", &wanted, "busybox", "ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(r.stdout.contains(&format!("inet {wanted}/")), "{}", r.stdout);

    // none: loopback only. host: the host's interfaces.
    let r = forge.ok(&["run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net"]);
    assert_eq!(r.stdout, "lo\n");
    let r = forge.ok(&["run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net"]);
    let mut host: Vec<String> = entries(Path::new("/sys/class/net"));
    host.sort();
    let mut seen: Vec<String> = r.stdout.lines().map(String::from).collect();
    seen.sort();
    // Links may come and go (other tests' veths) between the two listings; the host's own stay.
    assert!(["lo", &bridge].iter().all(|l| seen.iter().any(|s| s == l)), "{seen:?} vs {host:?}");

    assert_eq!(entries(&network_dir(&forge).join("leases")), Vec::<String>::new());
}

#[test]
fn a_bridged_container_lets_any_user_bind_low_ports_and_ping_as_docker_does() {
    let forge = Forge::with_busybox();
    // Docker 28.5 sets both in a container's own namespace (seen side by side on its bridge);
    // the host's defaults (1024, "1 0") stay the host's.
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    let probe = "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/net/ipv4/ping_group_range; httpd -p 80 -h / && echo bound-80";
    for network in ["bridge", "lowports"] {
        if network != "bridge" {
            forge.ok(&["network", "create", network]);
        }
        let r = forge.ok(&["run", "--rm", "--network", network, "--user", "65534", "busybox", "sh", "-c", probe]);
        assert_eq!(r.stdout, "0\n0\t2147483647\nbound-80\n", "{network}: {}", r.stderr);
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap(), host);
}

#[test]
fn published_ports_answer_on_loopback_and_the_bridge_and_are_never_shared() {
    let forge = Forge::with_busybox();
    let port = free_port();
    let publish = format!("{port}:8080");
    let _web = Background::run(&forge, "web", &["-p", &publish, "busybox", "sh", "-c", &httpd("hello-from-web")]);
    assert!(common::eventually(|| http_get("127.0.0.1", port).is_some_and(|b| b == "hello-from-web\n")), "127.0.0.1:{port} did not answer");
    let gateway: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(network_dir(&forge).join("networks/bridge.json")).unwrap()).unwrap();
    assert_eq!(http_get(gateway["gateway"].as_str().unwrap(), port).as_deref(), Some("hello-from-web\n"));

    assert_eq!(forge.ok(&["port", "web"]).stdout, format!("8080/tcp -> 0.0.0.0:{port}\n"));
    assert_eq!(forge.ok(&["port", "web", "8080"]).stdout, format!("0.0.0.0:{port}\n"));
    assert!(forge.ok(&["ps"]).stdout.contains(&format!("0.0.0.0:{port}->8080/tcp")));

    // A second container cannot have the same host port.
    let r = forge.run(&["run", "--rm", "--name", "web2", "-p", &publish, "busybox", "true"]);
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("publishing 8080/tcp -> 0.0.0.0:{port}")) && r.stderr.contains("in use"), "{}", r.stderr);
    let _ = forge.run(&["rm", "-f", "web2"]);

    // -P: the image's EXPOSEd ports on free host ports.
    let ctx = forge.context("exposed", &[("Dockerfile", "FROM busybox:latest\nEXPOSE 8080\n")]);
    forge.build(&ctx, "exposed:1", &[]);
    let _all = Background::run(&forge, "all", &["-P", "exposed:1", "sh", "-c", &httpd("hello-from-all")]);
    let line = forge.ok(&["port", "all", "8080/tcp"]).stdout;
    let picked: u16 = line.trim().rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(picked != 0 && picked != port);
    assert!(common::eventually(|| http_get("127.0.0.1", picked).is_some_and(|b| b == "hello-from-all\n")));
}

/// Connects to `ip`:`port`, sends `payload` while reading what comes back, shuts its write
/// side down at the end and returns all that came back until the other side ended; None when
/// the connection failed (the container not listening yet: the proxy closes it).
fn exchange(ip: &str, port: u16, payload: &[u8]) -> Option<Vec<u8>> {
    let s = TcpStream::connect((ip, port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let mut reader = s.try_clone().ok()?;
    std::thread::scope(|scope| {
        let back = scope.spawn(move || {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).map(|_| got)
        });
        let sent = (&s).write_all(payload).and_then(|()| s.shutdown(std::net::Shutdown::Write));
        let got = back.join().unwrap().ok()?;
        sent.ok().map(|()| got)
    })
}

/// `len` bytes that differ from one offset to the next, so a lost or repeated chunk shows.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn published_ports_carry_megabytes_both_ways_intact() {
    let forge = Forge::with_busybox();
    let port = free_port();
    // Every connection gets a `cat`: what goes in comes back, while more is still going in.
    let _echo = Background::run(&forge, "echo", &["-p", &format!("{port}:8080"), "busybox", "nc", "-ll", "-p", "8080", "-e", "cat"]);
    assert!(common::eventually(|| exchange("127.0.0.1", port, b"ping").is_some_and(|b| b == b"ping")), "127.0.0.1:{port} did not echo");
    let net: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(network_dir(&forge).join("networks/bridge.json")).unwrap()).unwrap();
    for (ip, len) in [("127.0.0.1", 24 << 20), (net["gateway"].as_str().unwrap(), 9 << 20)] {
        let sent = payload(len);
        let back = exchange(ip, port, &sent).unwrap_or_else(|| panic!("{ip}:{port}: the connection failed"));
        assert_eq!((back.len(), sha256_hex(&back)), (sent.len(), sha256_hex(&sent)), "{ip}:{port}");
    }
}

#[test]
fn a_published_port_passes_the_clients_end_and_then_the_answer() {
    let forge = Forge::with_busybox();
    let port = free_port();
    // sha256sum answers only once its input ended: the client's shutdown of its write side has
    // to go through the proxy while the way back stays open.
    let _sum = Background::run(&forge, "sum", &["-p", &format!("127.0.0.1:{port}:8080"), "busybox", "nc", "-ll", "-p", "8080", "-e", "sha256sum"]);
    let answer = |data: &[u8]| format!("{}  -\n", sha256_hex(data)).into_bytes();
    assert!(common::eventually(|| exchange("127.0.0.1", port, b"ping").is_some_and(|b| b == answer(b"ping"))), "127.0.0.1:{port} did not answer");
    let sent = payload(6 << 20);
    assert_eq!(exchange("127.0.0.1", port, &sent).map(|b| String::from_utf8_lossy(&b).into_owned()), Some(String::from_utf8(answer(&sent)).unwrap()));
}

#[test]
fn container_mode_shares_the_other_containers_namespace() {
    let forge = Forge::with_busybox();
    let _a = Background::run(&forge, "first", &["busybox", "sh", "-c", "mkdir /www && ip -4 -o addr show eth0 | awk '{print $4}' > /www/index.html && exec httpd -f -p 8080 -h /www"]);
    let probe = "ip -4 -o addr show eth0 | awk '{print $4}'; for i in 1 2 3 4 5 6 7 8 9 10; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080 | tail -1 && break; sleep 0.5; done";
    let r = forge.ok(&["run", "--rm", "--network", "container:first", "busybox", "sh", "-c", probe]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(lines[0].contains('/') && lines[0] == lines[1], "not the same address as first, or its server not on localhost: {}", r.stdout);

    let r = forge.run(&["run", "--rm", "--network", "container:nosuch", "busybox", "true"]);
    assert_eq!(r.code, Some(125), "{}", r.stderr);
}

/// The host PID of a running container's init, from its state record.
fn pid_of(forge: &Forge, name: &str) -> u32 {
    let id = std::fs::read_to_string(forge.store().join("forge/container-names").join(name)).unwrap();
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(forge.store().join("forge/containers").join(id.trim()).join("state.json")).unwrap()).unwrap();
    state["Pid"].as_u64().unwrap() as u32
}

/// `forge network inspect NAME` as JSON.
fn inspect_network(forge: &Forge, name: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(&forge.ok(&["network", "inspect", name]).stdout).unwrap()[0].clone()
}

#[test]
fn user_networks_resolve_names_and_aliases_and_are_isolated() {
    let forge = Forge::with_busybox();
    forge.ok(&["network", "create", "front"]);
    forge.ok(&["network", "create", "--internal", "--subnet", "10.214.99.0/24", "back"]);
    let r = forge.run(&["network", "create", "front"]);
    assert!(!r.ok && r.stderr.contains("already exists"), "{}", r.stderr);
    let ls = forge.ok(&["network", "ls"]).stdout;
    assert!(ls.contains("front") && ls.contains("10.214.99.0/24"), "{ls}");

    // A client started before the server finds it by name once it is up: hosts files are kept
    // current as containers come and go.
    let fetch = |host: &str| format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {host} 8080 2>/dev/null | grep -q hello-srv");
    let early = format!("for i in $(seq 1 150); do {} && exit 0; sleep 0.2; done; exit 1", fetch("srv"));
    let mut early = forge.cmd().args(["run", "--rm", "--network", "front", "busybox", "sh", "-c", &early]).spawn().unwrap();
    let _srv = Background::run(&forge, "srv", &["--network", "front", "--network-alias", "web", "busybox", "sh", "-c", &httpd("hello-srv")]);
    let status = early.wait().unwrap();
    assert!(status.success(), "a container started earlier never reached srv by name");
    let both = format!("{} && {} && echo by-name-and-alias", fetch("srv"), fetch("web"));
    let both = format!("for i in $(seq 1 50); do ({both}) && exit 0; sleep 0.2; done; exit 1");
    let r = forge.ok(&["run", "--rm", "--network", "front", "busybox", "sh", "-c", &both]);
    assert!(r.stdout.contains("by-name-and-alias"), "{}", r.stdout);

    // From another network (the default one) srv's address does not answer, nor its name.
    let srv = inspect_network(&forge, "front");
    let srv_ip = srv["Containers"].as_array().unwrap().iter().find(|c| c["Names"][0] == "srv").unwrap()["IPv4Address"].as_str().unwrap().to_string();
    let r = forge.run(&["run", "--rm", "busybox", "sh", "-c", &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {srv_ip} 8080")]);
    assert!(!r.stdout.contains("hello-srv"), "the default network reached srv on front: {}", r.stdout);

    // Internal: no default route, no NAT rule.
    let r = forge.ok(&["run", "--rm", "--network", "back", "busybox", "cat", "/proc/net/route"]);
    assert!(!r.stdout.lines().any(|l| l.split_whitespace().nth(1) == Some("00000000")), "{}", r.stdout);
    let back = inspect_network(&forge, "back");
    let back_bridge = back["Bridge"].as_str().unwrap().to_string();
    assert!(rules_of(&back_bridge).iter().all(|r| !r.contains("MASQUERADE")), "{:?}", rules_of(&back_bridge));
    let front_bridge = srv["Bridge"].as_str().unwrap().to_string();
    assert!(rules_of(&front_bridge).iter().any(|r| r.contains("MASQUERADE")));

    // connect: a container on the default network gets an interface on front, and reaches
    // srv by name there; disconnect takes it away.
    let _other = Background::run(&forge, "other", &["busybox", "sleep", "600"]);
    forge.ok(&["network", "connect", "front", "other"]);
    let fetch_srv = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc {srv_ip} 8080 | grep -q hello-srv && echo reached");
    let r = Command::new("nsenter").arg(format!("--net=/proc/{}/ns/net", pid_of(&forge, "other"))).args(["sh", "-c", &format!("ip -o link; {fetch_srv}")]).output().unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains(": eth1@") && out.contains("reached"), "{out}");
    let r = forge.run(&["network", "connect", "front", "other"]);
    assert!(!r.ok && r.stderr.contains("already connected"), "{}", r.stderr);
    forge.ok(&["network", "disconnect", "front", "other"]);
    let r = Command::new("nsenter").arg(format!("--net=/proc/{}/ns/net", pid_of(&forge, "other"))).args(["ip", "-o", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&r.stdout).contains("eth1"));
    // Connected again, then gone: its lease goes with the next command.
    forge.ok(&["network", "connect", "--alias", "again", "front", "other"]);
    assert!(inspect_network(&forge, "front")["Containers"].to_string().contains("again"));
    drop(_other);
    assert!(!inspect_network(&forge, "front")["Containers"].to_string().contains("again"));

    // In use: not removed. Unused: removed with its bridge and rules.
    let r = forge.run(&["network", "rm", "front"]);
    assert!(!r.ok && r.stderr.contains("attached"), "{}", r.stderr);
    drop(_srv);
    forge.ok(&["network", "rm", "front", "back"]);
    for b in [&front_bridge, &back_bridge] {
        assert!(!link_exists(b), "{b} survived rm");
        assert_eq!(rules_of(b), Vec::<String>::new());
    }
    assert!(!forge.ok(&["network", "ls"]).stdout.contains("front"));
}

/// `forge exec NAME cat /etc/hosts`.
fn hosts_of(forge: &Forge, name: &str) -> String {
    forge.ok(&["exec", name, "cat", "/etc/hosts"]).stdout
}

/// Whether a hosts file has a line naming `name`.
fn names(hosts: &str, name: &str) -> bool {
    hosts.lines().any(|l| l.split_whitespace().skip(1).any(|n| n == name))
}

#[test]
fn connected_containers_and_their_peers_find_each_other_both_ways() {
    let forge = Forge::with_busybox();
    forge.ok(&["network", "create", "mesh"]);
    // `from` fetches `body` from `host`:8080 by name (retried while the server comes up).
    let reaches = |from: &str, host: &str, body: &str| {
        let get = format!("for i in $(seq 1 50); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {host} 8080 2>/dev/null | grep -q {body} && exit 0; sleep 0.2; done; exit 1");
        forge.run(&["exec", from, "sh", "-c", &get]).ok
    };
    let _srv = Background::run(&forge, "srv", &["--network", "mesh", "--network-alias", "web", "busybox", "sh", "-c", &httpd("hello-srv")]);
    // On the default network, then connected: it finds srv by name and alias, and srv finds it
    // by name and by the alias given at connect.
    let other = Background::run(&forge, "other", &["busybox", "sh", "-c", &httpd("hello-other")]);
    forge.ok(&["network", "connect", "--alias", "oth", "mesh", "other"]);
    let (hosts, srv_hosts) = (hosts_of(&forge, "other"), hosts_of(&forge, "srv"));
    assert!(names(&hosts, "srv") && names(&hosts, "web"), "the connected container does not know its peers: {hosts}");
    assert!(names(&srv_hosts, "other") && names(&srv_hosts, "oth"), "{srv_hosts}");
    assert!(reaches("other", "srv", "hello-srv") && reaches("other", "web", "hello-srv"));
    assert!(reaches("srv", "other", "hello-other") && reaches("srv", "oth", "hello-other"));

    // A container started later knows it, and it knows the newcomer.
    let _late = Background::run(&forge, "late", &["--network", "mesh", "busybox", "sh", "-c", &httpd("hello-late")]);
    assert!(reaches("other", "late", "hello-late") && reaches("late", "oth", "hello-other"));

    // Disconnected: its peers' names leave its file and its names leave theirs.
    forge.ok(&["network", "disconnect", "mesh", "other"]);
    let hosts = hosts_of(&forge, "other");
    assert!(!names(&hosts, "srv") && !names(&hosts, "late") && names(&hosts, "localhost"), "{hosts}");
    for peer in ["srv", "late"] {
        let h = hosts_of(&forge, peer);
        assert!(!names(&h, "other") && !names(&h, "oth"), "{peer} still names other: {h}");
    }

    // Connected again under another alias, then removed: gone from its peers' files.
    forge.ok(&["network", "connect", "--alias", "back", "mesh", "other"]);
    assert!(names(&hosts_of(&forge, "srv"), "back") && names(&hosts_of(&forge, "other"), "late"));
    drop(other);
    for peer in ["srv", "late"] {
        let h = hosts_of(&forge, peer);
        assert!(!names(&h, "other") && !names(&h, "back"), "{peer} still names the removed container: {h}");
    }

    // No network of its own: refused (with host, the interface would land in the host's namespace).
    let hosty = Background::run(&forge, "hosty", &["--network", "host", "busybox", "sleep", "600"]);
    let links = entries(Path::new("/sys/class/net")).into_iter().filter(|l| l.starts_with("eth")).collect::<Vec<_>>();
    let r = forge.run(&["network", "connect", "mesh", "hosty"]);
    assert!(!r.ok && r.stderr.contains("network mode \"host\""), "{}", r.stderr);
    assert_eq!(entries(Path::new("/sys/class/net")).into_iter().filter(|l| l.starts_with("eth")).collect::<Vec<_>>(), links);
    assert!(!inspect_network(&forge, "mesh")["Containers"].to_string().contains("hosty"));
    drop(hosty);
}

/// The IPv4 addresses of `ip -4 -o addr` output, by interface (`eth1 10.147.41.2`), sorted.
fn addresses(out: &str) -> Vec<String> {
    let mut found: Vec<String> = out.lines().filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let at = f.iter().position(|w| *w == "inet")?;
        Some(format!("{} {}", f.get(1)?.trim_end_matches(':'), f.get(at + 1)?.split('/').next()?))
    }).collect();
    found.sort();
    found
}

/// Whether `addresses` has one on `interface` in the /24 `prefix` (`10.147.41.`).
fn on(addresses: &[String], interface: &str, prefix: &str) -> bool {
    addresses.iter().any(|a| a.starts_with(&format!("{interface} {prefix}")))
}

#[test]
fn networks_connected_before_a_start_are_there_when_the_command_starts() {
    let forge = Forge::with_busybox();
    forge.ok(&["network", "create", "--subnet", "10.147.40.0/24", "first"]);
    forge.ok(&["network", "create", "--subnet", "10.147.41.0/24", "early"]);
    // Its very first instruction lists its addresses: docker attaches every network before
    // the command starts.
    forge.ok(&["create", "--name", "early-bird", "--network", "first", "busybox", "ip", "-4", "-o", "addr"]);
    let _bird = Removed(&forge, "early-bird");
    forge.ok(&["network", "connect", "early", "early-bird"]);
    // In the foreground, and under a monitor (its log), at each start.
    for _ in 0..2 {
        let seen = addresses(&forge.ok(&["start", "-a", "early-bird"]).stdout);
        assert!(on(&seen, "eth0", "10.147.40.") && on(&seen, "eth1", "10.147.41."), "{seen:?}");
    }
    let logged = forge.ok(&["logs", "early-bird"]).stdout.len();
    forge.ok(&["start", "early-bird"]);
    assert_eq!(forge.ok(&["wait", "early-bird"]).stdout, "0\n");
    let seen = addresses(&forge.ok(&["logs", "early-bird"]).stdout[logged..]);
    assert!(on(&seen, "eth0", "10.147.40.") && on(&seen, "eth1", "10.147.41."), "{seen:?}");
    drop(_bird);
    forge.ok(&["network", "rm", "first", "early"]);
}

#[test]
fn a_network_connected_to_a_running_container_is_there_again_after_a_restart() {
    let forge = Forge::with_busybox();
    forge.ok(&["network", "create", "--subnet", "10.147.42.0/24", "later"]);
    let addresses_of = |name: &str| addresses(&forge.ok(&["exec", name, "ip", "-4", "-o", "addr"]).stdout);

    // `restart`: stopped, started again, on the network it was connected to while it ran, and
    // known there by the alias given at connect.
    forge.ok(&["run", "-d", "--name", "live", "busybox", "sleep", "600"]);
    let _live = Removed(&forge, "live");
    forge.ok(&["network", "connect", "--alias", "lively", "later", "live"]);
    assert!(on(&addresses_of("live"), "eth1", "10.147.42."));
    forge.ok(&["restart", "-t", "0", "live"]);
    assert!(on(&addresses_of("live"), "eth1", "10.147.42."), "{:?}", addresses_of("live"));
    assert!(inspect_network(&forge, "later")["Containers"].to_string().contains("lively"));
    // Connected twice: refused, once recorded as once attached.
    let r = forge.run(&["network", "connect", "later", "live"]);
    assert!(!r.ok && r.stderr.contains("already connected"), "{}", r.stderr);
    // Disconnected: gone now and after the next restart.
    forge.ok(&["network", "disconnect", "later", "live"]);
    assert!(!on(&addresses_of("live"), "eth1", ""));
    forge.ok(&["restart", "-t", "0", "live"]);
    let seen = addresses_of("live");
    assert!(on(&seen, "eth0", "") && !on(&seen, "eth1", ""), "{seen:?}");
    let r = forge.run(&["network", "disconnect", "later", "live"]);
    assert!(!r.ok, "a second disconnect succeeded");

    // A restart policy's restart: each run prints its addresses first, then waits for /go. It
    // exits a second after /go appears, not at once: its exit kills everything in its PID
    // namespace, and the `exec` that made /go could still be on its way out (seen once in a
    // rehearsal: the exec's init killed before it reported `touch`'s status).
    let script = "echo run; ip -4 -o addr; until [ -e /go ]; do sleep 0.1; done; rm /go; sleep 1; exit 1";
    forge.ok(&["run", "-d", "--name", "again", "--restart", "on-failure:1", "busybox", "sh", "-c", script]);
    let _again = Removed(&forge, "again");
    let runs = || forge.ok(&["logs", "again"]).stdout.matches("run\n").count();
    assert!(eventually(|| runs() == 1), "it never ran");
    forge.ok(&["network", "connect", "later", "again"]);
    forge.ok(&["exec", "again", "touch", "/go"]);
    assert!(eventually(|| runs() == 2), "the policy did not restart it");
    forge.ok(&["exec", "again", "touch", "/go"]);
    assert_eq!(forge.ok(&["wait", "again"]).stdout, "1\n");
    let log = forge.ok(&["logs", "again"]).stdout;
    let (first, second) = log.rsplit_once("run\n").unwrap();
    assert!(!on(&addresses(first), "eth1", "") && on(&addresses(second), "eth1", "10.147.42."), "{log}");
    drop((_again, _live));
    forge.ok(&["network", "rm", "later"]);
}

/// The host's veth ends forge made (`fv<id>`).
fn forge_veths() -> Vec<String> {
    entries(Path::new("/sys/class/net")).into_iter().filter(|n| n.starts_with("fv")).collect()
}

#[test]
fn run_rm_cycles_and_a_killed_run_leave_no_veth_lease_or_namespace() {
    let forge = Forge::with_busybox();
    let dir = network_dir(&forge);
    // Bounded: 100 containers, a few at a time, with ports and a user network among them.
    forge.ok(&["network", "create", "cycles"]);
    for round in 0..25 {
        let children: Vec<_> = (0..4)
            .map(|i| {
                let mut c = forge.cmd();
                c.args(["run", "--rm"]);
                match i {
                    1 => c.args(["--network", "cycles", "--network-alias", &format!("c{round}")]),
                    2 => c.args(["-p", "127.0.0.1::80"]),
                    _ => &mut c,
                };
                c.args(["busybox", "true"]).stdout(std::process::Stdio::null()).spawn().unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
    }
    assert_eq!(entries(&dir.join("leases")), Vec::<String>::new());
    assert_eq!(entries(&dir.join("netns")), Vec::<String>::new());

    // A forge run killed while its container runs (or while its network is set up): the next
    // forge command finds the lease of a dead owner and removes what it names.
    let mut killed = Vec::new();
    for i in 0..3u64 {
        let mut child = forge.cmd().args(["run", "--name", &format!("killed{i}"), "busybox", "sleep", "600"]).spawn().unwrap();
        assert!(common::eventually(|| entries(&dir.join("leases")).iter().any(|e| e.ends_with(".json"))));
        std::thread::sleep(std::time::Duration::from_millis(10 * i));
        let _ = child.kill();
        let _ = child.wait();
        killed.extend(entries(&dir.join("leases")).into_iter().filter(|e| e.ends_with(".json")).filter_map(|e| {
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("leases").join(e)).ok()?).ok()?;
            Some(v["veth"].as_str()?.to_string())
        }));
        forge.ok(&["ps", "-a"]);
    }
    assert_eq!(entries(&dir.join("leases")), Vec::<String>::new());
    assert_eq!(entries(&dir.join("netns")), Vec::<String>::new());
    let left: Vec<String> = forge_veths().into_iter().filter(|v| killed.contains(v)).collect();
    assert_eq!(left, Vec::<String>::new());
    for i in 0..3 {
        forge.ok(&["rm", &format!("killed{i}")]);
    }
}
