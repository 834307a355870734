//! A RUN-like change made through a real overlayfs mount, diffed from the upperdir (and, as a
//! cross-check, by comparing lower with merged), then applied onto a copy of the lower: the
//! result must equal the merged tree in every recorded attribute.
//!
//! Needs root and overlayfs; skipped (with a message) where mounting is not possible.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use forge_layerstore::archive::{apply_layer, ApplyOptions, Compression};
use forge_layerstore::diff::{write_layer, LayerOptions, LayerSource};

/// Unmounts on drop, so a failing assertion never leaves a mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_overlay(lower: &Path, upper: &Path, work: &Path, merged: &Path) -> Option<Mounted> {
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    let ok = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(merged)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Some(Mounted(merged.to_path_buf()))
    } else {
        eprintln!("skipping: cannot mount overlayfs here (needs root)");
        None
    }
}

fn sh(dir: &Path, script: &str) {
    let st = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "script failed: {script}");
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

/// Everything about one entry that a layer must carry.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    content: Option<Vec<u8>>,
    target: Option<PathBuf>,
    rdev: u64,
    xattrs: Vec<(String, Vec<u8>)>,
    /// First path (in walk order) of the hard-link group, for files with nlink > 1.
    link_group: Option<String>,
}

fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut buf[..]).unwrap_or(0);
    let mut out = Vec::new();
    for name in buf[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8(name.to_vec()).unwrap();
        if name.starts_with("trusted.overlay.") {
            continue;
        }
        let mut v = vec![0u8; 65536];
        let len = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..]).unwrap();
        v.truncate(len);
        out.push((name, v));
    }
    out.sort();
    out
}

fn tree(root: &Path) -> BTreeMap<String, Node> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<String, Node>,
        groups: &mut HashMap<(u64, u64), String>,
    ) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let p = dir.join(&name);
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let st = fs::symlink_metadata(&p).unwrap();
            let ft = st.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_file() {
                "file"
            } else if ft.is_symlink() {
                "symlink"
            } else {
                "special"
            };
            let link_group = (ft.is_file() && st.nlink() > 1).then(|| {
                groups
                    .entry((st.dev(), st.ino()))
                    .or_insert_with(|| rel.clone())
                    .clone()
            });
            out.insert(
                rel.clone(),
                Node {
                    kind,
                    mode: st.mode(),
                    uid: st.uid(),
                    gid: st.gid(),
                    // Directory mtimes change whenever an entry is added inside, including by
                    // the kernel's own copy-up; file and symlink mtimes are compared.
                    mtime: if ft.is_dir() { 0 } else { st.mtime() },
                    content: ft.is_file().then(|| fs::read(&p).unwrap()),
                    target: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
                    rdev: st.rdev(),
                    xattrs: xattrs(&p),
                    link_group,
                },
            );
            if ft.is_dir() {
                walk(root, &p, out, groups);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out, &mut HashMap::new());
    out
}

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

fn populate_lower(lower: &Path) {
    sh(
        lower,
        "mkdir -p etc app/lib renamed_src/sub opq/old gone_dir/deep
         echo config > etc/conf; echo keep > etc/keep; echo bye > etc/delete_me
         echo lib > app/lib/a.so; ln app/lib/a.so app/lib/a-link.so
         echo deep > renamed_src/sub/file; echo old > opq/old/x; echo y > gone_dir/deep/y
         ln -s ../etc/conf app/conf-link; echo mode > app/chmod_me; chmod 600 app/chmod_me
         echo own > app/chown_me",
    );
}

/// The change a RUN step might make, through the merged view.
fn run_step(merged: &Path) {
    sh(
        merged,
        "echo new > etc/new; echo changed >> etc/conf; rm etc/delete_me
         mv renamed_src renamed_dst; chmod 751 app/chmod_me; chown 1234:5678 app/chown_me
         ln etc/keep etc/keep-hardlink; ln -s /etc/new app/abs-link
         rm -rf opq; mkdir opq; echo fresh > opq/fresh
         rm -rf gone_dir; mkfifo app/fifo
         mkdir -p new_dir/a/b; echo n > new_dir/a/b/f; ln new_dir/a/b/f new_dir/f2
         echo caps > app/capbin; chmod 4755 app/capbin",
    );
    set_xattr(&merged.join("etc/new"), "user.forge.test", b"hello");
    // CAP_NET_BIND_SERVICE, effective: a v2 vfs_cap_data.
    let mut cap = vec![0x01, 0, 0, 0x02];
    cap.extend_from_slice(&0x400u32.to_le_bytes());
    cap.extend_from_slice(&[0u8; 12]);
    set_xattr(&merged.join("app/capbin"), "security.capability", &cap);
}

fn apply_onto_lower_copy(tmp: &Path, name: &str, lower: &Path, layer: &[u8]) -> PathBuf {
    let target = tmp.join(name);
    fs::create_dir(&target).unwrap();
    copy_tree(lower, &target);
    apply_layer(layer, &target, &ApplyOptions::default()).unwrap();
    target
}

#[test]
fn run_change_roundtrips_through_upperdir_and_dir_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map(|d| {
        let p = t.join(d);
        fs::create_dir(&p).unwrap();
        p
    });
    populate_lower(&lower);
    let Some(mount) = mount_overlay(&lower, &upper, &work, &merged) else {
        return;
    };
    run_step(&merged);
    let expected = tree(&merged);

    // Cross-check with the two-directory diff while the merged view is still there.
    let mut dirs_layer = Vec::new();
    write_layer(
        &LayerSource::Dirs {
            lower: Some(&lower),
            upper: &merged,
        },
        &LayerOptions {
            compression: Compression::Zstd,
            source_date_epoch: None,
        },
        &mut dirs_layer,
    )
    .unwrap();
    drop(mount);

    let mut layer = Vec::new();
    let info = write_layer(
        &LayerSource::OverlayUpper(&upper),
        &LayerOptions::default(),
        &mut layer,
    )
    .unwrap();
    assert_eq!(info.size, layer.len() as u64);
    assert_eq!(
        info.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // The layer carries the overlay whiteouts as .wh. entries and the opaque marker.
    let (_, plain) = forge_layerstore::archive::decompress(&layer[..]).unwrap();
    let mut names = Vec::new();
    for e in tar::Archive::new(plain).entries().unwrap() {
        names.push(String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap());
    }
    for want in [
        "etc/.wh.delete_me",
        "opq/.wh..wh..opq",
        ".wh.gone_dir",
        ".wh.renamed_src",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n.contains("trusted.overlay")));

    let applied = apply_onto_lower_copy(t, "applied", &lower, &layer);
    let got = tree(&applied);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (path, node) in &expected {
        assert_eq!(&got[path], node, "{path} differs after upperdir round trip");
    }

    let applied_dirs = apply_onto_lower_copy(t, "applied-dirs", &lower, &dirs_layer);
    let got = tree(&applied_dirs);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (path, node) in &expected {
        assert_eq!(&got[path], node, "{path} differs after two-dir round trip");
    }
    assert_eq!(
        fs::metadata(applied.join("app/capbin"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
}
