//! `forge build` semantics, through the binary, on the Dockerfiles of `testdata/build/`, over a
//! busybox base. Results are read back with umoci (file trees) and `forge inspect` (configs),
//! and the images run under podman.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Forge;
use sha2::Digest as _;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/build").join(name)
}

/// A copy of a testdata context in the test's directory, so a test can add files to it.
fn context_copy(forge: &Forge, name: &str) -> PathBuf {
    let dest = forge.dir.path().join(format!("ctx-{name}"));
    assert!(Command::new("cp").arg("-a").arg(testdata(name)).arg(&dest).status().unwrap().success());
    dest
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path.trim_start_matches('/'))).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn metadata_instructions_and_arg_scoping() {
    let forge = Forge::with_busybox();
    let r = forge.build(&testdata("metadata"), "meta:1", &["--build-arg", "LOCAL=override", "--build-arg", "NOT_DECLARED=1"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("NOT_DECLARED"), "an unused build arg is warned about: {}", r.stderr);
    let root = forge.rootfs("meta:1");
    assert_eq!(read(&root, "/vars"), "1|override-x|1 override-x|g1|unset|override|g1\n");

    let c = forge.inspect("meta:1");
    let cfg = &c["Config"];
    let env: Vec<&str> = cfg["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(env.contains(&"A=1") && env.contains(&"B=override-x") && env.contains(&"C=1 override-x") && env.contains(&"D=g1"), "{env:?}");
    assert!(!env.iter().any(|e| e.starts_with("LOCAL=") || e.starts_with("GLOBAL=")), "ARGs must not persist: {env:?}");
    assert_eq!(cfg["Labels"], serde_json::json!({"version": "1.0", "desc": "a b"}));
    assert_eq!(cfg["ExposedPorts"], serde_json::json!({"80/tcp": {}, "443/udp": {}}));
    assert_eq!(cfg["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(cfg["StopSignal"], "SIGTERM");
    assert_eq!(cfg["Healthcheck"], serde_json::json!({"Test": ["CMD-SHELL", "wget -q -O- localhost || exit 1"], "Interval": 5_000_000_000u64, "Retries": 2}));
    assert_eq!(cfg["OnBuild"], serde_json::json!(["RUN echo child > /onbuild"]));
    assert_eq!(cfg["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    // CMD set in the same stage survives a later ENTRYPOINT.
    assert_eq!(cfg["Cmd"], serde_json::json!(["echo", "cmd"]));
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/echo"]));
    assert_eq!(c["Author"], "someone");
    // Docker 28.5 writes the ports as Go prints a sorted list.
    let history = c["History"].as_array().unwrap();
    assert!(history.iter().any(|h| h["created_by"] == "EXPOSE [443/udp 80/tcp]" && h["empty_layer"] == true), "{history:?}");
    assert_eq!(forge.podman_run("meta:1", &[]), "echo cmd\n");

    // A child image: the trigger runs, is not inherited, and the new ENTRYPOINT drops the
    // inherited CMD.
    let r = forge.build(&testdata("onbuild"), "child:1", &[]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(read(&forge.rootfs("child:1"), "/onbuild"), "child\n");
    let child = forge.inspect("child:1");
    assert!(child["Config"]["OnBuild"].is_null() && child["Config"]["Cmd"].is_null(), "{}", child["Config"]);
    assert_eq!(forge.podman_run("child:1", &["/vars"]), "1|override-x|1 override-x|g1|unset|override|g1\n");
}

#[test]
fn copy_and_add_follow_dockers_rules() {
    let forge = Forge::with_busybox();
    let ctx = context_copy(&forge, "copy");
    let payload = forge.dir.path().join("payload");
    std::fs::create_dir_all(payload.join("deep")).unwrap();
    std::fs::write(payload.join("deep/inside.txt"), "from the archive\n").unwrap();
    assert!(Command::new("tar").arg("-C").arg(&payload).arg("-czf").arg(ctx.join("archive.tar.gz")).arg(".").status().unwrap().success());
    std::fs::set_permissions(ctx.join("app/a.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();

    let r = forge.build(&ctx, "copy:1", &[]);
    assert!(r.ok, "{}", r.stderr);
    let root = forge.rootfs("copy:1");
    assert_eq!(read(&root, "/dst/app/a.txt"), "alpha\n");
    assert_eq!(read(&root, "/dst/app/sub/b.txt"), "beta\n");
    assert!(root.join("dst/app/skip.log").exists());
    assert_eq!(read(&root, "/renamed.txt"), "alpha\n");
    assert_eq!(read(&root, "/glob/a.txt"), "alpha\n");
    assert!(!root.join("glob/sub").exists() && !root.join("glob/skip.log").exists());
    let owned = std::fs::metadata(root.join("owned/a.txt")).unwrap();
    assert_eq!((owned.uid(), owned.gid(), owned.mode() & 0o7777), (1000, 50, 0o640));
    let plain = std::fs::metadata(root.join("renamed.txt")).unwrap();
    assert_eq!((plain.uid(), plain.gid(), plain.mode() & 0o7777), (0, 0, 0o755), "context files are root's and keep their mode");
    assert!(root.join("excl/a.txt").exists() && !root.join("excl/skip.log").exists());
    assert_eq!(read(&root, "/par/app/sub/b.txt"), "beta\n");
    assert_eq!(read(&root, "/extracted/deep/inside.txt"), "from the archive\n");
    assert!(root.join("not-extracted/archive.tar.gz").is_file(), "COPY never extracts");
    assert_eq!(read(&root, "/inline.txt"), "hello from a heredoc\n");
    assert_eq!(read(&root, "/w/rel.txt"), "alpha\n");
    let made = std::fs::metadata(root.join("home/app/made")).unwrap();
    assert_eq!((made.uid(), made.is_dir()), (1000, true), "WORKDIR is created for the USER");
    assert!(!root.join("ignored").exists() && !root.join("x.tmp").exists());

    // A source the .dockerignore excludes does not exist for the build.
    let ctx2 = forge.context("ignored-src", &[("Dockerfile", "FROM busybox:latest\nCOPY ignored/secret /\n"), (".dockerignore", "ignored\n"), ("ignored/secret", "s")]);
    let r = forge.build(&ctx2, "bad:1", &[]);
    assert!(!r.ok);
    assert!(r.stderr.contains("Dockerfile:2") && r.stderr.contains("not found"), "{}", r.stderr);
}

#[test]
fn add_extracts_the_four_compressions_buildkit_reads() {
    let forge = Forge::with_busybox();
    let payload = forge.dir.path().join("payload");
    std::fs::create_dir_all(payload.join("deep")).unwrap();
    std::fs::write(payload.join("deep/inside.txt"), "from the archive\n").unwrap();
    let ctx = forge.context("add-compressed", &[("Dockerfile", "FROM busybox:latest\nADD a.tar.gz /gz/\nADD a.tar.bz2 /bz2/\nADD a.tar.xz /xz/\nADD a.tar.zst /zst/\n")]);
    for (name, flag) in [("a.tar.gz", "-z"), ("a.tar.bz2", "-j"), ("a.tar.xz", "-J"), ("a.tar.zst", "--zstd")] {
        assert!(Command::new("tar").arg("-C").arg(&payload).arg(flag).arg("-cf").arg(ctx.join(name)).arg(".").status().unwrap().success(), "{name}");
    }
    let r = forge.build(&ctx, "compressed:1", &[]);
    assert!(r.ok, "{}", r.stderr);
    let root = forge.rootfs("compressed:1");
    for dir in ["gz", "bz2", "xz", "zst"] {
        assert_eq!(read(&root, &format!("/{dir}/deep/inside.txt")), "from the archive\n", "{dir}");
    }
}

#[test]
fn run_forms_and_mounts() {
    let forge = Forge::with_busybox();
    let secret = forge.dir.path().join("token");
    std::fs::write(&secret, "s3cret").unwrap();
    let src = format!("id=tok,src={}", secret.display());
    let r = forge.build(&testdata("run"), "run:1", &["--secret", &src]);
    assert!(r.ok, "{}", r.stderr);
    let root = forge.rootfs("run:1");
    assert_eq!(read(&root, "/net.txt"), "lo\n");
    assert_eq!(read(&root, "/heredoc.txt"), "heredoc\nsecond\n");
    assert_eq!(read(&root, "/exec.txt"), "exec\n");
    assert_eq!(read(&root, "/secret-ls.txt"), "tok\n");
    // sha256("s3cret"): the step read the secret's content.
    assert_eq!(read(&root, "/secret-hash.txt"), "1ec1c26b50d5d3c5\n");
    assert!(!root.join("run/secrets/tok").exists(), "a secret must not end up in a layer");
    assert_eq!(read(&root, "/tmpfs.txt"), "x\n");
    assert!(!root.join("scratch").exists(), "a tmpfs mountpoint must not end up in a layer");
    assert_eq!(read(&root, "/bound.txt"), "data from the context\n");
    assert_eq!(read(&root, "/cache-count.txt").trim(), "1");
    assert_eq!(read(&root, "/tmp/whoami"), "app\n");
    // No layer holds the secret's value.
    let store = forge.store();
    let grep = Command::new("sh").arg("-c").arg(format!("for b in {}/blobs/sha256/*; do (zcat -f $b 2>/dev/null || cat $b) | grep -c s3cret; done | grep -v '^0$'", store.display())).output().unwrap();
    assert!(String::from_utf8_lossy(&grep.stdout).trim().is_empty(), "secret found in a blob");

    // The cache mount persists across builds: a forced rebuild sees the first build's file.
    let r = forge.build(&testdata("run"), "run:2", &["--secret", &src, "--no-cache"]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(read(&forge.rootfs("run:2"), "/cache-count.txt").trim(), "2");

    // Secrets are not part of the cache key (as in BuildKit), so only a forced rebuild without
    // the secret runs the step, which then finds no /run/secrets and fails.
    let r = forge.build(&testdata("run"), "run:3", &["--no-cache"]);
    assert!(!r.ok && r.stderr.contains("Dockerfile:9"), "{}", r.stderr);
}

/// `--secret id=X,env=VAR`: the value reaches the step as a file and as an environment
/// variable, and no trace of it is left under the store or the temp directory afterwards.
#[test]
fn an_env_secret_never_touches_the_disk() {
    let forge = Forge::with_busybox();
    let value = format!("forge-secret-{}-d41f7e", std::process::id());
    // The steps record hashes of what they saw: the value itself must appear nowhere.
    let dockerfile = "FROM busybox:latest\n\
        RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -c1-16 > /file-hash && stat -c %a /run/secrets/tok > /mode\n\
        RUN --mount=type=secret,id=tok,env=TOKEN printf %s \"$TOKEN\" | sha256sum | cut -c1-16 > /env-hash\n";
    let ctx = forge.context("env-secret", &[("Dockerfile", dockerfile)]);
    let tmp = forge.dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = forge
        .cmd()
        .env("TMPDIR", &tmp)
        .env("FORGE_TEST_SECRET", &value)
        .args(["build", "--progress", "plain", "-t", "sec:1", "--secret", "id=tok,env=FORGE_TEST_SECRET"])
        .arg(&ctx)
        .output()
        .unwrap();
    let ran = common::Ran::from(out);
    assert!(ran.ok, "{}", ran.stderr);
    let root = forge.rootfs("sec:1");
    let hash: String = sha2::Sha256::digest(value.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).chain(["\n".to_string()]).collect();
    assert_eq!(read(&root, "/file-hash"), hash);
    assert_eq!(read(&root, "/env-hash"), hash);
    for dir in [forge.store(), tmp.clone()] {
        let grep = Command::new("grep").args(["-r", "-l", "-a", "-F", &value]).arg(&dir).output().unwrap();
        assert!(grep.stdout.is_empty(), "the secret's value is on disk under {}:\n{}", dir.display(), String::from_utf8_lossy(&grep.stdout));
    }
    // Read-only for root alone, as BuildKit mounts secrets.
    assert_eq!(read(&root, "/mode"), "400\n");
    // Nor is a mount left behind.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(forge.dir.path().to_str().unwrap()), "a mount is left under the test's directory");
}

/// History, layers, ARG inheritance, RUN's user and environment and COPY's JSON form, as Docker
/// 28.5 made them from the same Dockerfile (recorded here so this runs without the daemon; the
/// differential suite compares with the daemon itself).
#[test]
fn as_docker_28_writes_it() {
    let forge = Forge::with_busybox();
    let r = forge.build(&testdata("buildkit28"), "bk:1", &["--network", "none"]);
    assert!(r.ok, "{}", r.stderr);
    let image = forge.inspect("bk:1");
    let history: Vec<String> = image["History"].as_array().unwrap()[1..]
        .iter()
        .map(|h| format!("{} {}", if h["empty_layer"] == true { "empty" } else { "layer" }, h["created_by"].as_str().unwrap()))
        .collect();
    let docker = [
        "empty ARG A1=one",
        "empty ARG A2",
        "empty ENV E1=x",
        r#"layer RUN |2 A1=one A2= /bin/sh -c echo "$A1" > /a1 # buildkit"#,
        "layer RUN |2 A1=one A2= /bin/sh -c env | sort > /env.txt; id > /id.txt # buildkit",
        "layer WORKDIR /tmp",
        "layer WORKDIR /newdir",
        "layer COPY --chown=app:staff --chmod=640 name with space.txt /dst/ # buildkit",
        "layer ADD --chmod=755 name with space.txt /add/ # buildkit",
        "empty USER app:staff",
        "layer RUN |2 A1=one A2= /bin/sh -c id > /tmp/id2.txt # buildkit",
        "empty USER app",
        "layer RUN |2 A1=one A2= /bin/sh -c id > /tmp/id3.txt # buildkit",
        "empty USER root",
        r#"empty CMD ["cat" "a"]"#,
        r#"empty ENTRYPOINT ["/bin/sh" "-c" "echo hi"]"#,
        "empty SHELL [/bin/sh -ec]",
        r#"empty HEALTHCHECK &{["CMD" "true"] "5s" "0s" "0s" "0s" '\x00'}"#,
        "empty EXPOSE [53/udp 80/tcp]",
        "empty VOLUME [/data /other]",
        "empty STOPSIGNAL SIGTERM",
        "empty LABEL a=b c d=e f",
        "empty MAINTAINER me",
        "layer RUN |2 A1=one A2= /bin/sh -ec echo shell-with-new-shell # buildkit",
    ];
    assert_eq!(history, docker);
    assert_eq!(image["RootFS"]["diff_ids"].as_array().unwrap().len(), 10);
    assert_eq!(image["Config"]["ArgsEscaped"], true);

    let root = forge.rootfs("bk:1");
    assert_eq!(read(&root, "/env.txt"), "A1=one\nE1=x\nHOME=/root\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nPWD=/\nSHLVL=1\n");
    assert_eq!(read(&root, "/id.txt"), "uid=0(root) gid=0(root) groups=0(root)\n");
    assert_eq!(read(&root, "/tmp/id2.txt"), "uid=1000(app) gid=50(staff) groups=50(staff)\n");
    assert_eq!(read(&root, "/tmp/id3.txt"), "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n");
    assert_eq!(read(&root, "/dst/name with space.txt"), "hello\n");
    // The directory COPY made for its destination got --chmod too.
    let dst = std::fs::metadata(root.join("dst")).unwrap();
    assert_eq!((dst.mode() & 0o7777, dst.uid(), dst.gid()), (0o640, 1000, 50));
}

#[test]
fn a_failing_step_names_its_line_and_shows_its_output() {
    let forge = Forge::with_busybox();
    let r = forge.build(&testdata("fail"), "fail:1", &[]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("error: Dockerfile:3: RUN echo \"about to fail\"; exit 3: process did not complete successfully: exit code 3"), "{}", r.stderr);
    assert!(r.stderr.contains("about to fail"));
    assert!(!r.stderr.contains("never") && !r.stderr.contains("panicked"));
    assert!(forge.run(&["inspect", "fail:1"]).stderr.contains("not found"));
    // A Dockerfile that does not parse shows file:line:col and a caret.
    let ctx = forge.context("syntax", &[("Dockerfile", "FROM busybox:latest\nCOPY onlyone\n")]);
    let r = forge.build(&ctx, "x:1", &[]);
    assert!(r.stderr.contains("Dockerfile:2:1: COPY requires at least two arguments"), "{}", r.stderr);
    assert!(r.stderr.contains('^'), "{}", r.stderr);
}

#[test]
fn target_prunes_stages_and_stages_run() {
    let forge = Forge::with_busybox();
    let r = forge.build(&testdata("stages"), "b:1", &["--target", "b"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(!r.stderr.contains("[c]"), "stage c must not run: {}", r.stderr);
    let root = forge.rootfs("b:1");
    assert_eq!(read(&root, "/from-a"), "a\n");
    assert_eq!(read(&root, "/b"), "b\n");
    let r = forge.build(&testdata("stages"), "x:1", &["--target", "nope"]);
    assert!(!r.ok && r.stderr.contains("nope"), "{}", r.stderr);
}

#[test]
fn builds_are_reproducible_with_source_date_epoch() {
    let a = Forge::with_busybox();
    let b = Forge::with_busybox_of(&a);
    let id = |f: &Forge| {
        let r = f.cmd().env("SOURCE_DATE_EPOCH", "1700000000").args(["build", "-q", "-t", "r:1"]).arg(testdata("diff")).output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        String::from_utf8(r.stdout).unwrap().trim().to_string()
    };
    let (ia, ib) = (id(&a), id(&b));
    assert!(ia.starts_with("sha256:"), "{ia}");
    assert_eq!(ia, ib, "\n{}\n{}", a.inspect("r:1"), b.inspect("r:1"));
    assert_eq!(a.inspect("r:1")["Created"], "2023-11-14T22:13:20Z");
}

/// The layers of `tag` the build made (the base's first layer left out): (media type, blob path).
fn built_layers(forge: &Forge, tag: &str) -> Vec<(String, PathBuf)> {
    let blob = |d: &str| forge.store().join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let digest = forge.inspect(tag)["ManifestDigest"].as_str().unwrap().to_string();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(&digest)).unwrap()).unwrap();
    manifest["layers"].as_array().unwrap()[1..]
        .iter()
        .map(|l| (l["mediaType"].as_str().unwrap().to_string(), blob(l["digest"].as_str().unwrap())))
        .collect()
}

/// A warm store must not hand back layers made with other byte-level options: `--compression`
/// and `SOURCE_DATE_EPOCH` each make the steps' layers again, and a reproducible build gives
/// the same digests from a cold and from a warm store, with gzip and zstd.
#[test]
fn compression_and_source_date_epoch_apply_in_a_warm_store() {
    let warm = Forge::with_busybox();
    let ctx = testdata("diff");
    let build = |f: &Forge, tag: &str, compression: &str, epoch: Option<&str>| -> String {
        let mut cmd = f.cmd();
        if let Some(e) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", e);
        }
        let out = cmd.args(["build", "-q", "-t", tag, "--compression", compression]).arg(&ctx).output().unwrap();
        assert!(out.status.success(), "{tag}: {}", String::from_utf8_lossy(&out.stderr));
        f.inspect(tag)["ManifestDigest"].as_str().unwrap().to_string()
    };
    build(&warm, "w:gzip", "gzip", None);
    let layers = built_layers(&warm, "w:gzip");
    assert!(layers.len() >= 3 && layers.iter().all(|(t, _)| t.ends_with("tar+gzip")), "{layers:?}");

    build(&warm, "w:zstd", "zstd", None);
    let layers = built_layers(&warm, "w:zstd");
    assert!(layers.iter().all(|(t, _)| t.ends_with("tar+zstd")), "a warm store gave other layers for --compression zstd: {layers:?}");

    // Every entry of every layer is clamped to the epoch (GNU tar reads gzip and zstd alike).
    let epoch = "1700000000";
    build(&warm, "w:epoch", "gzip", Some(epoch));
    for (_, path) in built_layers(&warm, "w:epoch") {
        let list = Command::new("tar").args(["--full-time", "-tvf"]).arg(&path).output().unwrap();
        assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
        let listing = String::from_utf8_lossy(&list.stdout).into_owned();
        for line in listing.lines() {
            let date = line.split_whitespace().nth(3).unwrap();
            assert!(date <= "2023-11-14", "an entry newer than SOURCE_DATE_EPOCH in a warm rebuild: {line}");
        }
    }

    let cold = Forge::with_busybox_of(&warm);
    for compression in ["gzip", "zstd"] {
        let tag = format!("r:{compression}");
        let a = build(&cold, &tag, compression, Some(epoch));
        let b = build(&warm, &tag, compression, Some(epoch));
        assert_eq!(a, b, "{compression}: a cold and a warm store give different images for the same SOURCE_DATE_EPOCH");
    }
}

#[test]
fn outputs_oci_docker_and_local() {
    let forge = Forge::with_busybox();
    let oci = forge.dir.path().join("out-oci.tar");
    let docker = forge.dir.path().join("out-docker.tar");
    let local = forge.dir.path().join("out-local");
    for (spec, _) in [(format!("type=oci,dest={}", oci.display()), ()), (format!("type=docker,dest={}", docker.display()), ()), (format!("type=local,dest={}", local.display()), ())] {
        let r = forge.build(&testdata("stages"), "o:1", &["--target", "b", "--output", &spec]);
        assert!(r.ok, "{spec}: {}", r.stderr);
    }
    let inspect = Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}", oci.display())).output().unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let list = Command::new("tar").arg("tf").arg(&docker).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).lines().any(|l| l == "manifest.json"));
    assert_eq!(read(&local, "/b"), "b\n");
    let iid = forge.dir.path().join("iid");
    let r = forge.build(&testdata("stages"), "o:1", &["--target", "b", "--iidfile", iid.to_str().unwrap()]);
    assert!(r.ok);
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), forge.inspect("o:1")["Id"].as_str().unwrap());
}

#[test]
fn ctrl_c_cancels_cleanly() {
    let forge = Forge::with_busybox();
    let marker = format!("forge-ctrl-c-{}", std::process::id());
    let ctx = forge.context("slow", &[("Dockerfile", &format!("FROM busybox:latest\nRUN sh -c 'sleep 1000; : {marker}' & sleep 1000\n"))]);
    let mut child = forge.cmd().args(["build", "--progress", "plain", "-t", "slow:1"]).arg(&ctx).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let start = std::time::Instant::now();
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(start.elapsed() < std::time::Duration::from_secs(10), "cancel took {:?}", start.elapsed());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("cancelled"), "{err}");
    // No process, mount or half-written entry is left behind.
    assert_eq!(common::pids_with(&marker), Vec::<u32>::new(), "processes of the step outlived the build");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(forge.store().to_str().unwrap()), "a mount under the store is left");
    forge.ok(&["store", "fsck"]);
    assert!(forge.run(&["inspect", "slow:1"]).stderr.contains("not found"));
}

/// Serves `body` to every request on a loopback port; returns the base URL.
fn serve(body: Vec<u8>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
            }
            let mut s = stream;
            // 1700000000 seconds after the epoch.
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(&body);
        }
    });
    url
}

