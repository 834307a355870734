//! Hostile inputs given to the `forge` binary: Dockerfiles and `.dockerignore`s that point out
//! of the context or never end, expansion bombs, bad image names, closed pipes, archives
//! written to devices, and images with more layers than overlayfs stacks.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Forge, Ran};

/// Waits for `child`; kills it and fails after two minutes (a guard against a hang, not a
/// measure of speed).
fn wait_bounded(mut child: Child) -> Ran {
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("forge did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap().into()
}

/// `forge ARGS` with 1 GiB of address space at most (reading a device whole would need more)
/// and `stdin` as its input.
fn run_bounded(forge: &Forge, args: &[&str], stdin: Stdio) -> Ran {
    let child = Command::new("prlimit")
        .arg(format!("--as={}", 1u64 << 30))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_forge"))
        .arg("--root")
        .arg(forge.store())
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(child)
}

/// A tar of `dir` (symlinks kept as symlinks).
fn tar_of(dir: &Path, out: &Path) {
    assert!(Command::new("tar").arg("-C").arg(dir).arg("-cf").arg(out).arg(".").status().unwrap().success());
}

/// A context whose Dockerfile is a symlink to `target`.
fn linked_context(forge: &Forge, name: &str, target: &Path) -> std::path::PathBuf {
    let ctx = forge.dir.path().join(name);
    std::fs::create_dir_all(&ctx).unwrap();
    std::os::unix::fs::symlink(target, ctx.join("Dockerfile")).unwrap();
    ctx
}

#[test]
fn a_dockerfile_symlink_never_reads_a_host_file() {
    let forge = Forge::empty();
    // A host file the test wrote, and the real /etc/shadow: neither may show up.
    let secret = forge.dir.path().join("secret");
    std::fs::write(&secret, "SECRET-6f1d host only\n").unwrap();
    let shadow_first_line = std::fs::read_to_string("/etc/shadow").ok().and_then(|s| s.lines().next().map(str::to_string));
    for target in [secret.as_path(), Path::new("/etc/shadow")] {
        let ctx = linked_context(&forge, &format!("ctx-{}", target.file_name().unwrap().to_string_lossy()), target);
        let tar = forge.dir.path().join("ctx.tar");
        tar_of(&ctx, &tar);
        let runs = [
            run_bounded(&forge, &["build", ctx.to_str().unwrap()], Stdio::null()),
            run_bounded(&forge, &["build", "-"], std::fs::File::open(&tar).unwrap().into()),
        ];
        for r in runs {
            assert_eq!(r.code, Some(1), "{}", r.stderr);
            assert!(r.stderr.contains("Dockerfile") && r.stderr.contains("not found"), "{}", r.stderr);
            assert!(r.stderr.contains("resolved inside"), "{}", r.stderr);
            assert!(!r.stderr.contains("SECRET-6f1d") && !r.stdout.contains("SECRET-6f1d"), "{}", r.stderr);
            if let Some(line) = &shadow_first_line {
                assert!(!r.stderr.contains(line.as_str()), "/etc/shadow was read");
            }
        }
    }
}

#[test]
fn a_dockerfile_symlink_resolves_inside_the_context() {
    let forge = Forge::empty();
    // `/real/Dockerfile` is the context's own file, as BuildKit reads it.
    let ctx = forge.context("ctx", &[("real/Dockerfile", "FROM scratch\nNOPE x\n")]);
    std::os::unix::fs::symlink("/real/Dockerfile", ctx.join("Dockerfile")).unwrap();
    let r = forge.run(&["build", ctx.to_str().unwrap()]);
    assert!(r.stderr.contains("unknown instruction: NOPE"), "{}", r.stderr);
}

#[test]
fn endless_and_huge_dockerfiles_are_refused_in_bounded_memory() {
    let forge = Forge::empty();
    let ctx = linked_context(&forge, "zero", Path::new("/dev/zero"));
    let tar = forge.dir.path().join("zero.tar");
    tar_of(&ctx, &tar);
    let fifo_ctx = forge.context("fifo", &[("empty", "")]);
    assert!(Command::new("mkfifo").arg(fifo_ctx.join("Dockerfile")).status().unwrap().success());
    let big = forge.context("big", &[("empty", "")]);
    std::fs::write(big.join("Dockerfile"), format!("FROM scratch\nLABEL a={}\n", "x".repeat(17 << 20))).unwrap();
    let big_tar = forge.dir.path().join("big.tar");
    tar_of(&big, &big_tar);

    let cases: [(&str, Ran); 7] = [
        ("not found", run_bounded(&forge, &["build", ctx.to_str().unwrap()], Stdio::null())),
        ("not found", run_bounded(&forge, &["build", "-"], std::fs::File::open(&tar).unwrap().into())),
        ("is a character device, not a regular file", run_bounded(&forge, &["build", "-f", "/dev/zero", ctx.to_str().unwrap()], Stdio::null())),
        ("is a FIFO, not a regular file", run_bounded(&forge, &["build", fifo_ctx.to_str().unwrap()], Stdio::null())),
        ("larger than the limit of 16777216 bytes", run_bounded(&forge, &["build", big.to_str().unwrap()], Stdio::null())),
        ("larger than the limit of 16777216 bytes", run_bounded(&forge, &["build", "-"], std::fs::File::open(&big_tar).unwrap().into())),
        ("larger than the limit of 16777216 bytes", run_bounded(&forge, &["build", "-f", "-", ctx.to_str().unwrap()], std::fs::File::open("/dev/zero").unwrap().into())),
    ];
    for (want, r) in cases {
        assert_eq!(r.code, Some(1), "{want}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
        assert!(r.stderr.len() < 2000, "the error echoes the input: {} bytes", r.stderr.len());
    }
}

#[test]
fn a_dockerignore_symlink_or_device_is_refused() {
    let forge = Forge::empty();
    let ctx = forge.context("ctx", &[("Dockerfile", "FROM scratch\n")]);
    std::os::unix::fs::symlink("/dev/zero", ctx.join(".dockerignore")).unwrap();
    let r = run_bounded(&forge, &["build", ctx.to_str().unwrap()], Stdio::null());
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains(".dockerignore") && r.stderr.contains("not found"), "{}", r.stderr);
}

/// Whether `pid` has a thread named `name`.
fn has_thread(pid: u32, name: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| tasks.flatten().any(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)))
        .unwrap_or(false)
}

