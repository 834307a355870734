//! The store under attack and under stress, through the binary: a local user without
//! privileges reaches nothing in it, `store gc` running in a loop beside builds and a pull
//! breaks none of them, `kill -9` at any point leaves nothing that gc does not take back, and
//! `fsck --repair` drops tags of images that cannot be read.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::Forge;

/// Opens a test's scratch directory to everyone (tempdirs are 0700), so only the store's own
/// permissions stand between a local user and the store.
fn open_to_all(forge: &Forge) {
    std::fs::set_permissions(forge.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs `args` as user `nobody` (no groups). Through a shell: setpriv itself keeps root's
/// capabilities until its own execve, so the path lookup of its command would still be root's.
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv").args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", "sh", "-c", r#"exec "$@""#, "sh"]).args(args).output().unwrap()
}

/// Every path under `dir` (not following symlinks), with its metadata.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let Ok(meta) = e.path().symlink_metadata() else { continue };
        let is_dir = meta.is_dir();
        out.push((e.path(), meta));
        if is_dir {
            walk(&e.path(), out);
        }
    }
}

fn setuid_files(store: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    walk(store, &mut all);
    all.into_iter().filter(|(_, m)| m.is_file() && m.permissions().mode() & 0o4000 != 0).map(|(p, _)| p).collect()
}

