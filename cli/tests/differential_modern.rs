//! forge against today's BuildKit: every case of `testdata/differential/` (a directory with a
//! Dockerfile and its context) is built by Docker 28.5 (its built-in BuildKit) and by forge,
//! and the two images must have the same file tree (type, mode, owner, content, link target,
//! device numbers), the same config, the same number of layers and the same history
//! (timestamps aside).
//!
//! Docker 28.5 runs from `../shared/anchors/start-dockerd-modern.sh` (a Debian trixie chroot
//! on a private socket); the test starts it when it is not up and stops it again afterwards.
//! Without `../shared` (a fresh clone) the test says it is skipped and passes; with it, a
//! daemon that cannot start fails the test. A case may hold `.diff-flags`: extra `build`
//! arguments, one per line, given to both builders; `{SERVED}` in them is the URL of an HTTP
//! server of `testdata/differential/.served/` (for `ADD <url>`), `{CASE}` the case's directory. `FORGE_DIFF_CASES=word,word` builds only
//! the cases whose name contains one of the words.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::modern::Modern;
use common::Forge;

/// The base every case starts FROM, under a name no other user of the shared daemon loads.
const BASE: &str = "forge-diff-busybox:latest";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One case: its name, context and extra build arguments.
struct Case {
    name: String,
    dir: PathBuf,
    flags: Vec<String>,
}

fn cases(served: &str) -> Vec<Case> {
    let root = repo().join("testdata/differential");
    let only = std::env::var("FORGE_DIFF_CASES").unwrap_or_default();
    let mut out: Vec<Case> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("Dockerfile").exists())
        .map(|e| {
            let dir = e.path();
            let flags = std::fs::read_to_string(dir.join(".diff-flags"))
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.replace("{SERVED}", served).replace("{CASE}", &dir.to_string_lossy()))
                .collect();
            Case { name: e.file_name().to_string_lossy().into_owned(), dir, flags }
        })
        .filter(|c| only.split(',').any(|w| c.name.contains(w)))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Serves the files of `dir` over HTTP on 127.0.0.1 (for `ADD <url>`), with a fixed
/// Last-Modified; returns the base URL. The thread ends with the test process.
fn serve(dir: PathBuf) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
            }
            let name = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let mut s = stream;
            let _ = match std::fs::read(dir.join(&name)).ok().filter(|_| !name.contains("..")) {
                Some(body) => write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nConnection: close\r\n\r\n", body.len()).and_then(|_| s.write_all(&body)),
                None => write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            };
        }
    });
    url
}


/// The raw image config of `tag` in forge's store.
fn config(forge: &Forge, tag: &str) -> serde_json::Value {
    let id = forge.inspect(tag)["Id"].as_str().unwrap().to_string();
    let blob = forge.store().join("blobs/sha256").join(id.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap()
}

/// JSON with nulls, empty strings, lists and objects dropped (Go writes some of them, forge
/// leaves them out, and they mean the same) and object keys in order.
fn pruned(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        // Keys sorted: Go writes struct fields in declaration order, forge alphabetically.
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> = m
                .iter()
                .map(|(k, v)| (k, pruned(v)))
                .filter(|(_, v)| !(v.is_null() || v.as_str() == Some("") || v.as_array().is_some_and(|a| a.is_empty()) || v.as_object().is_some_and(|o| o.is_empty())))
                .collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(pruned).collect()),
        v => v.clone(),
    }
}

