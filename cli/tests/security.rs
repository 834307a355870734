//! Containers' privileges through the `forge` binary: Docker's default seccomp profile and
//! capabilities, `--cap-add`/`--cap-drop`, `--privileged` and `--security-opt`.
//!
//! The expected values were measured with Docker 28.5 (`../shared/anchors/start-dockerd-modern.sh`)
//! running the same image (`forge save` then `docker load`): the same probe output and the
//! same capability sets, `CapInh` empty included.

mod common;

use std::process::Command;

use common::Forge;

/// Calls each system call Docker's default profile refuses, printing `name ok` or
/// `name ERRNO`.
const PROBE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *name, long r) {
    printf("%s %s\n", name, r >= 0 ? "ok" : strerrorname_np(errno));
}

int main(void) {
    report("unshare", unshare(CLONE_NEWNS));
    report("mount", mount("none", "/mnt", "tmpfs", 0, ""));
    report("keyctl", syscall(SYS_keyctl, 0, -3, 0));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    struct { unsigned int bytes; int type; unsigned char f[8]; } h = { 8, 1, {0} };
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, &h, O_RDONLY));
    report("bpf", syscall(SYS_bpf, 0, NULL, 0));
    return 0;
}
"#;

/// An image with the probe, compiled statically here.
fn probe_image(forge: &Forge) {
    let ctx = forge.context("probe", &[("Dockerfile", "FROM busybox:latest\nCOPY probe /probe\n"), ("probe.c", PROBE)]);
    let built = Command::new("gcc").args(["-static", "-O2", "-o"]).arg(ctx.join("probe")).arg(ctx.join("probe.c")).output().expect("gcc (Debian's gcc) is needed for this test");
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let r = forge.build(&ctx, "probe:1", &[]);
    assert!(r.ok, "{}", r.stderr);
}

/// The probe's result for each call.
fn probe(forge: &Forge, flags: &[&str]) -> Vec<(String, String)> {
    let out = forge.ok(&[&["run", "--rm"], flags, &["probe:1", "/probe"]].concat()).stdout;
    out.lines().map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).unwrap()).collect()
}

fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn seccomp_refuses_what_dockers_default_profile_refuses() {
    let forge = Forge::with_busybox();
    probe_image(&forge);
    let all_eperm = expect(&[("unshare", "EPERM"), ("mount", "EPERM"), ("keyctl", "EPERM"), ("kexec_load", "EPERM"), ("open_by_handle_at", "EPERM"), ("bpf", "EPERM")]);
    assert_eq!(probe(&forge, &[]), all_eperm);
    assert_eq!(probe(&forge, &["--security-opt", "seccomp=default"]), all_eperm);
    // Unconfined: the kernel decides, and the missing capabilities still refuse some.
    let unconfined = expect(&[("unshare", "EPERM"), ("mount", "ENOENT"), ("keyctl", "ok"), ("kexec_load", "ENOSYS"), ("open_by_handle_at", "EPERM"), ("bpf", "EINVAL")]);
    assert_eq!(probe(&forge, &["--security-opt", "seccomp=unconfined"]), unconfined);
    // Privileged: no filter and every capability.
    let privileged = expect(&[("unshare", "ok"), ("mount", "ENOENT"), ("keyctl", "ok"), ("kexec_load", "ENOSYS"), ("open_by_handle_at", "ESTALE"), ("bpf", "EINVAL")]);
    assert_eq!(probe(&forge, &["--privileged"]), privileged);
    // The option docker spells for what forge always does.
    forge.ok(&["run", "--rm", "--security-opt", "no-new-privileges", "busybox", "true"]);
}

