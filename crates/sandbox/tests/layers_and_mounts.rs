//! Many layers, extra mounts, and image symlinks that point at host paths (adapted from the
//! sandbox helper's branch).

mod common;

use common::{run_collect, Step};
use forge_sandbox::{Mount, MountKind};

#[test]
fn many_layers_mount() {
    // Far beyond what fits in a one-page `lowerdir=` option string with these path lengths.
    let step = Step::new();
    let layers = tempfile::tempdir().unwrap();
    let mut lowers = Vec::new();
    for i in (0..120).rev() {
        let d = layers.path().join(format!("layer-with-a-long-name-to-fill-the-option-page-{i:03}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), "x").unwrap();
        lowers.push(d);
    }
    lowers.push(step.lower());
    let mut spec = step.spec("ls / | grep -c '^f'");
    spec.lowerdirs = lowers;
    let (outcome, out) = run_collect(&spec);
    assert!(outcome.unwrap().status.success(), "{out}");
    assert_eq!(out, "120\n");
}

#[test]
fn extra_mounts_work_and_leave_no_mountpoint_in_the_diff() {
    let step = Step::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("in"), "cached\n").unwrap();
    let mut spec = step.spec("cat /cache/in; echo more > /cache/out; echo t > /scratch/t; touch /ro/x 2>/dev/null || echo ro");
    spec.mounts = vec![
        Mount { target: "/cache".into(), kind: MountKind::Bind { source: src.path().into(), readonly: false } },
        Mount { target: "/ro".into(), kind: MountKind::Bind { source: src.path().into(), readonly: true } },
        Mount { target: "/scratch".into(), kind: MountKind::Tmpfs { size: Some(1 << 20) } },
    ];
    let (outcome, out) = run_collect(&spec);
    assert!(outcome.unwrap().status.success(), "{out}");
    assert_eq!(out, "cached\nro\n");
    assert_eq!(std::fs::read_to_string(src.path().join("out")).unwrap(), "more\n");
    assert!(std::fs::read_dir(step.upper()).unwrap().next().is_none(), "mountpoints left in the upperdir");
}

#[test]
fn image_symlinks_do_not_reach_the_host() {
    let step = Step::new();
    let host = tempfile::tempdir().unwrap();
    let layer = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(host.path(), layer.path().join("evil")).unwrap();
    // The working directory and a mount target behind a link to a host path: whatever the step
    // makes of them, the host directory stays empty.
    let mut spec = step.spec("pwd");
    spec.lowerdirs.insert(0, layer.path().to_path_buf());
    spec.cwd = "/evil/made".into();
    spec.mounts = vec![Mount { target: "/evil/m".into(), kind: MountKind::Tmpfs { size: None } }];
    let _ = run_collect(&spec);
    assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0, "the step wrote to the host");
}

#[test]
fn a_build_steps_overlay_is_volatile_and_a_containers_is_not() {
    // overlayfs marks a volatile mount's workdir (`work/incompat/volatile`): a copy-up there
    // does not fsync, and the upperdir holds the same changes.
    for volatile in [true, false] {
        let step = Step::new();
        let mut spec = step.spec("chown 1:1 /bin/busybox && echo new > /made");
        spec.volatile_upper = volatile;
        let (outcome, out) = run_collect(&spec);
        assert!(outcome.unwrap().status.success(), "{out}");
        let marker = step.upper().parent().unwrap().join("work/work/incompat/volatile");
        assert_eq!(marker.exists(), volatile, "volatile_upper = {volatile}");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(step.upper().join("bin/busybox")).unwrap().uid(), 1);
        assert_eq!(std::fs::read_to_string(step.upper().join("made")).unwrap(), "new\n");
    }
}
