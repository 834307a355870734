//! Containers' resources through the `forge` binary: docker's resource flags, seen in the
//! cgroup files and from inside the container (OOM kill, failed forks, CPU quota and shares
//! measured from cpuacct), `pause`/`unpause` through the freezer, `stats` and `top`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{eventually, Background, Forge};

/// A busy loop that never ends on its own.
const SPIN: &str = "echo ready; while :; do :; done";

/// Held by the tests that measure CPU time, so they do not compete with each other.
static CPU: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn measuring() -> std::sync::MutexGuard<'static, ()> {
    CPU.lock().unwrap_or_else(|e| e.into_inner())
}

/// The container named `name`'s records (`config.json` and `state.json`), read from the store.
fn records(forge: &Forge, name: &str) -> (serde_json::Value, serde_json::Value) {
    let dir = forge.store().join("forge/containers");
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let read = |f: &str| -> Option<serde_json::Value> { serde_json::from_slice(&std::fs::read(e.path().join(f)).ok()?).ok() };
        if let (Some(config), Some(state)) = (read("config.json"), read("state.json")) {
            if config["Name"] == name {
                return (config, state);
            }
        }
    }
    panic!("no container named {name}");
}

/// The running container's cgroup control file `file` (the first of its recorded directories
/// that has it).
fn cgroup_file(forge: &Forge, name: &str, file: &str) -> PathBuf {
    let (_, state) = records(forge, name);
    let dirs = state["Cgroup"].as_array().unwrap_or_else(|| panic!("no cgroup recorded: {state}"));
    dirs.iter().map(|d| PathBuf::from(d.as_str().unwrap()).join(file)).find(|f| f.exists()).unwrap_or_else(|| panic!("no {file} in {dirs:?}"))
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

/// CPU time the container has used (cpuacct on v1, cpu.stat on v2).
fn cpu_time(forge: &Forge, name: &str) -> Duration {
    let (_, state) = records(forge, name);
    let dirs: Vec<PathBuf> = state["Cgroup"].as_array().unwrap().iter().map(|d| PathBuf::from(d.as_str().unwrap())).collect();
    for d in &dirs {
        if let Ok(ns) = std::fs::read_to_string(d.join("cpuacct.usage")) {
            return Duration::from_nanos(ns.trim().parse().unwrap());
        }
        if let Ok(stat) = std::fs::read_to_string(d.join("cpu.stat")) {
            if let Some(us) = stat.lines().find_map(|l| l.strip_prefix("usage_usec ")) {
                return Duration::from_micros(us.trim().parse().unwrap());
            }
        }
    }
    panic!("no CPU accounting in {dirs:?}");
}

/// CPU time the container used over `span` of wall time, as a share of one CPU.
fn cpu_share(forge: &Forge, name: &str, span: Duration) -> f64 {
    let (c0, t0) = (cpu_time(forge, name), Instant::now());
    std::thread::sleep(span);
    let (c1, t1) = (cpu_time(forge, name), Instant::now());
    (c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64()
}

#[test]
fn memory_limit_ends_in_an_oom_kill_that_is_recorded() {
    let forge = Forge::with_busybox();
    // `tail` keeps a line that never ends in memory: it grows until the OOM killer stops it.
    let r = forge.run(&["run", "--name", "hog", "-m", "16m", "busybox", "sh", "-c", "tail /dev/zero"]);
    assert_eq!(r.code, Some(137), "{}", r.stderr);
    let (config, state) = records(&forge, "hog");
    assert_eq!(state["OOMKilled"], true, "{state}");
    assert_eq!(state["ExitCode"], 137, "{state}");
    assert_eq!(config["Limits"]["memory"], 16 << 20, "{config}");
    forge.ok(&["rm", "hog"]);
}

#[test]
fn limits_are_written_to_the_cgroup_and_seen_inside() {
    let forge = Forge::with_busybox();
    let flags = ["-m", "64m", "--memory-swap", "96m", "--memory-reservation", "32m", "--cpus", "0.5", "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "20", "--oom-kill-disable"];
    let bg = Background::start_with(&forge, &flags, "limited", "echo ready; exec sleep 1000");
    let v1 = forge_cgroup_v1();
    let expect: &[(&str, &str)] = if v1 {
        &[
            ("memory.limit_in_bytes", "67108864"),
            ("memory.memsw.limit_in_bytes", "100663296"),
            ("memory.soft_limit_in_bytes", "33554432"),
            ("cpu.shares", "512"),
            ("cpu.cfs_quota_us", "50000"),
            ("cpu.cfs_period_us", "100000"),
            ("cpuset.cpus", "0"),
            ("pids.max", "20"),
        ]
    } else {
        &[("memory.max", "67108864"), ("memory.swap.max", "33554432"), ("memory.low", "33554432"), ("cpu.max", "50000 100000"), ("cpuset.cpus", "0"), ("pids.max", "20")]
    };
    for (file, value) in expect {
        assert_eq!(read(&cgroup_file(&forge, "limited", file)), *value, "{file}");
    }
    if v1 {
        assert!(read(&cgroup_file(&forge, "limited", "memory.oom_control")).contains("oom_kill_disable 1"));
    }
    drop(bg);
    // Inside, the container's own cgroup is the root of /sys/fs/cgroup, read-only, as docker's.
    let files = if v1 { "memory/memory.limit_in_bytes cpu/cpu.shares cpu/cpu.cfs_quota_us cpuset/cpuset.cpus pids/pids.max" } else { "memory.max cpu.max cpuset.cpus pids.max" };
    let script = format!("cd /sys/fs/cgroup && cat {files}; {{ echo 1 > {pids}; }} 2>&1; true", pids = if v1 { "pids/pids.max" } else { "pids.max" });
    let r = forge.ok(&[&["run", "--rm"], &flags[..], &["busybox", "sh", "-c", &script]].concat());
    let expected = if v1 { "67108864\n512\n50000\n0\n20\n" } else { "67108864\n50000 100000\n0\n20\n" };
    assert!(r.stdout.starts_with(expected), "{}", r.stdout);
    assert!(r.stdout.contains("Read-only file system"), "{}", r.stdout);
}

/// Whether this host has the v1 hierarchies (the hybrid layout) rather than only cgroup2.
fn forge_cgroup_v1() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

#[test]
fn cpuset_is_the_containers_view_of_its_cpus() {
    let forge = Forge::with_busybox();
    let r = forge.ok(&["run", "--rm", "--cpuset-cpus", "0", "busybox", "grep", "Cpus_allowed_list", "/proc/self/status"]);
    assert_eq!(r.stdout.split_whitespace().last(), Some("0"), "{}", r.stdout);
}

#[test]
fn pids_limit_makes_fork_fail_inside() {
    let forge = Forge::with_busybox();
    // The init, PID 1 and the shell already count: at most a few more processes start.
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done 2>&1; echo done";
    let r = forge.run(&["run", "--rm", "--pids-limit", "6", "busybox", "sh", "-c", script]);
    assert!(r.stdout.contains("can't fork") || r.stdout.contains("Resource temporarily unavailable"), "{} {}", r.stdout, r.stderr);
    // Without the limit every fork succeeds.
    let r = forge.run(&["run", "--rm", "busybox", "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do true & done 2>&1; wait; echo done"]);
    assert_eq!(r.stdout, "done\n", "{}", r.stderr);
}

#[test]
fn cpus_half_gives_about_half_a_core() {
    let _cpu = measuring();
    let forge = Forge::with_busybox();
    let bg = Background::start_with(&forge, &["--cpus", "0.5"], "half", SPIN);
    let share = cpu_share(&forge, "half", Duration::from_secs(4));
    drop(bg);
    // The quota caps it at 0.5 (a little over for the first and last periods); a busy host
    // may give it less, but not much less over four seconds.
    assert!((0.1..=0.6).contains(&share), "used {share:.2} of a CPU");
}

#[test]
fn cpu_shares_set_the_priority_under_contention() {
    let _cpu = measuring();
    let forge = Forge::with_busybox();
    // Both on CPU 0, so they compete.
    let high = Background::start_with(&forge, &["--cpuset-cpus", "0", "--cpu-shares", "2048"], "high", SPIN);
    let low = Background::start_with(&forge, &["--cpuset-cpus", "0", "--cpu-shares", "256"], "low", SPIN);
    if forge_cgroup_v1() {
        assert_eq!(read(&cgroup_file(&forge, "high", "cpu.shares")), "2048");
        assert_eq!(read(&cgroup_file(&forge, "low", "cpu.shares")), "256");
    }
    let (h0, l0) = (cpu_time(&forge, "high"), cpu_time(&forge, "low"));
    std::thread::sleep(Duration::from_secs(4));
    let (h1, l1) = (cpu_time(&forge, "high"), cpu_time(&forge, "low"));
    drop((high, low));
    let (h, l) = ((h1 - h0).as_secs_f64(), (l1 - l0).as_secs_f64());
    // 8:1 asked; at least 3:1 measured, whatever else the host runs.
    assert!(h > 3.0 * l, "high {h:.2}s, low {l:.2}s");
}

#[test]
fn pause_stops_cpu_progress_and_unpause_resumes_it() {
    let _cpu = measuring();
    let forge = Forge::with_busybox();
    let bg = Background::start(&forge, "spinner", SPIN);
    let r = forge.ok(&["pause", "spinner"]);
    assert_eq!(r.stdout, "spinner\n");
    let ps = forge.ok(&["ps", "--format", "json"]).stdout;
    let row: serde_json::Value = serde_json::from_str(ps.lines().next().unwrap()).unwrap();
    assert_eq!(row["State"], "paused", "{row}");
    assert!(row["Status"].as_str().unwrap().ends_with("(Paused)"), "{row}");
    let frozen = if forge_cgroup_v1() { ("freezer.state", "FROZEN") } else { ("cgroup.freeze", "1") };
    assert_eq!(read(&cgroup_file(&forge, "spinner", frozen.0)), frozen.1);
    // Frozen: not a nanosecond more.
    let before = cpu_time(&forge, "spinner");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(cpu_time(&forge, "spinner"), before);
    let r = forge.run(&["pause", "spinner"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("is already paused"), "{}", r.stderr);

    forge.ok(&["unpause", "spinner"]);
    assert!(eventually(|| cpu_time(&forge, "spinner") > before + Duration::from_millis(200)), "no progress after unpause");
    let ps = forge.ok(&["ps", "--format", "json"]).stdout;
    assert!(ps.contains("\"State\":\"running\""), "{ps}");
    let r = forge.run(&["unpause", "spinner"]);
    assert!(r.stderr.contains("is not paused"), "{}", r.stderr);
    drop(bg);
}

#[test]
fn a_paused_container_is_removed_by_rm_force() {
    let forge = Forge::with_busybox();
    let mut bg = Background::start(&forge, "frozen", "echo ready; exec sleep 1000");
    forge.ok(&["pause", "frozen"]);
    let r = forge.run(&["rm", "-f", "frozen"]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(bg.child.wait().unwrap().code(), Some(137));
    assert!(forge.ok(&["ps", "-a", "-q"]).stdout.is_empty());
}

#[test]
fn pause_needs_a_running_container() {
    let forge = Forge::with_busybox();
    forge.ok(&["create", "--name", "idle", "busybox", "true"]);
    let r = forge.run(&["pause", "idle"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("is created: only a running container can be paused"), "{}", r.stderr);
    let r = forge.run(&["pause", "nobody"]);
    assert!(r.stderr.contains("no such container: nobody"), "{}", r.stderr);
}

#[test]
fn stats_and_top_read_the_containers_cgroup() {
    let forge = Forge::with_busybox();
    let bg = Background::start_with(&forge, &["-m", "32m"], "watched", "sleep 1000 & echo ready; wait");
    let r = forge.ok(&["stats", "--no-stream"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let columns = |l: &str| l.split("   ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(columns(lines[0]), ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]);
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    let row = columns(lines[1]);
    assert_eq!(row[1], "watched");
    assert!(row[3].ends_with(" / 32MiB"), "{row:?}");
    assert_eq!(row[5], "0B / 0B");
    // forge's init, PID 1, the shell and sleep.
    assert_eq!(row[7], "4", "{row:?}");

    let json = forge.ok(&["stats", "--no-stream", "--format", "json", "watched"]).stdout;
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["PIDs"], "4");
    assert!(v["CPUPerc"].as_str().unwrap().ends_with('%'));

    let top = forge.ok(&["top", "watched"]).stdout;
    assert!(top.starts_with("UID"), "{top}");
    assert!(top.lines().any(|l| l.ends_with("sleep 1000")), "{top}");
    // Only its own processes: not forge's stats or the test.
    assert_eq!(top.lines().count(), 5, "{top}");
    drop(bg);
    forge.ok(&["create", "--name", "idle", "busybox", "true"]);
    let r = forge.run(&["stats", "--no-stream", "idle"]);
    assert!(!r.ok && r.stderr.contains("is created: only a running container has stats"), "{}", r.stderr);
}

#[test]
fn bad_limits_are_refused_before_anything_is_created() {
    let forge = Forge::with_busybox();
    let cases: &[(&[&str], &str)] = &[
        (&["-m", "1m"], "at least 6 MiB"),
        (&["-m", "lots"], "invalid --memory"),
        (&["--memory-swap", "64m"], "--memory-swap needs a memory limit"),
        (&["-m", "64m", "--memory-swap", "32m"], "at least the memory limit"),
        (&["-m", "32m", "--memory-reservation", "64m"], "at least --memory-reservation"),
        (&["--cpus", "0"], "invalid --cpus"),
        (&["--cpus", "100000"], "--cpus is from 0.01 to"),
        (&["--cpuset-cpus", "0-9999"], "not a CPU list"),
        (&["--cpuset-cpus", "4000"], "that this host does not have"),
        (&["--blkio-weight", "5"], "--blkio-weight is from 10 to 1000"),
    ];
    for (flags, message) in cases {
        let r = forge.cmd().arg("run").arg("--rm").args(*flags).args(["busybox", "true"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(125), "{flags:?}: {stderr}");
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
    }
    assert!(forge.ok(&["ps", "-a", "-q"]).stdout.is_empty());
}

#[test]
fn blkio_weight_is_applied_or_clearly_refused() {
    let forge = Forge::with_busybox();
    // A first container makes forge's blkio directory, where the weight files would be.
    forge.ok(&["run", "--rm", "busybox", "true"]);
    // Weights live in the cgroups below the root (BFQ's since Linux 5.0, CFQ's before).
    let parent = std::path::Path::new("/sys/fs/cgroup/blkio/forge");
    let file = ["blkio.weight", "blkio.bfq.weight"].into_iter().find(|f| parent.join(f).exists());
    match file {
        Some(file) => {
            let bg = Background::start_with(&forge, &["--blkio-weight", "300"], "io", "echo ready; exec sleep 1000");
            // BFQ's file reads `default 300`.
            assert!(read(&cgroup_file(&forge, "io", file)).ends_with("300"));
            drop(bg);
        }
        None => {
            let r = forge.run(&["run", "--rm", "--blkio-weight", "300", "busybox", "true"]);
            assert_eq!(r.code, Some(125));
            assert!(r.stderr.contains("no block I/O weights") && r.stderr.contains("--blkio-weight"), "{}", r.stderr);
        }
    }
}
