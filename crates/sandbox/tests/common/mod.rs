//! A busybox lower layer and a fresh upper/work pair per test, and a helper to run a shell
//! command in the sandbox and collect what it prints.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use forge_sandbox::{run, Cancel, Error, Outcome, RunSpec, Stream};

pub struct Step {
    pub dir: tempfile::TempDir,
}

impl Step {
    pub fn new() -> Step {
        forge_testkit::require_root();
        let dir = tempfile::tempdir().unwrap();
        forge_testkit::busybox_rootfs(&dir.path().join("lower"));
        for d in ["upper", "work"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Step { dir }
    }

    pub fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }

    pub fn lower(&self) -> PathBuf {
        self.dir.path().join("lower")
    }

    pub fn spec(&self, script: &str) -> RunSpec {
        let p = self.dir.path();
        let mut spec = RunSpec::new(vec![p.join("lower")], p.join("upper"), p.join("work"), vec!["/bin/sh".into(), "-c".into(), script.into()]);
        spec.init = Some(PathBuf::from(env!("CARGO_BIN_EXE_forge-sandbox-init")));
        spec
    }
}

/// Runs `spec`; returns the outcome and stdout+stderr as one string.
pub fn run_collect(spec: &RunSpec) -> (Result<Outcome, Error>, String) {
    run_with(spec, &Cancel::new())
}

pub fn run_with(spec: &RunSpec, cancel: &Cancel) -> (Result<Outcome, Error>, String) {
    let mut out = String::new();
    let result = run(spec, cancel, &mut |_: Stream, line: &[u8]| out.push_str(&String::from_utf8_lossy(line)));
    (result, out)
}

/// Serializes the tests that look at host-wide state (cgroups, processes): tests of one binary
/// share a pid, so one test's running step would look like another's leftover.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Mounts in this (the host's) mount namespace under `dir`.
pub fn host_mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let d = dir.to_string_lossy().to_string();
    text.lines().filter(|l| l.contains(&d)).map(str::to_string).collect()
}

/// Host processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                out.push(cmd);
            }
        }
    }
    out
}
