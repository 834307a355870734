//! cgroup limits and accounting, cancellation, and cleanup: no process, cgroup or mount is left
//! behind whatever way a step ends.

mod common;

use std::time::{Duration, Instant};

use common::{host_mounts_under, processes_with, run_collect, run_with, Step};
use forge_sandbox::{Cancel, Error, ExitStatus};

/// Every forge cgroup directory on the host (v1: under each controller; v2: under /sys/fs/cgroup/forge).
fn forge_cgroups() -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir("/sys/fs/cgroup") {
        if e.contains("/forge/") && !e.ends_with("/forge") {
            out.push(e);
        }
    }
    out
}

fn walkdir(root: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(root)];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path().to_string_lossy().into_owned());
                    stack.push(e.path());
                }
            }
        }
    }
    out
}

fn mine(paths: Vec<String>) -> Vec<String> {
    let me = format!("/forge/{}-", std::process::id());
    paths.into_iter().filter(|p| p.contains(&me)).collect()
}

/// No process carrying `marker`, no cgroup of this test process, no mount under the step's dir.
fn assert_nothing_left(step: &Step, marker: &str) {
    assert_eq!(processes_with(marker), Vec::<String>::new());
    assert_eq!(mine(forge_cgroups()), Vec::<String>::new());
    assert_eq!(host_mounts_under(step.dir.path()), Vec::<String>::new());
}

#[test]
fn memory_limit_is_an_oom_kill_reported_as_such() {
    let step = Step::new();
    let _serial = common::serial();
    let mut spec = step.spec("head -c 200m /dev/zero | tail > /dev/null");
    spec.limits.memory = Some(32 << 20);
    let (outcome, out) = run_collect(&spec);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.status, ExitStatus::OomKilled { limit: Some(32 << 20) }, "{out}");
    assert!(outcome.status.to_string().contains("out of memory (limit 32 MiB)"));
}

#[test]
fn pids_limit_stops_forks() {
    let step = Step::new();
    let _serial = common::serial();
    let mut spec = step.spec("for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 5 & done 2>&1; echo done");
    spec.limits.pids = Some(10);
    let (outcome, out) = run_collect(&spec);
    // busybox sh gives up on the script at the first failed fork.
    assert!(!outcome.unwrap().status.success(), "{out}");
    assert!(out.contains("can't fork"), "{out}");
}

#[test]
fn accounting_reports_cpu_time_and_peak_memory() {
    let step = Step::new();
    let _serial = common::serial();
    let (outcome, out) = run_collect(&step.spec("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; head -c 20m /dev/zero > /dev/shm/x"));
    let outcome = outcome.unwrap();
    assert!(outcome.status.success(), "{out}");
    assert!(outcome.cpu_time > Duration::from_millis(50), "{outcome:?}");
    assert!(outcome.peak_memory.unwrap_or(0) > 10 << 20, "{outcome:?}");
}

#[test]
fn background_processes_do_not_hang_the_step_and_nothing_is_left_behind() {
    let step = Step::new();
    let marker = "forge-test-marker-bg";
    let start = Instant::now();
    let _serial = common::serial();
    let (outcome, out) = run_collect(&step.spec(&format!("sh -c 'sleep 1000; : {marker}' & echo started")));
    assert!(outcome.unwrap().status.success(), "{out}");
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_nothing_left(&step, marker);
}

#[test]
fn cancel_kills_everything_quickly() {
    let step = Step::new();
    let marker = "forge-test-marker-cancel";
    let cancel = Cancel::new();
    let c2 = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.cancel();
    });
    let start = Instant::now();
    let _serial = common::serial();
    let script = format!("sh -c 'sleep 1000; : {marker}' & sh -c 'sleep 1000; : {marker}'");
    let (outcome, _) = run_with(&step.spec(&script), &cancel);
    t.join().unwrap();
    assert!(matches!(outcome, Err(Error::Cancelled)), "{outcome:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_nothing_left(&step, marker);
}

#[test]
fn failures_clean_up_too() {
    let step = Step::new();
    let _serial = common::serial();
    let (outcome, _) = run_collect(&step.spec("exit 7"));
    assert_eq!(outcome.unwrap().status, ExitStatus::Exited(7));
    let mut spec = step.spec("true");
    spec.argv = vec!["no-such-program".into()];
    let err = run_collect(&spec).0.unwrap_err();
    assert!(err.to_string().contains("executable file not found"), "{err}");
    // A limit the kernel refuses fails the step before it starts, and leaves no cgroup.
    let mut spec = step.spec("true");
    spec.limits.cpu_quota = Some((1000, 0));
    let err = run_collect(&spec).0.unwrap_err();
    assert!(matches!(err, Error::Cgroup(_)), "{err}");
    assert_nothing_left(&step, "forge-test-marker-none");
}

/// The directory a step's cgroup would get in the hierarchy that freezes processes (v1:
/// the freezer controller, under this process's own freezer cgroup; v2: the unified root).
fn freezer_parent() -> std::path::PathBuf {
    let root = std::path::Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return root.join("forge");
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = own.lines().find_map(|l| l.split_once(":freezer:").map(|(_, p)| p.to_string())).expect("no freezer controller");
    root.join("freezer").join(path.trim_start_matches('/')).join("forge")
}

#[test]
fn leftovers_of_a_killed_forge_are_killed_and_removed_even_when_frozen() {
    let _serial = common::serial();
    forge_testkit::require_root();
    // A cgroup as a forge process that has since died would have left it, frozen mid-kill,
    // with a process inside.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let dir = freezer_parent().join(format!("{}-1-0", gone.id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = format!("forge-orphan-{}", std::process::id());
    let mut child = std::process::Command::new("sh").args(["-c", &format!("read go; sleep 1000; : {marker}")]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
    let frozen = if dir.join("freezer.state").exists() { std::fs::write(dir.join("freezer.state"), "FROZEN") } else { std::fs::write(dir.join("cgroup.freeze"), "1") };
    use std::io::Write;
    let _ = child.stdin.take().unwrap().write_all(b"go\n");

    let removed = forge_sandbox::remove_leftovers();
    let status = child.try_wait().unwrap().or_else(|| {
        // Clean up whatever the assertions below find.
        let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
        let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
        let _ = child.kill();
        child.wait().ok();
        None
    });
    let _ = std::fs::remove_dir(&dir);
    frozen.unwrap();
    assert!(removed.unwrap() >= 1);
    assert!(status.is_some(), "the orphaned step's process is still running");
    assert!(processes_with(&marker).is_empty());
}
