//! A container's files through the `forge` binary: `cp` both ways (stopped and running, tar on
//! stdin/stdout, `-a`, `-L`), never through a container's symlink out of its root; `commit`
//! (run by forge and by podman), `export` and `diff`.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Background, Forge};

/// A stopped container `name` whose files hold hostile symlinks: `/x -> /../../../../etc`
/// (relative, climbing) and `/abs -> /etc` (absolute), a marker in its /etc and a directory
/// holding a block device (the host's first disk's numbers).
fn hostile(forge: &Forge, name: &str) {
    let script = "mkdir -p /d/sub && echo hi > /d/f && echo deep > /d/sub/g && ln -s /../../../../etc /x && ln -s /etc /abs && echo inside > /etc/marker && mknod /d/disk b 8 0";
    forge.ok(&["run", "--name", name, "busybox", "sh", "-c", script]);
}

/// The names in a tar, as GNU tar lists them.
fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut child = Command::new("tar").arg("-tf").arg("-").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_end_matches('/').to_string()).collect()
}

/// `forge ARGS` with raw standard output.
fn raw(forge: &Forge, args: &[&str]) -> Vec<u8> {
    let out = forge.cmd().args(args).output().unwrap();
    assert!(out.status.success(), "forge {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn cp_out_of_a_stopped_container_resolves_symlinks_inside_it() {
    let forge = Forge::with_busybox();
    hostile(&forge, "c1");
    let out = forge.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = |p: &str| out.join(p).to_str().unwrap().to_string();

    // A file, then a directory into a new name, then into an existing directory.
    forge.ok(&["cp", "c1:/d/f", &o("f")]);
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "hi\n");
    forge.ok(&["cp", "c1:/d", &o("dcopy")]);
    assert_eq!(std::fs::read_to_string(out.join("dcopy/sub/g")).unwrap(), "deep\n");
    // A container's device node is not made on the host.
    assert!(std::fs::symlink_metadata(out.join("dcopy/disk")).is_err(), "a device node was copied to the host");
    forge.ok(&["cp", "c1:/d", &o("dcopy")]);
    assert_eq!(std::fs::read_to_string(out.join("dcopy/d/f")).unwrap(), "hi\n");
    // `/.`: the directory's contents.
    std::fs::create_dir(out.join("contents")).unwrap();
    forge.ok(&["cp", "c1:/d/.", &o("contents")]);
    assert_eq!(std::fs::read_to_string(out.join("contents/f")).unwrap(), "hi\n");

    // Through the hostile links: the container's /etc, never the host's.
    let container_passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    for link in ["x", "abs"] {
        forge.ok(&["cp", &format!("c1:/{link}/passwd"), &o(&format!("passwd-{link}"))]);
        assert_eq!(std::fs::read_to_string(out.join(format!("passwd-{link}"))).unwrap(), container_passwd);
        forge.ok(&["cp", &format!("c1:/{link}/marker"), &o(&format!("marker-{link}"))]);
        assert_eq!(std::fs::read_to_string(out.join(format!("marker-{link}"))).unwrap(), "inside\n");
    }
    forge.ok(&["cp", "c1:/../../../../x/../../etc/passwd", &o("passwd-dots")]);
    assert_eq!(std::fs::read_to_string(out.join("passwd-dots")).unwrap(), container_passwd);

    // Without -L a link is copied as the link; with -L it is followed inside the container.
    forge.ok(&["cp", "c1:/x", &o("link")]);
    assert_eq!(std::fs::read_link(out.join("link")).unwrap(), Path::new("/../../../../etc"));
    forge.ok(&["cp", "-L", "c1:/x", &o("followed")]);
    assert_eq!(std::fs::read_to_string(out.join("followed/marker")).unwrap(), "inside\n");
    assert_eq!(std::fs::read_to_string(out.join("followed/passwd")).unwrap(), container_passwd);

    // A tar on standard output, named from the source.
    assert_eq!(tar_names(&raw(&forge, &["cp", "c1:/d", "-"])), ["d", "d/disk", "d/f", "d/sub", "d/sub/g"]);

    // What is missing is an error, with the path.
    let r = forge.run(&["cp", "c1:/no/such", &o("none")]);
    assert!(!r.ok && r.stderr.contains("/no/such"), "{}", r.stderr);
    let r = forge.run(&["cp", "c1:/d", &o("f")]);
    assert!(!r.ok && r.stderr.contains("cannot copy a directory to a file"), "{}", r.stderr);
    let r = forge.run(&["cp", "nosuch:/d", &o("z")]);
    assert!(!r.ok && r.stderr.contains("no such container"), "{}", r.stderr);
    forge.ok(&["rm", "c1"]);
}

