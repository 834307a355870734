//! 200 container cycles through the `forge` binary (100 `run --rm IMG true`, 100 `create` then
//! `rm`) leave nothing behind: no mount, cgroup, process, snapshot, lock or state file.
//! Bounded: a cycle takes well under a second; the whole test stops at 200 cycles.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::Forge;

/// Every file and directory under the store's `forge/` (its records, snapshots and locks),
/// but not the image's blobs.
fn store_files(store: &Path) -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            // The per-process scratch directories: gc's to remove, checked empty below.
            if p.parent().is_some_and(|d| d.ends_with("forge/tmp")) {
                continue;
            }
            out.insert(p.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) && !p.ends_with("snapshots/snapshots") {
                walk(&p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&store.join("forge"), &mut out);
    out.extend(std::fs::read_dir(store.join("forge/snapshots/snapshots")).into_iter().flatten().flatten().map(|e| e.path()));
    out
}

/// Mount points under `dir`, as the host sees them.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.split(' ').nth(4).is_some_and(|m| Path::new(m).starts_with(&dir))).map(str::to_string).collect()
}

/// Processes running this test's forge binary.
fn forge_processes() -> Vec<u32> {
    let ours = std::fs::canonicalize(env!("CARGO_BIN_EXE_forge")).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == ours))
        .collect()
}

/// The forge cgroup directories (`<hierarchy>/<this test's cgroup>/forge/<pid>-...`) whose
/// forge process is one of `pids`.
fn cgroups_of(pids: &BTreeSet<u32>) -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut found = Vec::new();
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for line in own.lines() {
            let path = line.splitn(3, ':').nth(2).unwrap_or("/").trim_start_matches('/');
            for e in std::fs::read_dir(hierarchy.path().join(path).join("forge")).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.split('-').next().and_then(|p| p.parse().ok()).is_some_and(|p: u32| pids.contains(&p)) {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

#[test]
fn two_hundred_run_and_rm_cycles_leave_nothing_behind() {
    let forge = Forge::with_busybox();
    // One cycle first: the image's layer is unpacked once and stays (a committed snapshot).
    forge.ok(&["run", "--rm", "busybox", "true"]);
    let before = store_files(&forge.store());
    // Every forge process of the cycles, to find the cgroups they made.
    let mut pids = BTreeSet::new();
    let mut forge_ok = |args: &[&str]| {
        let child = forge.cmd().args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        pids.insert(child.id());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "forge {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    for i in 0..200 {
        if i % 2 == 0 {
            forge_ok(&["run", "--rm", "busybox", "true"]);
        } else {
            let id = forge_ok(&["create", "busybox", "true"]);
            forge_ok(&["rm", id.trim()]);
        }
    }
    let after = store_files(&forge.store());
    let added: Vec<_> = after.difference(&before).collect();
    assert!(added.is_empty(), "left in the store: {added:#?}");
    assert_eq!(forge.ok(&["ps", "-a", "-q"]).stdout, "");
    assert!(mounts_under(&forge.store()).is_empty(), "mounts left: {:#?}", mounts_under(&forge.store()));
    assert_eq!(forge_processes(), Vec::<u32>::new(), "forge processes left");
    assert_eq!(cgroups_of(&pids), Vec::<PathBuf>::new(), "cgroups left");
    let tmp = forge.store().join("forge/tmp");
    let scratch: Vec<_> = std::fs::read_dir(&tmp).into_iter().flatten().flatten().flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten().map(|e| e.path())).collect();
    assert!(scratch.is_empty(), "scratch left: {scratch:#?}");
}
