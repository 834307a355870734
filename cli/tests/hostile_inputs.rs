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

#[test]
fn sigterm_stops_a_dockerfile_read_that_never_ends() {
    let forge = Forge::empty();
    let ctx = forge.context("ctx", &[("empty", "")]);
    for signal in ["-TERM", "-INT"] {
        let mut child = forge.cmd().args(["build", "-f", "-", ctx.to_str().unwrap()]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // Some bytes and then nothing, with the pipe left open.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"FROM scratch\n").unwrap();
        // The signal handler's thread exists once forge listens for signals.
        let ready = Instant::now() + Duration::from_secs(20);
        while !has_thread(child.id(), "ctrl-c") && Instant::now() < ready {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
        let r = wait_bounded(child);
        drop(stdin);
        assert_eq!(r.code, Some(1), "{signal}: forge did not exit by itself: {}", r.stderr);
        assert!(r.stderr.contains("cancelled"), "{}", r.stderr);
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
