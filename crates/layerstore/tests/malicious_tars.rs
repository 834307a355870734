//! Hostile layers: every entry here tries to write outside the target root. Each must fail with
//! a typed error or land inside the root, never panic and never touch `outside/`.

use std::fs;
use std::io::Write;
use std::path::Path;

use forge_layerstore::archive::extract::ExtractError;
use forge_layerstore::archive::{apply_layer, ApplyOptions, WhiteoutMode};

/// Appends one raw entry: the name and link name bytes go into the header untouched, bypassing
/// the tar crate's own path checks, like a hand-crafted attack tar would.
fn raw(buf: &mut Vec<u8>, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(1);
    h.set_uid(0);
    h.set_gid(0);
    h.set_device_major(0).unwrap();
    h.set_device_minor(0).unwrap();
    let old = h.as_old_mut();
    old.name[..name.len()].copy_from_slice(name);
    old.linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();
    buf.extend_from_slice(h.as_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().div_ceil(512) * 512, 0);
}

fn pax(buf: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    raw(buf, b"PaxHeaders/x", tar::EntryType::XHeader, b"", &rec);
}

/// An `s` entry: a symlink to the directory outside the root, the start of most escapes.
fn link_to_outside(t: &mut Vec<u8>, env: &Env) {
    raw(t, b"s", tar::EntryType::Symlink, env.outside.to_str().unwrap().as_bytes(), b"");
}

fn end(mut buf: Vec<u8>) -> Vec<u8> {
    buf.extend_from_slice(&[0u8; 1024]);
    buf
}

struct Env {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("victim"), b"original").unwrap();
        Env {
            _tmp: tmp,
            root,
            outside,
        }
    }

    fn apply(&self, tar: &[u8]) -> Result<(), ExtractError> {
        apply_layer(tar, &self.root, &ApplyOptions::default()).map(|_| ())
    }

    /// The outside directory holds exactly its one untouched file.
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("victim")]);
        assert_eq!(fs::read(self.outside.join("victim")).unwrap(), b"original");
        assert!(!self.root.parent().unwrap().join("escape").exists());
    }
}

fn unsafe_path(r: Result<(), ExtractError>) {
    assert!(
        matches!(r, Err(ExtractError::UnsafePath { .. })),
        "expected UnsafePath, got {r:?}"
    );
}

#[test]
fn dotdot_names_are_refused() {
    let env = Env::new();
    for name in [
        &b"../escape"[..],
        b"a/../../escape",
        b"./../escape",
        b"a/b/../../../escape",
    ] {
        let mut t = Vec::new();
        raw(&mut t, name, tar::EntryType::Regular, b"", b"pwned");
        unsafe_path(env.apply(&end(t)));
    }
    env.assert_outside_untouched();
}

#[test]
fn absolute_names_land_inside_the_root() {
    let env = Env::new();
    let abs = format!("{}/victim", env.outside.display());
    let mut t = Vec::new();
    raw(
        &mut t,
        abs.as_bytes(),
        tar::EntryType::Regular,
        b"",
        b"pwned",
    );
    env.apply(&end(t)).unwrap();
    assert_eq!(
        fs::read(env.root.join(abs.trim_start_matches('/'))).unwrap(),
        b"pwned"
    );
    env.assert_outside_untouched();
}

#[test]
fn symlinked_parent_to_slash_stays_in_root() {
    let env = Env::new();
    let mut t = Vec::new();
    raw(&mut t, b"a", tar::EntryType::Symlink, b"/", b"");
    let through = format!("a{}/victim", env.outside.display());
    raw(
        &mut t,
        through.as_bytes(),
        tar::EntryType::Regular,
        b"",
        b"pwned",
    );
    env.apply(&end(t)).unwrap();
    assert_eq!(
        fs::read(
            env.root
                .join(format!("{}/victim", env.outside.display()).trim_start_matches('/'))
        )
        .unwrap(),
        b"pwned"
    );
    env.assert_outside_untouched();
}

#[test]
fn symlink_chains_with_dotdot_stay_in_root() {
    let env = Env::new();
    let outside_rel = "../outside";
    let mut t = Vec::new();
    raw(&mut t, b"a", tar::EntryType::Symlink, b"..", b"");
    raw(&mut t, b"b", tar::EntryType::Symlink, b"a/../..", b"");
    raw(
        &mut t,
        b"c",
        tar::EntryType::Symlink,
        outside_rel.as_bytes(),
        b"",
    );
    raw(
        &mut t,
        b"d",
        tar::EntryType::Symlink,
        env.outside.to_str().unwrap().as_bytes(),
        b"",
    );
    raw(&mut t, b"a/escape", tar::EntryType::Regular, b"", b"1");
    raw(&mut t, b"b/escape2", tar::EntryType::Regular, b"", b"2");
    env.apply(&end(t)).unwrap();
    assert_eq!(fs::read(env.root.join("escape")).unwrap(), b"1");
    assert_eq!(fs::read(env.root.join("escape2")).unwrap(), b"2");
    // `c` and `d` resolve (inside the root) to directories that do not exist: refused.
    for via in [&b"c/victim"[..], b"d/victim"] {
        let mut t = Vec::new();
        raw(&mut t, via, tar::EntryType::Regular, b"", b"3");
        assert!(matches!(env.apply(&end(t)), Err(ExtractError::Fs { .. })));
    }
    // Once the in-root directory exists, writes through `c` land there.
    fs::create_dir(env.root.join("outside")).unwrap();
    let mut t = Vec::new();
    raw(&mut t, b"c/victim", tar::EntryType::Regular, b"", b"3");
    env.apply(&end(t)).unwrap();
    assert_eq!(fs::read(env.root.join("outside/victim")).unwrap(), b"3");
    env.assert_outside_untouched();
}