#[test]
fn a_local_user_reaches_nothing_in_the_store() {
    let forge = Forge::with_busybox();
    open_to_all(&forge);
    let ctx = forge.context(
        "suid",
        &[(
            "Dockerfile",
            "FROM busybox:latest\n\
             RUN cp /bin/busybox /suid && chmod 4755 /suid\n\
             RUN --mount=type=cache,target=/cache cp /bin/busybox /cache/suid && chmod 4755 /cache/suid\n",
        )],
    );
    let r = forge.build(&ctx, "suid:1", &[]);
    assert!(r.ok, "{}", r.stderr);

    // The same image pulled and unpacked into another store.
    let registry = forge_testkit::Registry::start();
    let dest = format!("{}/hostile/suid:1", registry.addr);
    forge.ok(&["push", "-q", "suid:1", &dest]);
    let pulled = Forge::empty();
    open_to_all(&pulled);
    pulled.ok(&["pull", "-q", "--unpack", &dest]);

    let built = setuid_files(&forge.store());
    let unpacked = setuid_files(&pulled.store());
    let under = |files: &[PathBuf], part: &str| files.iter().any(|p| p.to_string_lossy().contains(part));
    assert!(under(&built, "/forge/snapshots/"), "no setuid binary in a snapshot: {built:?}");
    assert!(under(&built, "/forge/cache-mounts/"), "no setuid binary in a cache mount: {built:?}");
    assert!(under(&unpacked, "/forge/snapshots/"), "no setuid binary in the unpacked pull: {unpacked:?}");

    for file in built.iter().chain(&unpacked) {
        let f = file.to_str().unwrap();
        for args in [vec![f, "id", "-u"], vec!["cat", f]] {
            let o = as_nobody(&args);
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success() && stderr.contains("Permission denied"), "nobody ran {args:?}: {}{stderr}", String::from_utf8_lossy(&o.stdout));
        }
    }

    // Nothing in either store can be listed, read or entered by nobody.
    for store in [forge.store(), pulled.store()] {
        let mut all = Vec::new();
        walk(&store, &mut all);
        let mut paths: Vec<String> = vec![store.display().to_string()];
        paths.extend(all.iter().filter(|(p, m)| !m.is_symlink() && p.components().count() <= store.components().count() + 4).map(|(p, _)| p.display().to_string()));
        let script = r#"for p; do if [ -d "$p" ]; then ls "$p" >/dev/null 2>&1 && echo "listed $p"; cd "$p" 2>/dev/null && echo "entered $p"; elif head -c1 "$p" >/dev/null 2>&1; then echo "read $p"; fi; done; true"#;
        let mut args = vec!["sh", "-c", script, "sh"];
        args.extend(paths.iter().map(String::as_str));
        let o = as_nobody(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "", "nobody reached into {}", store.display());
    }

    // A store left open by an older forge is closed again when it is opened.
    std::fs::set_permissions(forge.store(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(forge.store().join("forge"), std::fs::Permissions::from_mode(0o755)).unwrap();
    forge.ok(&["images"]);
    for dir in [forge.store(), forge.store().join("forge")] {
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700, "{}", dir.display());
    }
    // Root tools still read the OCI layout.
    let o = Command::new("skopeo").arg("inspect").arg(format!("oci:{}:suid:1", forge.store().display())).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A build context with `steps` RUN and COPY steps whose layers are this build's own.
fn busy_context(forge: &Forge, name: &str, steps: usize) -> PathBuf {
    let mut dockerfile = String::from("FROM busybox:latest\n");
    let mut files = Vec::new();
    for i in 0..steps {
        files.push((format!("f{i}"), format!("{name} file {i}\n")));
        dockerfile.push_str(&format!("COPY f{i} /c/f{i}\nRUN echo {name}-{i} > /s{i} && dd if=/dev/urandom of=/blob{i} bs=64k count=4 2>/dev/null\n"));
    }
    dockerfile.push_str("RUN cat /c/* /s[0-9]* > /all\n");
    let mut entries: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    entries.push(("Dockerfile", &dockerfile));
    forge.context(name, &entries)
}

#[test]
fn gc_in_a_tight_loop_breaks_no_build_and_no_pull() {
    let forge = Forge::with_busybox();
    // An image to pull, pushed from another store so that the pull brings new blobs.
    let source = Forge::with_busybox_of(&forge);
    let big = source.context("big", &[("Dockerfile", "FROM busybox:latest\nRUN dd if=/dev/urandom of=/big bs=1M count=16 2>/dev/null\nRUN echo two > /two\n")]);
    assert!(source.build(&big, "big:1", &[]).ok);
    let registry = forge_testkit::Registry::start();
    let remote = format!("{}/gc/big:1", registry.addr);
    source.ok(&["push", "-q", "big:1", &remote]);

    let contexts: Vec<PathBuf> = (0..4).map(|i| busy_context(&forge, &format!("busy{i}"), 4)).collect();
    let stop = AtomicBool::new(false);
    let (forge_ref, stop_ref, remote_ref) = (&forge, &stop, &remote);
    let mut gcs = 0;
    let results = std::thread::scope(|s| {
        let collector = s.spawn(move || {
            let mut runs = 0;
            let mut failures = Vec::new();
            while !stop_ref.load(Ordering::SeqCst) {
                let r = forge_ref.run(&["store", "gc"]);
                if !r.ok {
                    failures.push(r.stderr);
                }
                runs += 1;
            }
            (runs, failures)
        });
        let builds: Vec<_> = contexts.iter().enumerate().map(|(i, ctx)| s.spawn(move || (format!("busy:{i}"), forge_ref.build(ctx, &format!("busy:{i}"), &[])))).collect();
        let pull = s.spawn(move || ("pull".to_string(), forge_ref.run(&["pull", "-q", "--unpack", remote_ref])));
        let results: Vec<_> = builds.into_iter().chain([pull]).map(|h| h.join().unwrap()).collect();
        stop.store(true, Ordering::SeqCst);
        let (runs, failures) = collector.join().unwrap();
        assert!(failures.is_empty(), "gc failed: {failures:?}");
        gcs = runs;
        results
    });
    for (what, r) in &results {
        assert!(r.ok, "{what} failed beside {gcs} gc runs:\n{}", r.stderr);
    }
    forge.ok(&["store", "gc"]);
    forge.ok(&["store", "fsck"]);
    for i in 0..4 {
        let rootfs = forge.rootfs(&format!("busy:{i}"));
        assert!(std::fs::read_to_string(rootfs.join("all")).unwrap().contains(&format!("busy{i}-3")));
    }
    // gc still collects what nothing holds once the operations are over.
    forge.ok(&["rmi", "busy:0"]);
    let gc: serde_json::Value = serde_json::from_str(&forge.ok(&["store", "gc", "--format", "json"]).stdout).unwrap();
    assert!(gc["blobs_removed"].as_u64().unwrap() > 0, "{gc}");
    assert!(std::fs::read_dir(forge.store().join("forge/leases")).unwrap().next().is_none(), "leases left behind");
    forge.ok(&["store", "fsck"]);
}

/// Kills what the killed builds left running (processes with the marker in their environment)
/// and removes their cgroups, whether the test passes or fails.
struct KillCleanup {
    marker: String,
    killed: Vec<u32>,
}

impl KillCleanup {
    fn marked(&self) -> Vec<i32> {
        let needle = format!("FORGE_KILL_MARKER={}", self.marker);
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes())))
            .collect()
    }
}