/// The `Cap*` lines of `/proc/self/status` in a container run with `flags`.
fn caps(forge: &Forge, flags: &[&str]) -> Vec<String> {
    let out = forge.ok(&[&["run", "--rm"], flags, &["busybox", "grep", "^Cap", "/proc/self/status"]].concat()).stdout;
    out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

fn cap_lines(inh: &str, prm: &str, eff: &str, bnd: &str) -> Vec<String> {
    vec![format!("CapInh: {inh}"), format!("CapPrm: {prm}"), format!("CapEff: {eff}"), format!("CapBnd: {bnd}"), "CapAmb: 0000000000000000".into()]
}

#[test]
fn capabilities_are_dockers_and_change_by_its_rules() {
    let forge = Forge::with_busybox();
    let none = "0000000000000000";
    let default = "00000000a80425fb";
    assert_eq!(caps(&forge, &[]), cap_lines(none, default, default, default));
    // A user other than root keeps the bounding set only.
    assert_eq!(caps(&forge, &["-u", "1000"]), cap_lines(none, none, none, default));
    assert_eq!(caps(&forge, &["--cap-drop", "ALL"]), cap_lines(none, none, none, none));
    // NET_ADMIN (bit 12) in, CHOWN (bit 0) out; names in any case, with or without CAP_.
    let changed = "00000000a80435fa";
    assert_eq!(caps(&forge, &["--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN"]), cap_lines(none, changed, changed, changed));
    assert_eq!(caps(&forge, &["--cap-drop", "all", "--cap-add", "CHOWN"]), cap_lines(none, "0000000000000001", "0000000000000001", "0000000000000001"));
    // Every capability forge itself holds.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = own.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim().to_string();
    assert_eq!(caps(&forge, &["--cap-add", "ALL"]), cap_lines(none, &bounding, &bounding, &bounding));
    assert_eq!(caps(&forge, &["--privileged"]), cap_lines(none, &bounding, &bounding, &bounding));
    let r = forge.run(&["run", "--rm", "--cap-add", "NOT_A_CAP", "busybox", "true"]);
    assert_eq!(r.code, Some(125));
    assert!(r.stderr.contains("unknown capability \"NOT_A_CAP\""), "{}", r.stderr);
    let r = forge.run(&["run", "--rm", "--security-opt", "apparmor=unconfined", "busybox", "true"]);
    assert_eq!(r.code, Some(125));
    assert!(r.stderr.contains("apparmor=unconfined"), "{}", r.stderr);
}

#[test]
fn privileged_unmasks_paths_and_allows_devices() {
    let forge = Forge::with_busybox();
    // A loop device's node: the default device rules refuse to open it.
    let script = "grep -c /proc/keys /proc/mounts; mknod /tmp/disk b 7 0; head -c1 /tmp/disk > /dev/null 2>/tmp/err; cat /tmp/err";
    let confined = forge.ok(&["run", "--rm", "busybox", "sh", "-c", script]).stdout;
    assert!(confined.starts_with("1\n") && confined.contains("Operation not permitted"), "{confined}");
    let privileged = forge.run(&["run", "--rm", "--privileged", "busybox", "sh", "-c", script]).stdout;
    assert!(privileged.starts_with("0\n") && !privileged.contains("Operation not permitted"), "{privileged}");
}

#[test]
fn a_seccomp_profile_file_in_dockers_format_is_applied() {
    let forge = Forge::with_busybox();
    probe_image(&forge);
    // A deny list: everything allowed but keyctl (EACCES) and bpf (the default errno, EPERM).
    let profile = forge.dir.path().join("deny.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["keyctl"],"action":"SCMP_ACT_ERRNO","errnoRet":13,"args":null},
            {"names":["bpf","not_a_call_here"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let got = probe(&forge, &["--security-opt", &opt]);
    assert_eq!(got, expect(&[("unshare", "EPERM"), ("mount", "ENOENT"), ("keyctl", "EACCES"), ("kexec_load", "ENOSYS"), ("open_by_handle_at", "EPERM"), ("bpf", "EPERM")]));
    // An allow list whose default errno is ENOSYS: what it does not name fails so.
    let allow = forge.dir.path().join("allow.json");
    let base = ["execve", "brk", "arch_prctl", "set_tid_address", "set_robust_list", "rseq", "prlimit64", "mprotect", "mmap", "munmap", "readlinkat", "getrandom", "write", "exit_group", "uname", "newfstatat", "fstat", "read", "close", "ioctl", "openat", "lseek", "futex", "rt_sigaction", "rt_sigprocmask"];
    let names = base.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(",");
    std::fs::write(&allow, format!(r#"{{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"syscalls":[{{"names":[{names}],"action":"SCMP_ACT_ALLOW"}}]}}"#)).unwrap();
    let got = probe(&forge, &["--security-opt", &format!("seccomp={}", allow.display())]);
    assert!(got.iter().all(|(_, r)| r == "ENOSYS"), "{got:?}");
    // A file that is not a profile is refused before anything is made.
    let bad = forge.dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"defaultAction":"SCMP_ACT_SOMETIMES"}"#).unwrap();
    let r = forge.run(&["run", "--rm", "--security-opt", &format!("seccomp={}", bad.display()), "busybox", "true"]);
    assert_eq!(r.code, Some(125));
    assert!(r.stderr.contains("unknown action \"SCMP_ACT_SOMETIMES\""), "{}", r.stderr);
    let r = forge.run(&["run", "--rm", "--security-opt", "seccomp=/no/such/profile.json", "busybox", "true"]);
    assert!(r.code == Some(125) && r.stderr.contains("/no/such/profile.json"), "{}", r.stderr);
    assert!(forge.ok(&["ps", "-a", "-q"]).stdout.is_empty());
}
