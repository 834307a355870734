//! The main job, through the real binary: build the multi-stage example (cache mount, heredocs,
//! COPY --from, USER, WORKDIR), rebuild from cache, push to a real registry, pull into an empty
//! store, check it, and run it under podman.

mod common;

use std::path::Path;

use common::Forge;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello")
}

#[test]
fn build_push_pull_run() {
    let forge = Forge::with_busybox();
    let first = forge.build(&example(), "hello:1", &[]);
    assert!(first.ok, "{}", first.stderr);
    assert!(!first.stderr.contains("CACHED"), "{}", first.stderr);

    // An unchanged rebuild runs nothing: every layer step comes from the cache.
    let again = forge.run(&["build", "--progress", "json", "-t", "hello:1", example().to_str().unwrap()]);
    assert!(again.ok, "{}", again.stderr);
    let events: Vec<serde_json::Value> = again.stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let cached = events.iter().filter(|e| e["event"] == "step_cached").count();
    assert_eq!(cached, 6, "WORKDIR, COPY, RUN, COPY --from, COPY heredoc, WORKDIR: {}", again.stderr);
    assert!(!events.iter().any(|e| e["event"] == "output"), "a cached RUN printed output: {}", again.stderr);

    let registry = forge_testkit::Registry::start();
    let dest = format!("{}/forge/hello:1", registry.addr);
    forge.ok(&["push", "-q", "hello:1", &dest]);
    let skopeo = std::process::Command::new("skopeo").args(["inspect", "--tls-verify=false"]).arg(format!("docker://{dest}")).output().unwrap();
    assert!(skopeo.status.success(), "{}", String::from_utf8_lossy(&skopeo.stderr));

    let empty = Forge::empty();
    let pulled = empty.ok(&["pull", "-q", &dest]);
    assert_eq!(pulled.stdout.trim(), dest);
    assert_eq!(empty.inspect(&dest)["Id"], forge.inspect("hello:1")["Id"]);
    empty.ok(&["store", "fsck"]);

    let out = empty.podman_run(&dest, &[]);
    assert_eq!(out, "Hello from forge: built without a daemon, pushed, pulled and run.\nrunning as app in /home/app\n");
}

#[test]
fn saved_archives_load_into_docker_and_podman() {
    let forge = Forge::with_busybox();
    assert!(forge.build(&example(), "hello:docker", &[]).ok);
    let archive = forge.dir.path().join("hello.tar");
    forge.ok(&["save", "-o", archive.to_str().unwrap(), "hello:docker"]);

    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/podman/containers.conf");
    let podman = |args: &[&str]| std::process::Command::new("podman").env("CONTAINERS_CONF", &conf).args(args).output().unwrap();
    let load = podman(&["load", "-i", archive.to_str().unwrap()]);
    assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
    let run = podman(&["run", "--rm", "--network", "none", "localhost/hello:docker"]);
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("Hello from forge"), "{}", String::from_utf8_lossy(&run.stderr));

    let docker = forge_testkit::Dockerd::start();
    let load = docker.cmd(&["load", "-i", archive.to_str().unwrap()]);
    assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
    let run = docker.cmd(&["run", "--rm", "--network", "none", "hello:docker"]);
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("Hello from forge"), "{}", String::from_utf8_lossy(&run.stderr));
    // docker pulls and runs what forge pushed (127.0.0.0/8 registries are insecure for docker).
    let registry = forge_testkit::Registry::start();
    let dest = format!("{}/forge/hello:docker", registry.addr);
    forge.ok(&["push", "-q", "hello:docker", &dest]);
    let pull = docker.cmd(&["pull", &dest]);
    assert!(pull.status.success(), "{}", String::from_utf8_lossy(&pull.stderr));
    let run = docker.cmd(&["run", "--rm", "--network", "none", &dest]);
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("Hello from forge"), "{}", String::from_utf8_lossy(&run.stderr));
    // A forge store loads what docker saves.
    let saved = forge.dir.path().join("from-docker.tar");
    assert!(docker.cmd(&["save", "-o", saved.to_str().unwrap(), "hello:docker"]).status.success());
    let other = Forge::empty();
    let loaded = other.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(loaded.stdout.contains("hello:docker"), "{}", loaded.stdout);
    assert_eq!(other.podman_run("hello:docker", &[]).lines().next(), Some("Hello from forge: built without a daemon, pushed, pulled and run."));
}

#[test]
fn from_an_image_not_in_the_store_pulls_it_and_build_push_pushes() {
    let forge = Forge::with_busybox();
    let registry = forge_testkit::Registry::start();
    let base = format!("{}/lib/busybox:1", registry.addr);
    forge.ok(&["push", "-q", "busybox:latest", &base]);

    let other = Forge::empty();
    let ctx = other.context("pulls", &[("Dockerfile", &format!("FROM {base}\nRUN echo built > /built\n"))]);
    let dest = format!("{}/app/built:1", registry.addr);
    let r = other.build(&ctx, &dest, &["--push"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(other.run(&["inspect", &base]).ok, "the base was pulled into the store");
    let inspect = std::process::Command::new("skopeo").args(["inspect", "--tls-verify=false"]).arg(format!("docker://{dest}")).output().unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let layers = serde_json::from_slice::<serde_json::Value>(&inspect.stdout).unwrap()["Layers"].as_array().unwrap().len();
    assert_eq!(layers, 2);
}