impl Drop for KillCleanup {
    fn drop(&mut self) {
        for pid in self.marked() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        // A cgroup can be removed once its killed processes have exited.
        for _ in 0..50 {
            let left: Vec<PathBuf> = self.killed.iter().flat_map(|&pid| cgroups_of(pid)).filter(|d| std::fs::remove_dir(d).is_err()).collect();
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The cgroup directories forge made for the RUN steps of `pid`, wherever the hierarchy is.
fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut found = Vec::new();
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for line in own.lines() {
            let path = line.splitn(3, ':').nth(2).unwrap_or("/").trim_start_matches('/');
            let forge_dir = hierarchy.path().join(path).join("forge");
            for e in std::fs::read_dir(&forge_dir).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&format!("{pid}-")) {
                    found.push(e.path());
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// What gc must have taken back: (what, path) pairs still in the store.
fn leftovers(store: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let forge = store.join("forge");
    for e in std::fs::read_dir(forge.join("ingest")).into_iter().flatten().flatten() {
        out.push(format!("ingest {}", e.path().display()));
    }
    for e in std::fs::read_dir(forge.join("snapshots/snapshots")).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("new-") || name.starts_with("rm-") {
            out.push(format!("half-made snapshot {}", e.path().display()));
        }
    }
    for e in std::fs::read_dir(forge.join("leases")).into_iter().flatten().flatten() {
        out.push(format!("lease {}", e.path().display()));
    }
    for e in std::fs::read_dir(forge.join("tmp")).into_iter().flatten().flatten() {
        out.push(format!("scratch {}", e.path().display()));
    }
    let canonical = std::fs::canonicalize(store).unwrap();
    for line in std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
        if line.split(' ').nth(4).is_some_and(|m| m.starts_with(canonical.to_str().unwrap())) {
            out.push(format!("mount {line}"));
        }
    }
    out
}

/// Starts `forge args`, kills it with SIGKILL after `delay` (or lets it finish), returns its pid.
fn kill_after(forge: &Forge, args: &[&str], delay: Duration) -> u32 {
    let mut child = forge.cmd().args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let pid = child.id();
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
    pid
}

/// 50 `kill -9` points (20 builds, 15 pulls, 15 pushes) at delays spread over each operation,
/// then gc: nothing half-made is left in the stores, and no RUN process or cgroup of a killed
/// build either.
#[test]
fn kill_9_during_build_pull_and_push_leaves_nothing_behind_after_gc() {
    let forge = Forge::with_busybox();
    let marker = format!("{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let mut cleanup = KillCleanup { marker: marker.clone(), killed: Vec::new() };
    let ctx = forge.context(
        "killed",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox:latest\nENV FORGE_KILL_MARKER={marker}\nARG N\nCOPY . /ctx\n\
                 RUN echo $N > /n && dd if=/dev/urandom of=/a bs=1M count=12 2>/dev/null\n\
                 RUN dd if=/dev/urandom of=/b bs=1M count=4 2>/dev/null && sleep 2\nCOPY . /ctx2\nRUN sleep 30\n"
            ),
        )],
    );
    // A source image for the pulls and pushes: 24 MiB of layers.
    let big = forge.context("big", &[("Dockerfile", "FROM busybox:latest\nRUN dd if=/dev/urandom of=/big bs=1M count=24 2>/dev/null\n")]);
    assert!(forge.build(&big, "big:1", &[]).ok);
    let registry = forge_testkit::Registry::start();
    let remote = format!("{}/kill/big:1", registry.addr);
    forge.ok(&["push", "-q", "big:1", &remote]);
    let puller = Forge::empty();

    let delays = |n: u64, span: u64| (0..n).map(move |i| Duration::from_millis(20 + (i * span) / n + (i * 37) % 53));
    for (i, delay) in delays(20, 3000).enumerate() {
        cleanup.killed.push(kill_after(&forge, &["build", "-q", "--build-arg", &format!("N={i}"), "-t", "killed:1", ctx.to_str().unwrap()], delay));
    }
    for delay in delays(15, 800) {
        kill_after(&puller, &["pull", "-q", "--unpack", &remote], delay);
    }
    for (i, delay) in delays(15, 800).enumerate() {
        kill_after(&forge, &["push", "-q", "big:1", &format!("{}/kill/pushed{i}:1", registry.addr)], delay);
    }

    // The kills left something behind (or this test proves nothing).
    assert!(!leftovers(&forge.store()).is_empty() && !leftovers(&puller.store()).is_empty());
    for f in [&forge, &puller] {
        let gc = f.ok(&["store", "gc", "--format", "json"]).stdout;
        eprintln!("gc after the kills: {gc}");
        assert_eq!(leftovers(&f.store()), Vec::<String>::new(), "left after gc: {gc}");
        f.ok(&["store", "fsck"]);
    }
    // The store still works: a full build and pull.
    assert!(forge.build(&forge.context("after", &[("Dockerfile", "FROM busybox:latest\nRUN echo ok > /ok\n")]), "after:1", &[]).ok);
    puller.ok(&["pull", "-q", "--unpack", &remote]);
    puller.ok(&["store", "fsck"]);