#[test]
fn regular_file_replaces_symlink_instead_of_writing_through_it() {
    let env = Env::new();
    let mut t = Vec::new();
    raw(
        &mut t,
        b"x",
        tar::EntryType::Symlink,
        env.outside.join("victim").to_str().unwrap().as_bytes(),
        b"",
    );
    raw(&mut t, b"x", tar::EntryType::Regular, b"", b"pwned");
    env.apply(&end(t)).unwrap();
    assert!(fs::symlink_metadata(env.root.join("x")).unwrap().is_file());
    env.assert_outside_untouched();
}

#[test]
fn hard_links_cannot_reach_outside() {
    let env = Env::new();
    let mut t = Vec::new();
    raw(&mut t, b"passwd", tar::EntryType::Link, b"/etc/passwd", b"");
    let r = env.apply(&end(t));
    assert!(matches!(r, Err(ExtractError::Fs { .. })), "{r:?}");

    let mut t = Vec::new();
    raw(
        &mut t,
        b"x",
        tar::EntryType::Link,
        b"../outside/victim",
        b"",
    );
    unsafe_path(env.apply(&end(t)));

    // Through a symlinked directory pointing outside: resolved inside the root instead.
    let mut t = Vec::new();
    link_to_outside(&mut t, &env);
    raw(&mut t, b"y", tar::EntryType::Link, b"s/victim", b"");
    assert!(env.apply(&end(t)).is_err());
    assert_eq!(
        fs::metadata(env.outside.join("victim"))
            .map(|m| std::os::unix::fs::MetadataExt::nlink(&m))
            .unwrap(),
        1
    );
    env.assert_outside_untouched();
}

#[test]
fn whiteouts_of_dot_and_dotdot_are_refused() {
    let env = Env::new();
    for name in [&b".wh..."[..], b"a/.wh...", b".wh..", b".wh."] {
        let mut t = Vec::new();
        raw(&mut t, name, tar::EntryType::Regular, b"", b"");
        unsafe_path(env.apply(&end(t)));
    }
    // A whiteout through a symlink to the outside dir deletes inside the root only.
    let mut t = Vec::new();
    link_to_outside(&mut t, &env);
    raw(&mut t, b"s/.wh.victim", tar::EntryType::Regular, b"", b"");
    raw(&mut t, b"s/.wh..wh..opq", tar::EntryType::Regular, b"", b"");
    env.apply(&end(t)).unwrap();
    env.assert_outside_untouched();
}

#[test]
fn huge_names_fail_cleanly() {
    let env = Env::new();
    let long = "a".repeat(5000);
    let mut t = Vec::new();
    pax(&mut t, "path", long.as_bytes());
    raw(&mut t, b"short", tar::EntryType::Regular, b"", b"x");
    assert!(matches!(env.apply(&end(t)), Err(ExtractError::Fs { .. })));

    let deep = "d/".repeat(3000) + "f";
    let mut t = Vec::new();
    pax(&mut t, "path", deep.as_bytes());
    raw(&mut t, b"short", tar::EntryType::Regular, b"", b"x");
    assert!(env.apply(&end(t)).is_err());
    env.assert_outside_untouched();
}

#[test]
fn truncated_and_garbage_archives_are_errors() {
    let env = Env::new();
    let mut t = Vec::new();
    raw(&mut t, b"big", tar::EntryType::Regular, b"", &[7u8; 4096]);
    let whole = end(t);
    for cut in [100, 512, 700, 2000, 4000] {
        let r = env.apply(&whole[..cut]);
        assert!(
            matches!(r, Err(ExtractError::Tar(_))),
            "cut at {cut}: {r:?}"
        );
    }
    // gzip cut mid-stream.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&whole).unwrap();
    let gz = gz.finish().unwrap();
    assert!(env.apply(&gz[..gz.len() / 2]).is_err());
    // Random bytes that are not a tar header.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert!(env.apply(&garbage).is_err());
    env.assert_outside_untouched();
}

#[test]
fn device_nodes_only_when_asked() {
    let env = Env::new();
    let mut t = Vec::new();
    raw(&mut t, b"sda", tar::EntryType::Block, b"", b"");
    raw(&mut t, b"fifo", tar::EntryType::Fifo, b"", b"");
    let stats = apply_layer(&end(t.clone())[..], &env.root, &ApplyOptions::default()).unwrap();
    assert_eq!(stats.skipped_devices, 1);
    assert!(!env.root.join("sda").exists());
    assert!(Path::new(&env.root.join("fifo")).exists());
    let opts = ApplyOptions {
        device_nodes: true,
        whiteouts: WhiteoutMode::Delete,
    };
    apply_layer(&end(t)[..], &env.root, &opts).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(env.root.join("sda"))
        .unwrap()
        .file_type()
        .is_block_device());
}
