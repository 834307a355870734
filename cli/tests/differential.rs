//! forge against the reference implementation: the same Dockerfile built by `docker build`
//! (BuildKit, Debian's docker.io) and by forge gives the same file tree (paths, types, modes,
//! owners, contents, link targets) and the same config fields.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{tree, Forge};

#[test]
fn same_tree_and_config_as_docker_build() {
    let forge = Forge::with_busybox();
    let context = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/build/diff");
    let r = forge.build(&context, "diff:forge", &[]);
    assert!(r.ok, "{}", r.stderr);

    // The same busybox base goes into docker through a forge archive.
    let docker = forge_testkit::Dockerd::start();
    let base = forge.dir.path().join("busybox.tar");
    forge.ok(&["save", "-o", base.to_str().unwrap(), "busybox:latest"]);
    assert!(docker.cmd(&["load", "-i", base.to_str().unwrap()]).status.success());
    let built = docker.cmd(&["build", "--network", "none", "-t", "diff:docker", context.to_str().unwrap()]);
    assert!(built.status.success(), "docker build: {}", String::from_utf8_lossy(&built.stderr));
    let saved = forge.dir.path().join("diff-docker.tar");
    assert!(docker.cmd(&["save", "-o", saved.to_str().unwrap(), "diff:docker"]).status.success());
    forge.ok(&["load", "-i", saved.to_str().unwrap()]);

    let ours = tree(&forge.rootfs("diff:forge"));
    let theirs = tree(&forge.rootfs("diff:docker"));
    let only = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| -> Vec<String> {
        a.iter().filter(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| format!("{k}: {v}")).collect()
    };
    assert_eq!(only(&ours, &theirs), Vec::<String>::new(), "forge differs from docker build; docker has:\n{}", only(&theirs, &ours).join("\n"));
    assert_eq!(ours.len(), theirs.len());

    let a = forge.inspect("diff:forge")["Config"].clone();
    let b = forge.inspect("diff:docker")["Config"].clone();
    for field in ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts"] {
        assert_eq!(a[field], b[field], "config field {field}");
    }
    assert_eq!(forge.inspect("diff:forge")["Layers"].as_array().unwrap().len(), forge.inspect("diff:docker")["Layers"].as_array().unwrap().len());
}

#[test]
fn same_tree_and_config_as_buildah_bud() {
    let forge = Forge::with_busybox();
    let context = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/build/diff");
    let r = forge.build(&context, "diff:forge", &[]);
    assert!(r.ok, "{}", r.stderr);

    let work = forge.dir.path().join("buildah");
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/podman/containers.conf");
    let buildah = |args: &[&str]| {
        let out = std::process::Command::new("buildah")
            .env("CONTAINERS_CONF", &conf)
            .arg("--root")
            .arg(work.join("root"))
            .arg("--runroot")
            .arg(work.join("run"))
            .args(["--storage-driver", "overlay"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "buildah {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let base = forge.dir.path().join("busybox-oci.tar");
    forge.ok(&["save", "--format", "oci", "-o", base.to_str().unwrap(), "busybox:latest"]);
    buildah(&["pull", "-q", &format!("oci-archive:{}", base.display())]);
    let id = buildah(&["images", "-q"]).lines().next().unwrap().to_string();
    buildah(&["tag", &id, "busybox:latest"]);
    buildah(&["bud", "--isolation", "chroot", "--layers", "--pull=never", "-q", "-t", "diff:buildah", context.to_str().unwrap()]);
    let out = forge.dir.path().join("diff-buildah.tar");
    buildah(&["push", "-q", "diff:buildah", &format!("docker-archive:{}:diff:buildah", out.display())]);
    let loaded = forge.ok(&["load", "-i", out.to_str().unwrap()]).stdout;
    let name = loaded.lines().find_map(|l| l.strip_prefix("Loaded image: ")).unwrap_or_else(|| panic!("{loaded}")).to_string();

    // buildah's known departures from BuildKit, which forge follows (the docker differential
    // above matches exactly): mountpoint stubs RUN steps leave behind, an empty /run and empty
    // /etc/{hosts,hostname,resolv.conf}. Everything else must match.
    let empty = "file e3b0c44298fc1c14";
    let mut theirs = tree(&forge.rootfs(&name));
    let ours_now = tree(&forge.rootfs("diff:forge"));
    for stub in ["run", "etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        let is_stub = theirs.get(stub).is_some_and(|v| v.starts_with("dir") || v.starts_with(empty));
        if is_stub && !ours_now.contains_key(stub) {
            theirs.remove(stub);
        }
    }
    let ours = tree(&forge.rootfs("diff:forge"));
    let only = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| -> Vec<String> {
        a.iter().filter(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| format!("{k}: {v}")).collect()
    };
    assert_eq!(only(&ours, &theirs), Vec::<String>::new(), "forge differs from buildah; buildah has:\n{}", only(&theirs, &ours).join("\n"));
    assert_eq!(ours.len(), theirs.len(), "buildah only: {:?}", only(&theirs, &ours));
    let a = forge.inspect("diff:forge")["Config"].clone();
    let mut b = forge.inspect(&name)["Config"].clone();
    // buildah stamps its own version as a label.
    if let Some(labels) = b["Labels"].as_object_mut() {
        labels.remove("io.buildah.version");
    }
    for field in ["Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts"] {
        assert_eq!(a[field], b[field], "config field {field}");
    }
    // buildah orders Env differently; the set must be the same.
    let set = |v: &serde_json::Value| -> std::collections::BTreeSet<String> { v.as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect() };
    assert_eq!(set(&a["Env"]), set(&b["Env"]));
}
