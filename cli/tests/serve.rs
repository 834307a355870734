//! `forge serve` driven by the real docker CLI (Debian's docker.io 20.10, `/usr/bin/docker`)
//! and by raw HTTP for what a well-behaved client never sends.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

use common::server::{message, raw, raw_whole, Server, DOCKER};
use common::{eventually, pids_with, Forge, Ran};

#[test]
fn docker_cli_drives_version_info_build_images_tag_push_pull_save_load_rmi_df() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let registry = forge_testkit::Registry::start();

    let v = server.ok(&["version", "--format", "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}"]);
    assert_eq!(v.stdout.trim(), format!("{} 1.43 1.24 linux", env!("CARGO_PKG_VERSION")));
    let info = server.ok(&["info", "--format", "{{.Images}} {{.Containers}} {{.OSType}} {{.DockerRootDir}}"]);
    assert_eq!(info.stdout.trim(), format!("1 0 linux {}", forge.store().display()));

    // build -t with --build-arg, --target and -f (a Dockerfile outside the context's default name).
    let ctx = forge.context(
        "ctx",
        &[
            ("Dockerfile", "FROM busybox AS base\nARG MSG=none\nRUN echo \"msg=$MSG\" > /msg\nFROM base AS final\nRUN echo final > /final\n"),
            ("Other.dockerfile", "FROM busybox\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n"),
            ("hello.txt", "hello from the context\n"),
        ],
    );
    let b = server.ok(&["build", "-t", "app:1", "--build-arg", "MSG=from-docker", "--target", "base", ctx.to_str().unwrap()]);
    assert!(b.stdout.contains("RUN echo \"msg=$MSG\" > /msg"), "{}", b.stdout);
    assert!(b.stdout.contains("Successfully tagged app:1"), "{}", b.stdout);
    let app = forge.rootfs("app:1");
    assert_eq!(std::fs::read_to_string(app.join("msg")).unwrap(), "msg=from-docker\n");
    assert!(!app.join("final").exists(), "--target base built the final stage too");
    let q = server.ok(&["build", "-q", "-t", "other:1", "-f", ctx.join("Other.dockerfile").to_str().unwrap(), ctx.to_str().unwrap()]);
    let other_id = forge.inspect("other:1")["Id"].as_str().unwrap().to_string();
    assert_eq!(q.stdout.trim(), other_id, "-q prints the image ID (from the aux message)");
    assert_eq!(std::fs::read_to_string(forge.rootfs("other:1").join("hello.txt")).unwrap(), "hello from the context\n");

    let images = server.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let short = |id: &str| id.trim_start_matches("sha256:")[..12].to_string();
    assert!(images.stdout.lines().any(|l| l == format!("other:1 {}", short(&other_id))), "{}", images.stdout);
    assert!(images.stdout.lines().any(|l| l.starts_with("app:1 ")), "{}", images.stdout);
    let filtered = server.ok(&["images", "--filter", "reference=app", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(filtered.stdout.trim(), "app:1");
    let history = server.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", "app:1"]);
    assert!(history.stdout.lines().next().unwrap().contains("MSG=from-docker"), "{}", history.stdout);

    // tag, push, rmi, pull: the same image comes back.
    let remote = format!("{}/demo/app:1", registry.addr);
    server.ok(&["tag", "app:1", &remote]);
    let push = server.ok(&["push", &remote]);
    assert!(push.stdout.contains("Pushed") && push.stdout.contains("1: digest: sha256:"), "{}", push.stdout);
    let rmi = server.ok(&["rmi", &remote]);
    assert_eq!(rmi.stdout.trim(), format!("Untagged: {remote}"));
    let pull = server.ok(&["pull", &remote]);
    assert!(pull.stdout.contains(&format!("Status: Downloaded newer image for {remote}")), "{}", pull.stdout);
    let app_id = forge.inspect("app:1")["Id"].as_str().unwrap().to_string();
    assert_eq!(server.ok(&["image", "inspect", "--format", "{{.Id}}", &remote]).stdout.trim(), app_id);
    // Keys the image does not set are there, as null, for templates.
    let cmds = server.ok(&["image", "inspect", "--format", "{{.Config.Cmd}}|{{json .Config.Entrypoint}}", "other:1", "app:1"]);
    assert_eq!(cmds.stdout, "[cat /hello.txt]|null\n[]|null\n");
    let missing = server.docker(&["pull", &format!("{}/demo/missing:1", registry.addr)]);
    assert!(!missing.ok && missing.stderr.contains("404"), "{}", missing.stderr);

    // save | load, after the names are gone.
    let archive = forge.dir.path().join("saved.tar");
    server.ok(&["save", "-o", archive.to_str().unwrap(), "other:1"]);
    let rmi = server.ok(&["rmi", "other:1"]);
    assert_eq!(rmi.stdout, format!("Untagged: other:1\nDeleted: {other_id}\n"));
    assert!(!server.ok(&["images", "--format", "{{.Repository}}"]).stdout.contains("other"));
    let mut load = server.docker_cmd(&["load"]);
    load.stdin(std::fs::File::open(&archive).unwrap());
    let load: Ran = load.output().unwrap().into();
    assert!(load.ok, "{}", load.stderr);
    assert_eq!(load.stdout.trim(), "Loaded image: other:1");
    assert_eq!(forge.inspect("other:1")["Id"], other_id.as_str());
    // A build context and an archive padded past their end (tar writers pad to whole records)
    // are read to their end.
    let mut context = tar::Builder::new(Vec::new());
    for (name, text) in [("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "padded\n")] {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        context.append_data(&mut header, name, text.as_bytes()).unwrap();
    }
    let mut context = context.into_inner().unwrap();
    context.resize(context.len() + (4 << 20), 0);
    let (code, body) = raw_whole(&server.socket, "POST", "/v1.41/build?t=padded:1", "application/x-tar", &context);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Successfully tagged padded:1"), "{body}");
    server.ok(&["rmi", "padded:1"]);
    let mut padded = std::fs::read(&archive).unwrap();
    padded.resize(padded.len() + (4 << 20), 0);
    let (code, body) = raw_whole(&server.socket, "POST", "/v1.41/images/load?quiet=1", "application/x-tar", &padded);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Loaded image: other:1"), "{body}");

    let missing = server.docker(&["rmi", "nothing:here"]);
    assert!(!missing.ok && missing.stderr.contains("No such image: nothing:here"), "{}", missing.stderr);

    let df = server.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.stdout.lines().any(|l| l == "Images 3"), "busybox, app (two names), other:\n{}", df.stdout);

    // The daemonless CLI sees what the server did.
    let listed = forge.ok(&["images"]).stdout;
    assert!(listed.contains("other") && listed.contains(&registry.addr), "{listed}");
}

#[test]
fn the_socket_is_for_root_and_the_given_group_only() {
    let forge = Forge::empty();
    let as_nobody = |server: &Server| -> Ran {
        Command::new("runuser")
            .args(["-u", "nobody", "--", DOCKER, "-H", &format!("unix://{}", server.socket.display()), "version", "--format", "{{.Server.Version}}"])
            .env("DOCKER_CONFIG", server.docker_config.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    };
    {
        let server = Server::start(&forge, &[]);
        let meta = std::fs::metadata(&server.socket).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 0);
        let r = as_nobody(&server);
        assert!(!r.ok && r.stderr.contains("permission denied"), "nobody reached the API:\n{}{}", r.stdout, r.stderr);
        // Root can.
        server.ok(&["version"]);
    }
    let server = Server::start(&forge, &["--group", "nogroup"]);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&server.socket).unwrap()), 65534);
    let r = as_nobody(&server);
    assert!(r.ok, "a member of --group could not connect:\n{}", r.stderr);
    assert_eq!(r.stdout.trim(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn bad_requests_get_clear_errors() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let s = &server.socket;

    let (code, body) = raw(s, "GET", "/_ping", "text/plain", b"");
    assert_eq!((code, body.as_str()), (200, "OK"));
    let (code, body) = raw(s, "GET", "/v1.12/version", "text/plain", b"");
    assert_eq!(code, 400);
    assert!(message(&body).contains("client version 1.12 is too old. Minimum supported API version is 1.24"), "{body}");
    let (code, body) = raw(s, "GET", "/v1.41/images/json?all=1&colour=blue", "text/plain", b"");
    assert_eq!(code, 400);
    assert!(message(&body).contains("unknown query parameter \"colour\""), "{body}");
    let (code, body) = raw(s, "GET", "/v1.41/images/json?filters=%7Bnope", "text/plain", b"");
    assert_eq!(code, 400);
    assert!(message(&body).starts_with("invalid filters"), "{body}");
    let (code, body) = raw(s, "POST", "/v1.41/containers/create", "application/json", b"{\"Image\": \"busybox\", ");
    assert_eq!(code, 400);
    assert!(message(&body).starts_with("invalid JSON in the container config"), "{body}");
    let (code, body) = raw(s, "GET", "/v1.41/images/nothing:here/json", "text/plain", b"");
    assert_eq!(code, 404);
    assert_eq!(message(&body), "No such image: nothing:here");
    let (code, body) = raw(s, "GET", "/v1.41/no/such/endpoint", "text/plain", b"");
    assert_eq!(code, 404);
    assert!(message(&body).contains("page not found"), "{body}");

    // A build context with a `../` entry is refused before anything is built.
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    let content = b"FROM busybox\n";
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    // Written into the header directly: the tar crate's `set_path` refuses `..` itself.
    let name = b"../escaped";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_cksum();
    tar.append(&header, &content[..]).unwrap();
    let bytes = tar.into_inner().unwrap();
    let (code, body) = raw(s, "POST", "/v1.41/build?t=escape:1", "application/x-tar", &bytes);
    assert_eq!(code, 400, "{body}");
    let msg = message(&body);
    assert!(msg.contains("unpacking the build context") && msg.contains(".."), "{msg}");
    assert!(!forge.dir.path().join("escaped").exists() && !forge.store().join("forge/escaped").exists());
    assert!(!forge.ok(&["images"]).stdout.contains("escape"));

    // The Dockerfile is read inside the context: not through `..`, nor a symlinked directory.
    let mut tar = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    link.set_uid(0);
    link.set_gid(0);
    link.set_mtime(0);
    tar.append_link(&mut link, "etc", "/etc").unwrap();
    let context = tar.into_inner().unwrap();
    let up = format!("{}etc/passwd", "../".repeat(30));
    for name in [up.as_str(), "etc/passwd"] {
        let (code, body) = raw(s, "POST", &format!("/v1.41/build?dockerfile={name}"), "application/x-tar", &context);
        assert_eq!(code, 400, "{name}: {body}");
        let msg = message(&body);
        assert!(msg.contains("outside the build context") || msg.contains("is a symlink"), "{msg}");
        assert!(!body.contains("root:x:0:0"), "the host's /etc/passwd leaked: {body}");
    }

    // A build parameter forge has no equivalent for is refused, not ignored.
    let (code, body) = raw(s, "POST", "/v1.41/build?remote=https://example.invalid/x.git", "application/x-tar", b"");
    assert_eq!(code, 400);
    assert!(message(&body).contains("remote="), "{body}");

    // An endless JSON body ends at the limit with a 413 instead of filling memory.
    let mut conn = UnixStream::connect(s).unwrap();
    write!(conn, "POST /v1.41/containers/create HTTP/1.1\r\nHost: forge\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let chunk = vec![b' '; 1 << 20];
    let mut answer = String::new();
    for _ in 0..64 {
        if write!(conn, "{:x}\r\n", chunk.len()).and_then(|_| conn.write_all(&chunk)).and_then(|_| conn.write_all(b"\r\n")).is_err() {
            break;
        }
    }
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let _ = BufReader::new(conn).read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{}", &answer[..answer.len().min(300)]);
    assert!(answer.contains("request body larger than"), "{answer}");

    // The server still answers, and the store is whole.
    server.ok(&["version"]);
    let fsck = forge.ok(&["store", "fsck"]);
    assert!(fsck.ok, "{}", fsck.stderr);
}

#[test]
fn sigterm_lets_a_running_build_finish_then_exits() {
    let forge = Forge::with_busybox();
    let mut server = Server::start(&forge, &[]);
    let dir = forge.context("slow", &[("Dockerfile", "FROM busybox\nRUN echo started && sleep 2 && echo finished > /done\n")]);
    let mut reader = build_until_started(&server, &dir, "slow:1");
    server.signal_term();
    // The socket goes at once: no new clients.
    assert!(eventually(|| !server.socket.exists()), "the socket stayed after SIGTERM");
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("\"aux\":{\"ID\":\"sha256:") && rest.contains("Successfully tagged slow:1"), "the build was cut off:\n{rest}");
    let status = server.wait_exit();
    assert!(status.success(), "forge serve exited with {status}:\n{}", server.log());
    let log = server.log();
    assert!(log.contains("SIGTERM") && log.contains("forge serve: stopped"), "{log}");
    assert_eq!(std::fs::read_to_string(forge.rootfs("slow:1").join("done")).unwrap(), "finished\n");
}

#[test]
fn docker_cli_creates_lists_inspects_and_removes_containers() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let id = server.ok(&["create", "--network", "none", "--name", "web", "-e", "A=1", "-w", "/tmp", "busybox", "echo", "hi"]).stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let ps = server.ok(&["ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}} {{.Command}}"]);
    assert_eq!(ps.stdout.trim(), format!("{} web Created \"echo hi\"", &id[..12]));
    // Without -a only running containers are listed; filters select.
    assert_eq!(server.ok(&["ps", "-q"]).stdout.trim(), "");
    assert_eq!(server.ok(&["ps", "-aq", "--filter", "status=created"]).stdout.trim(), &id[..12]);
    assert_eq!(server.ok(&["ps", "-aq", "--filter", "name=nothing"]).stdout.trim(), "");
    let inspect = server.ok(&["inspect", "--format", "{{.Name}} {{.State.Status}} {{.Config.WorkingDir}} {{.Config.Env}}", "web"]);
    // The image's PATH, then -e, as docker merges them.
    assert_eq!(inspect.stdout.trim(), "/web created /tmp [PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin A=1]");
    // The daemonless CLI sees the same container.
    assert!(forge.ok(&["ps", "-a"]).stdout.contains("web"));

    let taken = server.docker(&["create", "--name", "web", "busybox", "true"]);
    assert!(!taken.ok && taken.stderr.contains("already in use"), "{}", taken.stderr);
    // A 404 for a missing image (on which the docker CLI would go and pull it).
    let (code, body) = raw(&server.socket, "POST", "/v1.41/containers/create", "application/json", br#"{"Image": "nothing:here", "Cmd": ["true"]}"#);
    assert_eq!((code, message(&body).as_str()), (404, "No such image: nothing:here"));
    // What forge's runtime cannot honour yet is refused, never dropped silently.
    for (args, why) in [
        (&["create", "--dns-search", "example.com", "busybox", "true"][..], "DnsSearch and DnsOptions are not supported"),
        (&["create", "--mount", "type=bind,source=/nonexistent/forge,destination=/x", "busybox", "true"][..], "bind source path \"/nonexistent/forge\" does not exist"),
        (&["create", "--mount", "type=bind,source=/tmp,destination=/x,bind-propagation=shared", "busybox", "true"][..], "propagation and recursion options are not supported"),
        (&["create", "-m", "1m", "busybox", "true"][..], "invalid resource limits"),
        (&["create", "--cap-add", "NET_ADMIN", "busybox", "true"][..], "HostConfig.CapAdd is not supported"),
        (&["ps", "-a", "--filter", "since=web"][..], "the since filter is not supported"),
    ] {
        let r = server.docker(args);
        assert!(!r.ok && r.stderr.contains(why), "{args:?}: {}", r.stderr);
    }
    assert_eq!(server.ok(&["ps", "-aq"]).stdout.trim(), &id[..12]);
    // Labels and -v (a named volume) are kept, and the label filter selects by them.
    let labeled = server.ok(&["create", "--label", "tier=web", "-v", "keep:/data:ro", "busybox", "true"]).stdout.trim().to_string();
    assert_eq!(server.ok(&["ps", "-aq", "--filter", "label=tier=web"]).stdout.trim(), &labeled[..12]);
    assert_eq!(server.ok(&["inspect", "--format", "{{.Config.Labels}}", &labeled]).stdout.trim(), "map[tier:web]");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(forge.store().join("forge/containers").join(&labeled).join("config.json")).unwrap()).unwrap();
    let mount = &config["Mounts"][0];
    assert_eq!((mount["Source"]["volume"]["name"].as_str(), mount["Target"].as_str(), mount["ReadOnly"].as_bool()), (Some("keep"), Some("/data"), Some(true)), "{config}");
    server.ok(&["rm", &labeled]);
    server.ok(&["volume", "rm", "keep"]);
    // Resource limits reach the container's record, in the runtime's terms.
    let limited = server.ok(&["create", "--name", "limited", "-m", "64m", "--cpus", "0.5", "--pids-limit", "50", "busybox", "true"]).stdout.trim().to_string();
    let config = std::fs::read_to_string(forge.store().join("forge/containers").join(&limited).join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let limits = config["Limits"].to_string();
    assert!(limits.contains(&(64u64 << 20).to_string()) && limits.contains("50000") && limits.contains("\"pids\":50"), "{limits}");
    server.ok(&["rm", "limited"]);
    // Started through the server, under a monitor; `-a` shows its output.
    assert_eq!(server.ok(&["start", "-a", "web"]).stdout, "hi\n");
    let rmi = server.docker(&["rmi", "busybox"]);
    assert!(!rmi.ok && rmi.stderr.contains("being used by container"), "{}", rmi.stderr);

    assert_eq!(server.ok(&["rm", "web"]).stdout.trim(), "web");
    assert_eq!(server.ok(&["ps", "-aq"]).stdout.trim(), "");
    let gone = server.docker(&["rm", "web"]);
    assert!(!gone.ok && gone.stderr.contains("No such container: web"), "{}", gone.stderr);
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl in `dir`;
/// `other` also gets a client certificate from a second CA the server does not trust.
fn make_certs(dir: &Path) {
    let script = r#"
set -e
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }
ca() { key $1-key.pem; openssl req -x509 -new -key $1-key.pem -out $1.pem -days 2 -subj "/CN=$1" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign; }
cert() { # name ca ext
  key $1-key.pem
  openssl req -new -key $1-key.pem -out $1.csr -subj "/CN=$1"
  printf '%s\n' "$3" > $1.ext
  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2-key.pem -CAcreateserial -out $1.pem -days 2 -extfile $1.ext 2>/dev/null
}
ca ca; ca other-ca
cert server ca "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth"
cert client ca "extendedKeyUsage=clientAuth"
cert stranger other-ca "extendedKeyUsage=clientAuth"
"#;
    let o = Command::new("sh").arg("-c").arg(script).current_dir(dir).output().unwrap();
    assert!(o.status.success(), "openssl: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn tcp_needs_a_client_certificate_and_plain_tcp_stays_on_loopback() {
    let forge = Forge::empty();
    let certs = forge.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let pem = |name: &str| certs.join(name).to_str().unwrap().to_string();

    // Plain TCP on an address other hosts reach: refused before anything listens.
    let port = forge_testkit::free_port();
    let open = forge.run(&["serve", "-H", &format!("tcp://0.0.0.0:{port}")]);
    assert_eq!(open.code, Some(1));
    assert!(open.stderr.contains("plain TCP is refused on a non-loopback address"), "{}", open.stderr);
    let half = forge.run(&["serve", "-H", &format!("tcp://0.0.0.0:{port}"), "--tlsverify", "--tlscacert", &pem("ca.pem")]);
    assert_eq!(half.code, Some(2), "--tlsverify without a certificate and key is a usage error: {}", half.stderr);

    let addr = format!("tcp://0.0.0.0:{port}");
    let server = Server::start(&forge, &["-H", &addr, "--tlsverify", "--tlscacert", &pem("ca.pem"), "--tlscert", &pem("server.pem"), "--tlskey", &pem("server-key.pem")]);
    assert!(eventually(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()), "{}", server.log());
    let docker = |args: &[&str]| -> Ran {
        Command::new(DOCKER).env("DOCKER_CONFIG", server.docker_config.path()).args(["-H", &format!("tcp://127.0.0.1:{port}")]).args(args).stdin(Stdio::null()).output().unwrap().into()
    };
    let ok = docker(&["--tlsverify", "--tlscacert", &pem("ca.pem"), "--tlscert", &pem("client.pem"), "--tlskey", &pem("client-key.pem"), "version", "--format", "{{.Server.Version}}"]);
    assert!(ok.ok, "a client with a certificate from the CA was refused:\n{}\n{}", ok.stderr, server.log());
    assert_eq!(ok.stdout.trim(), env!("CARGO_PKG_VERSION"));
    // No client certificate, one from another CA, or no TLS at all: no answer.
    let anonymous = docker(&["--tlsverify", "--tlscacert", &pem("ca.pem"), "version", "--format", "{{.Server.Version}}"]);
    assert!(!anonymous.ok && anonymous.stdout.trim().is_empty(), "answered without a client certificate: {}", anonymous.stdout);
    let stranger = docker(&["--tlsverify", "--tlscacert", &pem("ca.pem"), "--tlscert", &pem("stranger.pem"), "--tlskey", &pem("stranger-key.pem"), "version", "--format", "{{.Server.Version}}"]);
    assert!(!stranger.ok && stranger.stdout.trim().is_empty(), "answered a certificate from another CA: {}", stranger.stdout);
    let plain = docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(!plain.ok && plain.stdout.trim().is_empty(), "answered plain HTTP: {}", plain.stdout);
    assert!(server.log().contains("TLS handshake with 127.0.0.1"), "{}", server.log());
    // The unix socket serves beside it.
    server.ok(&["version"]);
}

#[test]
fn fifty_concurrent_clients_all_get_answers_and_the_store_stays_whole() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let socket = server.socket.clone();
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    raw(&socket, "POST", &format!("/v1.41/images/busybox/tag?repo=copy&tag={i}"), "text/plain", b"")
                } else {
                    raw(&socket, "GET", "/v1.41/images/json", "text/plain", b"")
                }
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let (code, body) = t.join().unwrap();
        if i % 2 == 0 {
            assert_eq!(code, 201, "tag {i}: {body}");
        } else {
            assert_eq!(code, 200, "list {i}: {body}");
            let start = body.find('[').unwrap();
            let list: serde_json::Value = serde_json::from_str(body[start..].trim().lines().next().unwrap()).unwrap_or_else(|e| panic!("{e}: {body}"));
            assert!(list.as_array().unwrap().iter().any(|img| img["RepoTags"].to_string().contains("busybox:latest")), "{body}");
        }
    }
    let tags = server.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).stdout;
    for i in (0..50).step_by(2) {
        assert!(tags.lines().any(|l| l == format!("copy:{i}")), "copy:{i} is missing:\n{tags}");
    }
    forge.ok(&["store", "fsck"]);
}