/// Everything under `dir` whose name starts with `prefix`.
fn find_named(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            found.push(path.clone());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(find_named(&path, prefix));
        }
    }
    found
}

#[test]
fn sigterm_stops_a_read_of_stdin_that_never_ends() {
    let forge = Forge::empty();
    let ctx = forge.context("ctx", &[("empty", "")]);
    // A Dockerfile on standard input, and a context tar on it (the start of one).
    let tar = forge.dir.path().join("ctx.tar");
    tar_of(&ctx, &tar);
    let tar_start = std::fs::read(&tar).unwrap()[..512].to_vec();
    let cases = [("-TERM", vec!["build", "-f", "-", ctx.to_str().unwrap()], b"FROM scratch\n".to_vec()), ("-INT", vec!["build", "-f", "-", ctx.to_str().unwrap()], b"FROM scratch\n".to_vec()), ("-TERM", vec!["build", "-"], tar_start)];
    for (signal, args, first_bytes) in cases {
        let mut child = forge.cmd().args(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // Some bytes and then nothing, with the pipe left open.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&first_bytes).unwrap();
        // The signal handler's thread exists once forge listens for signals.
        let ready = Instant::now() + Duration::from_secs(20);
        while !has_thread(child.id(), "ctrl-c") && Instant::now() < ready {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
        let r = wait_bounded(child);
        drop(stdin);
        assert_eq!(r.code, Some(1), "{signal} {args:?}: forge did not exit by itself: {}", r.stderr);
        assert!(r.stderr.contains("cancelled"), "{}", r.stderr);
        // The half-unpacked context is removed.
        assert_eq!(find_named(&forge.store(), "context-"), Vec::<std::path::PathBuf>::new());
    }
}

#[test]
fn expansion_bombs_are_clear_errors() {
    let forge = Forge::empty();
    let nested = format!("{}x{}", "${a:-".repeat(3000), "}".repeat(3000));
    let doubling = format!("FROM scratch\nENV a=x\n{}", "ENV a=${a}${a}\n".repeat(40));
    // Each word stays under the limit, but together they would not fit in an image config.
    let many = format!("FROM scratch\nENV a=x\n{}{}", "ENV a=$a$a\n".repeat(20), "ENV b=$a c=$a d=$a e=$a f=$a g=$a h=$a i=$a\n".repeat(3));
    for (dockerfile, want) in [
        (format!("FROM scratch\nENV x={nested}\n"), "nested more than"),
        (doubling, "larger than the limit of 1048576 bytes"),
        (many, "would exceed"),
    ] {
        let ctx = forge.context(&format!("ctx-{}", want.len()), &[("Dockerfile", &dockerfile)]);
        let r = run_bounded(&forge, &["build", "--progress", "plain", ctx.to_str().unwrap()], Stdio::null());
        assert_eq!(r.code, Some(1), "{want}: {}", &r.stderr[..r.stderr.len().min(2000)]);
        assert!(r.stderr.contains(want), "{want}: {}", &r.stderr[..r.stderr.len().min(2000)]);
        assert!(r.stderr.len() < 4000, "the error echoes the input: {} bytes", r.stderr.len());
    }
}

/// `forge ARGS` with standard output a pipe whose reader is gone.
fn run_into_closed_pipe(forge: &Forge, args: &[&str]) -> Ran {
    let (reader, writer) = rustix::pipe::pipe().unwrap();
    drop(reader);
    forge.cmd().args(args).stdout(Stdio::from(writer)).stderr(Stdio::piped()).output().unwrap().into()
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let forge = Forge::with_busybox();
    let ctx = forge.context("ctx", &[("Dockerfile", "FROM busybox:latest\nENV a=b\n")]);
    let dockerfile = ctx.join("Dockerfile");
    let tar = forge.dir.path().join("busybox.tar");
    forge.ok(&["tag", "busybox:latest", "other:1"]);
    for args in [
        vec!["images"],
        vec!["images", "--format", "json"],
        vec!["inspect", "busybox:latest"],
        vec!["debug", "parse", dockerfile.to_str().unwrap()],
        vec!["completion", "bash"],
        vec!["import", tar.to_str().unwrap(), "again:1"],
        vec!["rmi", "other:1"],
        vec!["build", "-q", ctx.to_str().unwrap()],
        vec!["store", "fsck"],
        vec!["store", "gc", "--format", "json"],
    ] {
        let r = run_into_closed_pipe(&forge, &args);
        assert_eq!(r.code, Some(0), "forge {args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "forge {args:?}: {}", r.stderr);
    }
}

#[test]
fn archives_go_into_devices_and_fifos_without_replacing_them() {
    use std::os::unix::fs::FileTypeExt;
    let forge = Forge::with_busybox();
    // A private twin of /dev/null (char 1:3), so that a failure cannot break the host's.
    let null = forge.dir.path().join("null");
    assert!(Command::new("mknod").arg(&null).args(["c", "1", "3"]).status().unwrap().success());
    let ctx = forge.context("ctx", &[("Dockerfile", "FROM busybox:latest\nENV a=b\n")]);
    let dest = format!("type=docker,dest={}", null.display());
    for args in [vec!["save", "-o", null.to_str().unwrap(), "busybox:latest"], vec!["build", "-q", "-o", &dest, ctx.to_str().unwrap()]] {
        forge.ok(&args);
        assert!(std::fs::metadata(&null).unwrap().file_type().is_char_device(), "forge {args:?} replaced the device");
    }
    let fifo = forge.dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    forge.ok(&["save", "-o", fifo.to_str().unwrap(), "busybox:latest"]);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    let archive = reader.join().unwrap();
    assert!(!archive.is_empty() && archive.len() % 512 == 0, "{} bytes through the FIFO", archive.len());
    // A regular file is still replaced whole.
    let file = forge.dir.path().join("out.tar");
    std::fs::write(&file, "old").unwrap();
    forge.ok(&["save", "-o", file.to_str().unwrap(), "busybox:latest"]);
    assert_eq!(std::fs::read(&file).unwrap(), archive);
}

/// `forge save`'s archive of busybox with every image name in it replaced by `name`.
fn archive_named(forge: &Forge, name: &str) -> std::path::PathBuf {
    let saved = forge.dir.path().join("saved.tar");
    forge.ok(&["save", "-o", saved.to_str().unwrap(), "busybox:latest"]);
    let dir = tempfile::tempdir_in(forge.dir.path()).unwrap();
    assert!(Command::new("tar").arg("-C").arg(dir.path()).arg("-xf").arg(&saved).status().unwrap().success());
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    manifest[0]["RepoTags"] = serde_json::json!([name]);
    std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    for m in index["manifests"].as_array_mut().unwrap() {
        m["annotations"]["org.opencontainers.image.ref.name"] = serde_json::json!(name);
    }
    std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
    let out = forge.dir.path().join(format!("named-{}.tar", name.len()));
    tar_of(dir.path(), &out);
    out
}

#[test]
fn bad_image_names_are_refused_everywhere() {
    let forge = Forge::with_busybox();
    let tar = forge.dir.path().join("busybox.tar");
    let ctx = forge.context("ctx", &[("Dockerfile", "FROM busybox:latest\nENV a=b\n")]);
    let fresh = Forge::empty();
    for bad in ["../../../etc:1", "a b:1", "UPPER/x:1"] {
        let archive = archive_named(&forge, bad);
        for r in [
            fresh.run(&["load", "-i", archive.to_str().unwrap()]),
            forge.run(&["tag", "busybox:latest", bad]),
            forge.run(&["import", tar.to_str().unwrap(), bad]),
            forge.run(&["build", "-t", bad, ctx.to_str().unwrap()]),
        ] {
            assert_eq!(r.code, Some(1), "{bad}: {}", r.stderr);
            assert!(r.stderr.contains("invalid image name") || r.stderr.contains("invalid reference"), "{bad}: {}", r.stderr);
        }
    }
    assert_eq!(fresh.ok(&["images", "--format", "json"]).stdout.trim(), "[]");
    let names: Vec<String> = serde_json::from_str::<serde_json::Value>(&forge.ok(&["images", "--format", "json"]).stdout).unwrap().as_array().unwrap().iter().map(|r| format!("{}:{}", r["repository"].as_str().unwrap(), r["tag"].as_str().unwrap())).collect();
    assert_eq!(names, ["busybox:latest"]);
}

#[test]
fn an_image_over_the_overlay_layer_limit_says_so() {
    use forge_layerstore::diff::{LayerOptions, LayerSource};
    use forge_layerstore::{ImageConfig, Layer, Store};
    let forge = Forge::empty();
    let store = Store::open(&forge.store()).unwrap();
    let tree = forge.dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("f"), "x").unwrap();
    let layer = store.write_layer(&LayerSource::Dirs { lower: None, upper: &tree }, &LayerOptions::default()).unwrap();
    for (name, count) in [("deep:500", forge_sandbox::MAX_LAYERS), ("deep:501", forge_sandbox::MAX_LAYERS + 1), ("deep:601", 601)] {
        let mut config = ImageConfig::scratch();
        config.rootfs.diff_ids = vec![layer.diff_id.clone(); count];
        let manifest = store.write_image(&config, &vec![Layer::from(&layer); count]).unwrap();
        store.tag(name, &manifest).unwrap();
    }
    let ctx = forge.context("ctx", &[("f", "y")]);
    std::fs::write(ctx.join("Dockerfile"), "FROM deep:500\nCOPY f /g\n").unwrap();
    forge.ok(&["build", ctx.to_str().unwrap()]);
    for (from, step) in [("deep:501", "COPY f /g"), ("deep:601", "COPY f /g"), ("deep:601", "RUN true")] {
        std::fs::write(ctx.join("Dockerfile"), format!("FROM {from}\n{step}\n")).unwrap();
        let r = forge.run(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
        assert_eq!(r.code, Some(1), "{from} {step}: {}", r.stderr);
        assert!(r.stderr.contains("the layer limit was reached") && r.stderr.contains("at most 500 layers"), "{from} {step}: {}", r.stderr);
    }
}