#[test]
fn cp_into_a_stopped_container_stays_inside_it() {
    let forge = Forge::with_busybox();
    hostile(&forge, "c2");
    let src = forge.dir.path().join("src");
    std::fs::create_dir_all(src.join("tree/inner")).unwrap();
    std::fs::write(src.join("evil"), "payload\n").unwrap();
    std::fs::write(src.join("tree/inner/h"), "tree\n").unwrap();
    std::os::unix::fs::chown(src.join("evil"), Some(1234), Some(4321)).unwrap();
    let unique = format!("forge-cp-test-{}", std::process::id());
    let s = |p: &str| src.join(p).to_str().unwrap().to_string();

    // Through both hostile links, to a new name: lands in the container's /etc.
    forge.ok(&["cp", &s("evil"), &format!("c2:/x/{unique}")]);
    forge.ok(&["cp", &s("evil"), &format!("c2:/abs/{unique}-abs")]);
    assert!(!Path::new("/etc").join(&unique).exists(), "cp wrote the host's /etc");
    assert!(!Path::new("/etc").join(format!("{unique}-abs")).exists(), "cp wrote the host's /etc");
    // Into an existing directory (the link resolved inside), and a tree.
    forge.ok(&["cp", &s("evil"), "c2:/x"]);
    forge.ok(&["cp", &s("tree"), "c2:/d"]);

    // Back out, with -a through a tar to see the owners: root's without -a, kept with it.
    let out = forge.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    forge.ok(&["cp", &format!("c2:/etc/{unique}"), out.join("back").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out.join("back")).unwrap(), "payload\n");
    forge.ok(&["cp", "c2:/etc/evil", out.join("evil").to_str().unwrap()]);
    forge.ok(&["cp", "c2:/d/tree/inner/h", out.join("h").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out.join("h")).unwrap(), "tree\n");
    let owner = |container_path: &str| {
        let tar = raw(&forge, &["cp", &format!("c2:{container_path}"), "-"]);
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("tar").args(["-xf", "-", "--same-owner", "-C"]).arg(dir.path()).stdin(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(&tar).unwrap();
        assert!(child.wait().unwrap().success());
        let m = std::fs::symlink_metadata(dir.path().join(Path::new(container_path).file_name().unwrap())).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner(&format!("/etc/{unique}")), (0, 0));
    forge.ok(&["cp", "-a", &s("evil"), "c2:/kept"]);
    assert_eq!(owner("/kept"), (1234, 4321));

    // A tar on standard input goes into a directory; one naming `..` is refused whole.
    let tar_of = |dir: &Path, names: &[&str]| {
        let out = Command::new("tar").arg("-cf").arg("-").arg("-C").arg(dir).args(names).output().unwrap();
        assert!(out.status.success());
        out.stdout
    };
    let feed = |args: &[&str], bytes: &[u8]| {
        let mut child = forge.cmd().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        common::Ran::from(child.wait_with_output().unwrap())
    };
    let r = feed(&["cp", "-", "c2:/x"], &tar_of(&src, &["tree"]));
    assert!(r.ok, "{}", r.stderr);
    assert!(!Path::new("/etc/tree").exists());
    forge.ok(&["cp", "c2:/etc/tree/inner/h", out.join("h2").to_str().unwrap()]);
    let escape = Command::new("tar").args(["-cf", "-", "-P", "-C"]).arg(&src).args(["--transform", &format!("s,^evil,../../../../tmp/{unique},"), "evil"]).output().unwrap();
    let r = feed(&["cp", "-", "c2:/d"], &escape.stdout);
    assert!(!r.ok && r.stderr.contains("refusing"), "{}", r.stderr);
    assert!(!Path::new("/tmp").join(&unique).exists());
    let r = feed(&["cp", "-", "c2:/d/f"], &tar_of(&src, &["evil"]));
    assert!(!r.ok && r.stderr.contains("must be a directory"), "{}", r.stderr);

    // What the container sees: the files, in its /etc.
    let r = forge.ok(&["diff", "c2"]);
    for line in [format!("A /etc/{unique}"), format!("A /etc/{unique}-abs"), "A /etc/evil".into(), "A /d/tree/inner/h".into(), "A /kept".into()] {
        assert!(r.stdout.lines().any(|l| l == line), "{line} missing from:\n{}", r.stdout);
    }
    forge.ok(&["rm", "c2"]);
}

#[test]
fn cp_with_a_running_container() {
    let forge = Forge::with_busybox();
    let bg = Background::start(&forge, "live", "ln -s /../../../etc /x; echo inside > /etc/marker; echo ready; exec sleep 60");
    let dir = forge.dir.path().join("live");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("in"), "to the live one\n").unwrap();
    let unique = format!("forge-cp-live-{}", std::process::id());
    forge.ok(&["cp", dir.join("in").to_str().unwrap(), &format!("live:/x/{unique}")]);
    assert!(!Path::new("/etc").join(&unique).exists(), "cp wrote the host's /etc");
    forge.ok(&["cp", &format!("live:/etc/{unique}"), dir.join("back").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(dir.join("back")).unwrap(), "to the live one\n");
    forge.ok(&["cp", "live:/x/marker", dir.join("marker").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(dir.join("marker")).unwrap(), "inside\n");
    drop(bg);
}

#[test]
fn commit_export_and_diff() {
    let forge = Forge::with_busybox();
    forge.ok(&["run", "--name", "work", "-e", "FROM_RUN=1", "busybox", "sh", "-c", "echo committed > /hello && rm /bin/cat && mkdir /new && touch /new/file"]);

    let r = forge.ok(&["diff", "work"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    for line in ["A /hello", "C /bin", "D /bin/cat", "A /new", "A /new/file"] {
        assert!(lines.contains(&line), "{line} missing from:\n{}", r.stdout);
    }
    let mut sorted = lines.clone();
    sorted.sort_by_key(|l| &l[2..]);
    assert_eq!(lines, sorted);

    // export: the flattened files, the deleted one gone.
    let tar = forge.dir.path().join("work.tar");
    forge.ok(&["export", "-o", tar.to_str().unwrap(), "work"]);
    let names = tar_names(&std::fs::read(&tar).unwrap());
    for n in ["hello", "bin/busybox", "new/file", "etc/passwd"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from the export");
    }
    assert!(!names.iter().any(|x| x == "bin/cat"), "a deleted file was exported");
    assert_eq!(tar_names(&raw(&forge, &["export", "work"])), names);

    let r = forge.ok(&["commit", "-m", "a message", "-a", "Someone <s@example.com>", "-c", "CMD [\"sh\", \"-c\", \"cat /hello 2>&1 || head -1 /hello; echo $FROM_RUN $ADDED\"]", "-c", "ENV ADDED=yes", "work", "committed:1"]);
    assert!(r.stdout.trim().starts_with("sha256:"), "{}", r.stdout);
    let config = forge.inspect("committed:1");
    let text = config.to_string();
    assert!(text.contains("a message") && text.contains("Someone <s@example.com>"), "{text}");

    // forge runs it: the file is there, cat is gone, the env kept and added.
    let r = forge.run(&["run", "--rm", "committed:1"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("committed\n1 yes"), "{}", r.stdout);
    // And podman, from the store's OCI layout.
    let out = forge.podman_run("committed:1", &["head", "-1", "/hello"]);
    assert_eq!(out, "committed\n");
    let out = forge.podman_run("committed:1", &["sh", "-c", "test -e /bin/cat && echo present || echo gone"]);
    assert_eq!(out, "gone\n");

    let r = forge.run(&["commit", "-c", "RUN true", "work", "bad:1"]);
    assert!(!r.ok && r.stderr.contains("RUN cannot be changed by commit"), "{}", r.stderr);
    forge.ok(&["rm", "work"]);
}

#[test]
fn commit_a_running_container_pauses_it_meanwhile() {
    let forge = Forge::with_busybox();
    let bg = Background::start(&forge, "busy", "echo live > /state; echo ready; exec sleep 60");
    forge.ok(&["commit", "busy", "snap:1"]);
    let r = forge.ok(&["run", "--rm", "snap:1", "cat", "/state"]);
    assert_eq!(r.stdout, "live\n");
    // Thawed again: still running, not paused.
    let ps = forge.ok(&["ps", "--format", "json"]).stdout;
    let busy: serde_json::Value = ps.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|v| v.to_string().contains("busy")).expect("busy is listed");
    let text = busy.to_string();
    assert!(text.contains("running") || text.contains("Up"), "{text}");
    assert!(!text.contains("aused"), "{text}");
    drop(bg);
}