/// What must be equal: the config's `config`, `author`, platform, the layer count and the
/// history without timestamps.
fn summary(cfg: &serde_json::Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let c = pruned(&cfg["config"]);
    if let Some(m) = c.as_object() {
        for (k, v) in m {
            out.insert(format!("config.{k}"), v.to_string());
        }
    }
    for k in ["author", "architecture", "os"] {
        out.insert(k.into(), cfg[k].to_string());
    }
    out.insert("layers".into(), cfg["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len).to_string());
    for (i, h) in cfg["history"].as_array().into_iter().flatten().enumerate() {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        out.insert(format!("history[{i:02}]"), format!("{} | empty_layer={empty} | {}", h["created_by"].as_str().unwrap_or(""), h["comment"].as_str().unwrap_or("")));
    }
    out
}

fn differences(ours: &BTreeMap<String, String>, theirs: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for k in ours.keys().chain(theirs.keys().filter(|k| !ours.contains_key(*k))) {
        let (a, b) = (ours.get(k), theirs.get(k));
        if a != b {
            out.push(format!("  {k}\n    forge:  {}\n    docker: {}", a.map_or("(none)", String::as_str), b.map_or("(none)", String::as_str)));
        }
    }
    out
}

/// A busybox base with fixed timestamps, so that it is the same image in every run.
fn import_base(forge: &Forge) -> PathBuf {
    let rootfs = forge.dir.path().join("base-rootfs");
    forge_testkit::busybox_rootfs(&rootfs);
    let tar = forge.dir.path().join("base.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--sort=name", "--mtime=@1700000000", "--numeric-owner", "-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    forge.ok(&["import", tar.to_str().unwrap(), BASE]);
    let saved = forge.dir.path().join("base-docker.tar");
    forge.ok(&["save", "-o", saved.to_str().unwrap(), BASE]);
    saved
}

#[test]
fn same_images_as_docker_28() {
    let Some(anchors) = forge_testkit::shared_data("anchors") else { return };
    forge_testkit::require_root();
    let served = serve(repo().join("testdata/differential/.served"));
    let cases = cases(&served);
    assert!(!cases.is_empty(), "no cases under testdata/differential");
    let modern = Modern::start(&anchors);
    let forge = Forge::empty();
    let base = import_base(&forge);
    modern.ok(&["load", "-i", base.to_str().unwrap()]);

    // Docker builds in one thread while forge builds in this one.
    // Tags of this run only: another run may share the daemon (a developer's and a helper's).
    let docker_tag = |name: &str| format!("forge-diff-{}/{name}:docker", std::process::id());
    let docker_tags: Vec<String> = cases.iter().map(|c| docker_tag(&c.name)).collect();
    let docker_results = std::thread::scope(|s| {
        let docker = s.spawn(|| {
            cases
                .iter()
                .zip(&docker_tags)
                .map(|(c, tag)| {
                    // Cold, as forge's fresh store is: BuildKit's cache keys a COPY by content
                    // alone, so a warm daemon replays a RUN that saw an older mtime.
                    let mut args = vec!["build".to_string(), "-q".into(), "--no-cache".into(), "--network".into(), "none".into(), "-t".into(), tag.clone()];
                    args.extend(c.flags.iter().cloned());
                    args.push(c.dir.to_string_lossy().into_owned());
                    let out = modern.cmd().args(&args).output().unwrap();
                    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
                })
                .collect::<Vec<_>>()
        });
        let forge_results: Vec<(bool, String)> = cases
            .iter()
            .map(|c| {
                let mut args = vec!["build", "--progress", "plain", "--network", "none", "-t"];
                let tag = format!("forge-diff/{}:forge", c.name);
                args.push(&tag);
                args.extend(c.flags.iter().map(String::as_str));
                let dir = c.dir.to_string_lossy().into_owned();
                args.push(&dir);
                let r = forge.run(&args);
                (r.ok, r.stderr)
            })
            .collect();
        (docker.join().unwrap(), forge_results)
    });
    let (docker_built, forge_built) = docker_results;

    let saved = forge.dir.path().join("docker-images.tar");
    let built_tags: Vec<&str> = docker_tags.iter().zip(&docker_built).filter(|(_, (ok, _))| *ok).map(|(t, _)| t.as_str()).collect();
    if !built_tags.is_empty() {
        let mut args = vec!["save", "-o", saved.to_str().unwrap()];
        args.extend(built_tags.iter());
        modern.ok(&args);
        forge.ok(&["load", "-i", saved.to_str().unwrap()]);
    }
    // The base stays: another run sharing the daemon may still build on it, and each run loads it.
    let mut rmi = vec!["rmi", "-f"];
    rmi.extend(built_tags.iter());
    let _ = modern.cmd().args(&rmi).output();

    let mut failures = Vec::new();
    for ((case, (d_ok, d_err)), (f_ok, f_err)) in cases.iter().zip(&docker_built).zip(&forge_built) {
        let (d_tag, f_tag) = (docker_tag(&case.name), format!("forge-diff/{}:forge", case.name));
        let mut diffs = Vec::new();
        match (d_ok, f_ok) {
            (true, true) => {}
            (false, _) => diffs.push(format!("  docker build failed (forge {}):\n{d_err}", if *f_ok { "built it" } else { "failed too" })),
            (true, false) => diffs.push(format!("  forge build failed:\n{f_err}")),
        }
        if diffs.is_empty() {
            diffs.extend(differences(&summary(&config(&forge, &f_tag)), &summary(&config(&forge, &d_tag))));
            diffs.extend(differences(&common::tree(&forge.rootfs(&f_tag)), &common::tree(&forge.rootfs(&d_tag))));
            for t in [&f_tag, &d_tag] {
                let _ = std::fs::remove_dir_all(forge.dir.path().join(format!("rootfs-{}", t.replace([':', '/'], "_"))));
                let _ = std::fs::remove_dir_all(forge.dir.path().join(format!("bundle-{}", t.replace([':', '/'], "_"))));
            }
        }
        if !diffs.is_empty() {
            failures.push(format!("{}:\n{}", case.name, diffs.join("\n")));
        }
    }
    eprintln!("differential_modern: {} of {} cases identical with Docker 28.5", cases.len() - failures.len(), cases.len());
    assert!(failures.is_empty(), "{} of {} cases differ from Docker 28.5:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}