/// POSTs a build of `dir`'s Dockerfile (whose step prints `started`) and reads the answer until
/// the step has printed it: the build is under way. The open connection.
fn build_until_started(server: &Server, dir: &Path, tag: &str) -> BufReader<UnixStream> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_path_with_name(dir.join("Dockerfile"), "Dockerfile").unwrap();
    let bytes = tar.into_inner().unwrap();
    let mut conn = UnixStream::connect(&server.socket).unwrap();
    write!(conn, "POST /v1.41/build?t={tag} HTTP/1.1\r\nHost: forge\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n", bytes.len()).unwrap();
    conn.write_all(&bytes).unwrap();
    let mut reader = BufReader::new(conn);
    let mut seen = String::new();
    while !seen.contains("started") {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the answer ended early:\n{seen}");
        seen.push_str(&line);
    }
    reader
}

#[test]
fn kill_9_of_the_server_during_a_build_leaves_a_store_that_fsck_and_gc_accept() {
    let forge = Forge::with_busybox();
    let mut server = Server::start(&forge, &[]);
    let marker = format!("{}", 40_000 + std::process::id() % 10_000);
    let dir = forge.context("killed", &[("Dockerfile", &format!("FROM busybox\nRUN echo started && head -c 5000000 /dev/zero > /big && sleep {marker}\n"))]);
    let _connection = build_until_started(&server, &dir, "killed:1");
    assert!(eventually(|| !pids_with(&marker).is_empty()), "the step never ran its sleep");
    let mut child = server.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // The step dies with the server (its init has the parent-death signal).
    assert!(eventually(|| pids_with(&marker).is_empty()), "the step outlived the server");

    // gc expires the dead server's lease and removes what it left; fsck finds nothing wrong.
    forge.ok(&["store", "gc"]);
    let fsck = forge.ok(&["store", "fsck", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&fsck.stdout).unwrap();
    assert_eq!(report["corrupt"], serde_json::json!([]), "{}", fsck.stdout);
    assert_eq!(report["broken_tags"], serde_json::json!([]), "{}", fsck.stdout);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(forge.store().to_str().unwrap()), "mounts left under the store:\n{mounts}");
    assert!(!forge.ok(&["images"]).stdout.contains("killed"));
    // A new server on the same store builds again.
    let server = Server::start(&forge, &[]);
    server.ok(&["images"]);
}

