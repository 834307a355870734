//! `forge debug parse` through the real binary: BuildKit's dump on stdout, located errors on
//! stderr with a non-zero exit.

use std::process::Command;

fn forge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_forge"))
}

#[test]
fn prints_buildkits_dump() {
    let Some(case) = forge_testkit::shared_data("conformance/buildkit-parser/testfiles/health") else { return };
    let out = forge().args(["debug", "parse"]).arg(case.join("Dockerfile")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), std::fs::read_to_string(case.join("result")).unwrap());
}

#[test]
fn bad_dockerfile_fails_with_location_and_caret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Dockerfile");
    std::fs::write(&file, "FROM busybox\n  ENV ONLYNAME\n").unwrap();
    let out = forge().args(["debug", "parse"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("Dockerfile:2:3: ENV must have two arguments"), "{err}");
    assert!(err.contains("2 |   ENV ONLYNAME\n      ^"), "{err}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = forge().args(["debug", "parse", "/nonexistent/Dockerfile"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: reading /nonexistent/Dockerfile:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