    let cgroups: Vec<PathBuf> = cleanup.killed.iter().flat_map(|&pid| cgroups_of(pid)).collect();
    assert!(cgroups.is_empty(), "cgroups of killed builds are left: {cgroups:?}");
    let survivors = cleanup.marked();
    assert!(survivors.is_empty(), "RUN processes of killed builds still run: {survivors:?}");
}

#[test]
fn fsck_repair_drops_tags_of_images_that_cannot_be_read() {
    use forge_layerstore::Store;
    let forge = Forge::with_busybox();
    {
        let store = Store::open(&forge.store()).unwrap();
        let base = store.image("busybox:latest").unwrap();
        let layers = base.layers().unwrap();
        // A config that is not JSON, under a well-formed manifest.
        let mut w = store.content().writer("not-json").unwrap();
        std::io::Write::write_all(&mut w, b"{ not json").unwrap();
        let bad = w.commit(None, None).unwrap();
        let mut manifest = serde_json::to_value(&base.manifest).unwrap();
        manifest["config"]["digest"] = bad.to_string().into();
        manifest["config"]["size"] = 10.into();
        let (digest, _) = store.put_json(&manifest, "manifest").unwrap();
        let d = store.resolve(digest.as_str()).unwrap();
        store.tag("corrupt:1", &d).unwrap();
        // A config larger than the store reads (16 MiB).
        let mut huge = base.config.clone();
        huge.config.labels = Some([("pad".to_string(), "x".repeat(17 << 20))].into());
        let manifest = store.write_image(&huge, &layers).unwrap();
        store.tag("huge:1", &manifest).unwrap();
    }
    let r = forge.run(&["store", "fsck"]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("broken image huge:1") && r.stdout.contains("broken image corrupt:1"), "{}", r.stdout);
    let r = forge.run(&["store", "fsck", "--repair"]);
    assert!(r.stdout.contains("broken image huge:1") && r.stdout.contains("(tag removed)"), "{}", r.stdout);
    forge.ok(&["store", "fsck"]);
    let images = forge.ok(&["images"]).stdout;
    assert!(images.contains("busybox") && !images.contains("huge") && !images.contains("corrupt"), "{images}");
    // gc then takes what only those tags held.
    let gc: serde_json::Value = serde_json::from_str(&forge.ok(&["store", "gc", "--format", "json"]).stdout).unwrap();
    assert!(gc["blobs_removed"].as_u64().unwrap() >= 3, "{gc}");
    forge.ok(&["store", "fsck"]);
}

/// Detaches the mounts of a test, pass or fail.
struct Unmount(Vec<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for m in &self.0 {
            let _ = Command::new("umount").arg("-l").arg(m).stderr(std::process::Stdio::null()).status();
        }
    }
}

#[test]
fn gc_detaches_the_mounts_of_a_dead_forge_and_never_deletes_through_them() {
    let forge = Forge::with_busybox();
    // What a forge killed in the middle of a COPY leaves: its scratch directory (whose lock
    // nobody holds any more) with a snapshot's tree still bind-mounted in it.
    let tmp = forge.store().join("forge/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("4242-1-1.lock"), "").unwrap();
    let mnt = tmp.join("4242-1-1/mnt-x");
    std::fs::create_dir_all(&mnt).unwrap();
    let tree = forge.dir.path().join("precious");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/file"), "keep me").unwrap();
    let _guard = Unmount(vec![mnt.clone()]);
    assert!(Command::new("mount").arg("--bind").arg(&tree).arg(&mnt).status().unwrap().success());
    // A live forge's scratch directory beside it stays: a build waiting for its context on stdin.
    let _live = KillOnDrop(forge.cmd().args(["build", "-q", "-"]).stdin(std::process::Stdio::piped()).spawn().unwrap());
    let scratch_dirs = || std::fs::read_dir(&tmp).unwrap().flatten().filter(|e| !e.file_name().to_string_lossy().starts_with("4242-")).count();
    for _ in 0..200 {
        if scratch_dirs() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(scratch_dirs(), 2, "the waiting build made its scratch directory and lock");

    let gc: serde_json::Value = serde_json::from_str(&forge.ok(&["store", "gc", "--format", "json"]).stdout).unwrap();
    assert_eq!(gc["mounts_detached"], 1, "{gc}");
    assert_eq!(std::fs::read_to_string(tree.join("sub/file")).unwrap(), "keep me");
    let canonical = std::fs::canonicalize(forge.store()).unwrap();
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(canonical.to_str().unwrap()));
    assert!(!tmp.join("4242-1-1").exists() && !tmp.join("4242-1-1.lock").exists());
    assert_eq!(scratch_dirs(), 2, "the live build's scratch directory and its lock stay");
}

/// Kills a child, pass or fail.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
