//! forge against the reference implementation: the same Dockerfile built by `docker build`
//! (BuildKit, Debian's docker.io) and by forge gives the same file tree (paths, types, modes,
//! owners, contents, link targets) and the same config fields.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::Forge;
use sha2::{Digest, Sha256};

/// path -> "type mode uid:gid content-or-target"
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let what = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else {
                format!("file {}", hex(&std::fs::read(&p).unwrap()))
            };
            out.insert(rel, format!("{what} {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid()));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

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
