//! docker-compose (Debian's 1.29) against `forge serve`: a two-service project with a network
//! and a named volume, `up -d`, `ps`, `logs`, `exec -T`, `down -v`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::server::Server;
use common::{eventually, Forge, Ran};

const COMPOSE: &str = "/usr/bin/docker-compose";

/// busybox's `nc`, not its `wget`: the static wget crashes resolving a name on a rootfs
/// without glibc's NSS libraries. The network gets a subnet of its own: the free private candidates are few, and tests of
/// other stores run at the same time.
const PROJECT_FILE: &str = r#"version: "3.7"
services:
  web:
    image: busybox
    command: sh -c 'echo hello-from-web > /data/index.html && exec httpd -f -p 80 -h /data'
    volumes:
      - data:/data
    networks: [back]
  probe:
    image: busybox
    command: sh -c 'while true; do printf "GET /index.html HTTP/1.0\r\n\r\n" | nc web 80 | tail -1; sleep 1; done'
    networks: [back]
    depends_on: [web]
networks:
  back:
    ipam:
      config:
        - subnet: 10.147.12.0/24
volumes:
  data: {}
"#;

/// A compose project on a server; `down -v` on drop, pass or fail.
struct Project<'a> {
    server: &'a Server,
    dir: tempfile::TempDir,
    name: String,
}

impl Project<'_> {
    fn compose(&self, args: &[&str]) -> Ran {
        let mut c = Command::new(COMPOSE);
        c.current_dir(self.dir.path())
            .env("DOCKER_HOST", format!("unix://{}", self.server.socket.display()))
            .env("DOCKER_CONFIG", self.server.docker_config.path())
            .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
            .args(["--no-ansi", "-p", &self.name])
            .args(args)
            .stdin(Stdio::null());
        c.output().unwrap().into()
    }

    fn ok(&self, args: &[&str]) -> Ran {
        let r = self.compose(args);
        assert!(r.ok, "docker-compose {args:?} failed:\n{}\n{}\nserver log:\n{}", r.stdout, r.stderr, self.server.log());
        r
    }
}

impl Drop for Project<'_> {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "-t", "1"]);
    }
}

/// Whether docker-compose is missing (the test then says it skipped).
fn compose_missing() -> bool {
    let missing = !std::path::Path::new(COMPOSE).exists();
    if missing {
        let _ = writeln!(std::io::stderr(), "\nskipped: docker_compose: {COMPOSE} is missing (apt-get install docker-compose; scripts/install-deps.sh does)\n");
    }
    missing
}

#[test]
fn docker_compose_brings_a_two_service_project_up_and_down() {
    if compose_missing() {
        return;
    }
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let project = Project { server: &server, dir: tempfile::tempdir().unwrap(), name: format!("fc{}", std::process::id()) };
    std::fs::write(project.dir.path().join("docker-compose.yml"), PROJECT_FILE).unwrap();
    let p = &project.name;

    let up = project.ok(&["up", "-d"]);
    let said = format!("{}{}", up.stdout, up.stderr);
    for line in [format!("Creating network \"{p}_back\""), format!("Creating volume \"{p}_data\""), format!("Creating {p}_web_1"), format!("Creating {p}_probe_1")] {
        assert!(said.contains(&line), "{line:?} missing from:\n{said}");
    }
    let ps = project.ok(&["ps"]).stdout;
    for name in ["web", "probe"] {
        assert!(ps.lines().any(|l| l.starts_with(&format!("{p}_{name}_1")) && l.contains(" Up ")), "{name} is not up:\n{ps}");
    }
    // The daemonless CLI sees the project's containers, network and volume.
    assert!(forge.ok(&["ps"]).stdout.contains(&format!("{p}_web_1")));
    assert!(forge.ok(&["network", "ls"]).stdout.contains(&format!("{p}_back")));
    assert!(forge.ok(&["volume", "ls"]).stdout.contains(&format!("{p}_data")));

    // The probe reaches web by its service name, over the project's network.
    assert!(
        eventually(|| project.ok(&["logs", "--no-color", "probe"]).stdout.contains("hello-from-web")),
        "the probe never got the page:\n{}",
        project.ok(&["logs", "--no-color"]).stdout
    );
    // exec, into the named volume the web service wrote.
    let exec = project.ok(&["exec", "-T", "web", "cat", "/data/index.html"]);
    assert_eq!(exec.stdout, "hello-from-web\n");
    let exec = project.ok(&["exec", "-T", "probe", "sh", "-c", "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc web 80 | tail -1"]);
    assert_eq!(exec.stdout, "hello-from-web\n");

    let down = project.ok(&["down", "-v", "-t", "1"]);
    let said = format!("{}{}", down.stdout, down.stderr);
    for line in [format!("Removing {p}_web_1"), format!("Removing network {p}_back"), format!("Removing volume {p}_data")] {
        assert!(said.contains(&line), "{line:?} missing from:\n{said}");
    }
    assert_eq!(server.ok(&["ps", "-aq"]).stdout, "");
    assert!(!server.ok(&["network", "ls"]).stdout.contains(&format!("{p}_back")));
    assert_eq!(server.ok(&["volume", "ls", "-q"]).stdout, "");
}

/// A service on two networks: compose creates its container on one and connects it to the
/// other before starting it.
const TWO_NETWORKS_FILE: &str = r#"version: "3.7"
services:
  hub:
    image: busybox
    command: sleep 300
    networks: [front, back]
  left:
    image: busybox
    command: sleep 300
    networks: [front]
  right:
    image: busybox
    command: sleep 300
    networks: [back]
networks:
  front:
    ipam:
      config:
        - subnet: 10.147.18.0/24
  back:
    ipam:
      config:
        - subnet: 10.147.19.0/24
"#;

#[test]
fn docker_compose_puts_a_service_on_two_networks() {
    if compose_missing() {
        return;
    }
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let project = Project { server: &server, dir: tempfile::tempdir().unwrap(), name: format!("fn{}", std::process::id()) };
    std::fs::write(project.dir.path().join("docker-compose.yml"), TWO_NETWORKS_FILE).unwrap();
    project.ok(&["up", "-d", "-t", "1"]);
    let addresses = project.ok(&["exec", "-T", "hub", "ip", "-4", "-o", "addr"]).stdout;
    assert!(addresses.contains("10.147.18.") && addresses.contains("10.147.19."), "{addresses}");
    // Each side finds it by its service name on its own network.
    for (side, subnet) in [("left", "10.147.18."), ("right", "10.147.19.")] {
        let found = || project.ok(&["exec", "-T", side, "cat", "/etc/hosts"]).stdout.lines().any(|l| l.starts_with(subnet) && l.split_whitespace().any(|n| n == "hub"));
        assert!(eventually(found), "{side}: {}", project.ok(&["exec", "-T", side, "cat", "/etc/hosts"]).stdout);
    }
    project.ok(&["down", "-t", "1"]);
    assert_eq!(server.ok(&["ps", "-aq"]).stdout, "");
}