#[test]
fn docker_28_5_client_negotiates_down_and_drives_images() {
    // Debian unstable's docker.io 28.5 CLI, from the reference daemon's chroot
    // (../shared/anchors/start-dockerd-modern.sh makes it).
    let modern = Path::new("/tmp/forge-anchors/trixie/usr/bin/docker");
    if !modern.exists() {
        let _ = writeln!(std::io::stderr(), "\nskipped: docker_28_5_client: {} is missing (run ../shared/anchors/start-dockerd-modern.sh once)\n", modern.display());
        return;
    }
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let docker = |args: &[&str]| -> Ran {
        let r: Ran = server.client_cmd(modern, args).output().unwrap().into();
        assert!(r.ok, "docker 28.5 {args:?}:\n{}\n{}", r.stdout, r.stderr);
        r
    };
    let v = docker(&["version", "--format", "{{.Client.Version}} {{.Client.APIVersion}} {{.Server.APIVersion}}"]);
    assert!(v.stdout.starts_with("28.5") && v.stdout.trim().ends_with("1.43 1.43"), "{}", v.stdout);
    let ctx = forge.context("ctx", &[("Dockerfile", "FROM busybox\nARG WHO=nobody\nRUN echo \"built by $WHO\" > /who\n")]);
    let b = docker(&["build", "-t", "modern:1", "--build-arg", "WHO=docker-28", ctx.to_str().unwrap()]);
    assert!(b.stdout.contains("Successfully tagged modern:1"), "{}{}", b.stdout, b.stderr);
    assert_eq!(std::fs::read_to_string(forge.rootfs("modern:1").join("who")).unwrap(), "built by docker-28\n");
    let images = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut listed: Vec<&str> = images.stdout.lines().collect();
    listed.sort();
    assert_eq!(listed, ["busybox:latest", "modern:1"]);
    let archive = forge.dir.path().join("modern.tar");
    docker(&["save", "-o", archive.to_str().unwrap(), "modern:1"]);
    assert_eq!(docker(&["rmi", "modern:1"]).stdout.lines().next(), Some("Untagged: modern:1"));
    let load = docker(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(load.stdout.trim(), "Loaded image: modern:1");
    let df = docker(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.stdout.lines().any(|l| l == "Images 2"), "{}", df.stdout);
}

#[test]
fn docker_login_checks_credentials_and_push_sends_them_in_x_registry_auth() {
    let forge = Forge::with_busybox();
    let certs = forge.dir.path().join("registry-certs");
    std::fs::create_dir_all(&certs).unwrap();
    let sh = |script: &str| {
        let o = Command::new("sh").arg("-ec").arg(script).current_dir(&certs).output().unwrap();
        assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:TRUE 2>/dev/null");
    sh("htpasswd -Bbn forge s3cret > htpasswd");
    let registry = forge_testkit::Registry::start_with(&format!(
        "http:\n  addr: {{addr}}\n  tls:\n    certificate: {c}/cert.pem\n    key: {c}/key.pem\nauth:\n  htpasswd:\n    realm: forge-test\n    path: {c}/htpasswd\n",
        c = certs.display()
    ));
    let certs_d = forge.dir.path().join("certs.d");
    std::fs::create_dir_all(certs_d.join(&registry.addr)).unwrap();
    std::fs::copy(certs.join("cert.pem"), certs_d.join(&registry.addr).join("ca.crt")).unwrap();
    let server = Server::start(&forge, &["--certs-dir", certs_d.to_str().unwrap()]);
    let remote = format!("{}/secure/busybox:1", registry.addr);
    server.ok(&["tag", "busybox", &remote]);

    let anonymous = server.docker(&["push", &remote]);
    assert!(!anonymous.ok, "pushed without credentials:\n{}", anonymous.stdout);
    let wrong = server.docker(&["login", "-u", "forge", "-p", "nope", &registry.addr]);
    assert!(!wrong.ok && wrong.stderr.contains("unauthorized"), "{}", wrong.stderr);
    let login = server.ok(&["login", "-u", "forge", "-p", "s3cret", &registry.addr]);
    assert!(login.stdout.contains("Login Succeeded"), "{}", login.stdout);
    // The client keeps the credentials; the server wrote none.
    assert!(std::fs::read_to_string(server.docker_config.path().join("config.json")).unwrap().contains(&registry.addr));
    assert!(!std::path::Path::new("/root/.docker/config.json").exists() || !std::fs::read_to_string("/root/.docker/config.json").unwrap().contains(&registry.addr));
    let push = server.ok(&["push", &remote]);
    assert!(push.stdout.contains("1: digest: sha256:"), "{}", push.stdout);
    server.ok(&["rmi", &remote]);
    let pull = server.ok(&["pull", &remote]);
    assert!(pull.stdout.contains("Status: Downloaded newer image"), "{}", pull.stdout);

    // A build whose base is missing pulls it with the credentials of X-Registry-Config.
    server.ok(&["rmi", &remote]);
    let ctx = forge.context("private-base", &[("Dockerfile", &format!("FROM {remote}\nRUN echo on-private-base > /x\n"))]);
    let b = server.ok(&["build", "-t", "on-private:1", ctx.to_str().unwrap()]);
    assert!(b.stdout.contains("Successfully tagged on-private:1"), "{}", b.stdout);
    assert_eq!(std::fs::read_to_string(forge.rootfs("on-private:1").join("x")).unwrap(), "on-private-base\n");
}

#[test]
fn docker_sdk_for_python_drives_images_and_containers() {
    let has_sdk = Command::new("python3").args(["-c", "import docker"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !has_sdk {
        let _ = writeln!(std::io::stderr(), "\nskipped: docker_sdk_for_python: python3's docker module is missing (pip install docker)\n");
        return;
    }
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let ctx = forge.context("pyctx", &[("Dockerfile", "FROM busybox AS base\nARG MSG=none\nRUN echo \"$MSG\" > /msg\nFROM base\nRUN echo last > /last\n")]);
    let script = r#"
import sys, docker
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
assert c.ping()
assert c.version()["ApiVersion"] == "1.43"
assert [t for i in c.images.list() for t in i.tags] == ["busybox:latest"]
img, logs = c.images.build(path=sys.argv[2], tag="py:1", buildargs={"MSG": "from-python"}, target="base", rm=True)
assert img.tags == ["py:1"], img.tags
assert any("Successfully tagged py:1" in l.get("stream", "") for l in logs)
img.tag("py", "2")
assert sorted(c.images.get("py:2").tags) == ["py:1", "py:2"]
assert c.images.get("py:1").history()[0]["CreatedBy"].startswith("RUN |1 MSG=from-python")
archive = b"".join(c.images.get("py:1").save(named=True))
c.images.remove("py:2")
c.images.remove("py:1")
assert [t for i in c.images.list() for t in i.tags] == ["busybox:latest"]
loaded = c.images.load(archive)
assert [i.tags for i in loaded] == [["py:1"]], loaded
ct = c.containers.create("busybox", ["echo", "hi"], name="pyct", environment={"A": "1"})
assert (ct.name, ct.status) == ("pyct", "created")
assert [x.name for x in c.containers.list(all=True)] == ["pyct"]
assert c.containers.list() == []
try:
    c.containers.get("nothing")
    raise SystemExit("found a missing container")
except docker.errors.NotFound:
    pass
ct.remove()
assert c.containers.list(all=True) == []
print("OK")
"#;
    let o = Command::new("python3").args(["-c", script, server.socket.to_str().unwrap(), ctx.to_str().unwrap()]).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && out.trim() == "OK", "{out}\n{err}\nserver log:\n{}", server.log());
    assert_eq!(std::fs::read_to_string(forge.rootfs("py:1").join("msg")).unwrap(), "from-python\n");
}

#[test]
fn kill_9_of_the_server_during_a_pull_leaves_a_store_that_fsck_and_gc_accept() {
    // An image with a 40 MB incompressible layer in a local registry.
    let source = Forge::with_busybox();
    let registry = forge_testkit::Registry::start();
    let rootfs = source.dir.path().join("big-rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let mut random = std::fs::File::open("/dev/urandom").unwrap().take(40 << 20);
    std::io::copy(&mut random, &mut std::fs::File::create(rootfs.join("big")).unwrap()).unwrap();
    let tar = source.dir.path().join("big.tar");
    assert!(Command::new("tar").arg("-C").arg(&rootfs).args(["-cf"]).arg(&tar).arg(".").status().unwrap().success());
    let remote = format!("{}/demo/big:1", registry.addr);
    source.ok(&["import", tar.to_str().unwrap(), &remote]);
    source.ok(&["push", "-q", &remote]);

    let forge = Forge::empty();
    let mut server = Server::start(&forge, &[]);
    let mut conn = UnixStream::connect(&server.socket).unwrap();
    let (name, tag) = remote.rsplit_once(':').unwrap();
    write!(conn, "POST /v1.41/images/create?fromImage={name}&tag={tag} HTTP/1.1\r\nHost: forge\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut reader = BufReader::new(conn);
    let mut seen = String::new();
    while !seen.contains("Downloading") {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the answer ended early:\n{seen}");
        seen.push_str(&line);
    }
    let mut child = server.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    forge.ok(&["store", "gc"]);
    let fsck = forge.ok(&["store", "fsck", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&fsck.stdout).unwrap();
    assert_eq!((&report["corrupt"], &report["broken_tags"]), (&serde_json::json!([]), &serde_json::json!([])), "{}", fsck.stdout);
    // The pull can be done again, whole.
    let server = Server::start(&forge, &[]);
    let pull = server.ok(&["pull", &remote]);
    assert!(pull.stdout.contains("Status: Downloaded newer image"), "{}", pull.stdout);
    forge.ok(&["store", "fsck"]);
}

#[test]
fn a_build_client_that_hangs_up_cancels_the_build() {
    let forge = Forge::with_busybox();
    let server = Server::start(&forge, &[]);
    let marker = format!("{}", 50_000 + std::process::id() % 10_000);
    let dir = forge.context("cancelled", &[("Dockerfile", &format!("FROM busybox\nRUN echo started && sleep {marker}\n"))]);
    let reader = build_until_started(&server, &dir, "cancelled:1");
    assert!(eventually(|| !pids_with(&marker).is_empty()), "the step never ran its sleep");
    // As Ctrl-C on `docker build` does.
    drop(reader);
    assert!(eventually(|| pids_with(&marker).is_empty()), "the build ran on after its client left");
    server.ok(&["version"]);
    assert!(!server.ok(&["images", "--format", "{{.Repository}}"]).stdout.contains("cancelled"));
    forge.ok(&["store", "fsck"]);
}

#[test]
fn docker_cli_manages_volumes() {
    let forge = Forge::empty();
    let server = Server::start(&forge, &[]);
    assert_eq!(server.ok(&["volume", "create", "data"]).stdout.trim(), "data");
    assert_eq!(server.ok(&["volume", "ls", "--format", "{{.Name}} {{.Driver}}"]).stdout.trim(), "data local");
    let mountpoint = server.ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", "data"]).stdout.trim().to_string();
    assert!(Path::new(&mountpoint).is_dir() && mountpoint.starts_with(forge.store().to_str().unwrap()), "{mountpoint}");
    // The daemonless CLI sees it; a plain prune keeps a named volume.
    assert!(forge.ok(&["volume", "ls"]).stdout.contains("data"));
    server.ok(&["volume", "prune", "-f"]);
    assert_eq!(server.ok(&["volume", "ls", "-q"]).stdout.trim(), "data");
    let df = server.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.stdout.lines().any(|l| l == "Local Volumes 1"), "{}", df.stdout);
    let bad = server.docker(&["volume", "create", "-d", "nfs", "x"]);
    assert!(!bad.ok && bad.stderr.contains("not supported"), "{}", bad.stderr);
    assert_eq!(server.ok(&["volume", "rm", "data"]).stdout.trim(), "data");
    let gone = server.docker(&["volume", "inspect", "data"]);
    assert!(!gone.ok && gone.stderr.contains("No such volume: data"), "{}", gone.stderr);
}