#[test]
fn add_downloads_urls_with_checksums() {
    let forge = Forge::with_busybox();
    // A gzip tarball: remote archives are copied, never extracted.
    let payload = forge.dir.path().join("payload");
    std::fs::create_dir(&payload).unwrap();
    std::fs::write(payload.join("x"), "x").unwrap();
    let tgz = forge.dir.path().join("remote.tar.gz");
    assert!(Command::new("tar").arg("-C").arg(&payload).arg("-czf").arg(&tgz).arg(".").status().unwrap().success());
    let bytes = std::fs::read(&tgz).unwrap();
    let digest = format!("sha256:{}", sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>());
    let url = serve(bytes.clone());
    let ctx = forge.context("add-url", &[("Dockerfile", &format!("FROM busybox:latest\nADD --checksum={digest} {url}/files/remote.tar.gz /dl/\nADD {url}/files/remote.tar.gz /named.tgz\n"))]);
    let r = forge.build(&ctx, "addurl:1", &[]);
    assert!(r.ok, "{}", r.stderr);
    let root = forge.rootfs("addurl:1");
    assert_eq!(std::fs::read(root.join("dl/remote.tar.gz")).unwrap(), bytes);
    let meta = std::fs::metadata(root.join("dl/remote.tar.gz")).unwrap();
    // Mode 0600 and the server's Last-Modified, as BuildKit gives a downloaded file.
    assert_eq!((meta.mode() & 0o7777, meta.mtime()), (0o600, 1_700_000_000));
    assert!(root.join("named.tgz").is_file() && !root.join("dl/x").exists());

    let bad = forge.context("add-url-bad", &[("Dockerfile", &format!("FROM busybox:latest\nADD --checksum=sha256:{} {url}/f /f\n", "0".repeat(64)))]);
    let r = forge.build(&bad, "addurl:2", &[]);
    assert!(!r.ok && r.stderr.contains("checksum mismatch") && r.stderr.contains("Dockerfile:2"), "{}", r.stderr);
}

#[test]
fn bad_flags_are_one_clear_error() {
    let forge = Forge::empty();
    let ctx = forge.context("flags", &[("Dockerfile", "FROM scratch\n")]);
    for (flags, says) in [
        (&["--cpus", "0"][..], "--cpus must be a positive number"),
        (&["--memory", "12x"][..], "invalid size \"12x\""),
        (&["--secret", "nonsense"][..], "invalid --secret"),
        (&["--output", "type=registry"][..], "unsupported --output type"),
        (&["-f", "/nonexistent/Dockerfile"][..], "reading the Dockerfile"),
    ] {
        let r = forge.build(&ctx, "x:1", flags);
        assert_eq!(r.code, Some(1), "{flags:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("error:") && r.stderr.contains(says) && !r.stderr.contains("panicked"), "{flags:?}: {}", r.stderr);
    }
    let r = forge.run(&["build", "--no-such-flag", ctx.to_str().unwrap()]);
    assert_eq!(r.code, Some(2), "usage errors exit 2: {}", r.stderr);
}
