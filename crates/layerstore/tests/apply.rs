//! Applying layers: whiteouts in both target encodings, opaque directories, metadata.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use forge_layerstore::archive::{apply_layer, ApplyOptions, Compression, WhiteoutMode};
use forge_layerstore::diff::{write_layer, LayerOptions, LayerSource};

/// A layer (plain tar) from `entries` of (name, content); names ending in `/` are dirs.
fn tar_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, content) in entries {
        let mut h = tar::Header::new_ustar();
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
        } else {
            h.set_mode(0o644);
        }
        h.set_size(content.len() as u64);
        h.set_mtime(1_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_path(name).unwrap();
        h.set_cksum();
        b.append(&h, content.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn whiteouts_delete_in_plain_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let base = tar_of(&[
        ("d/", ""),
        ("d/old", "o"),
        ("d/sub/", ""),
        ("d/sub/deep", "x"),
        ("gone", "g"),
        ("keep", "k"),
    ]);
    apply_layer(&base[..], root, &ApplyOptions::default()).unwrap();
    // Marker before the new entry here, after it below: either way this layer's own entries survive.
    let top = tar_of(&[
        ("d/", ""),
        ("d/.wh..wh..opq", ""),
        ("d/a-new", "n"),
        (".wh.gone", ""),
    ]);
    let stats = apply_layer(&top[..], root, &ApplyOptions::default()).unwrap();
    assert_eq!(stats.compression, Compression::None);
    assert_eq!(stats.diff_id, forge_layerstore::Digest::of(&top));
    assert_eq!(names(root), ["d", "keep"]);
    assert_eq!(names(&root.join("d")), ["a-new"]);
    let reordered = tar_of(&[("d/", ""), ("d/b", "b"), ("d/.wh..wh..opq", "")]);
    apply_layer(&reordered[..], root, &ApplyOptions::default()).unwrap();
    assert_eq!(names(&root.join("d")), ["b"]);
}

#[test]
fn whiteouts_become_overlay_devices_in_snapshot_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = tar_of(&[
        ("d/", ""),
        ("d/.wh..wh..opq", ""),
        ("d/new", "n"),
        (".wh.gone", ""),
        ("x/.wh.y", ""),
    ]);
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::OverlayDevice,
        device_nodes: false,
    };
    apply_layer(&layer[..], tmp.path(), &opts).unwrap();
    let gone = fs::symlink_metadata(tmp.path().join("gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert!(fs::symlink_metadata(tmp.path().join("x/y"))
        .unwrap()
        .file_type()
        .is_char_device());
    let mut v = [0u8; 8];
    let n =
        rustix::fs::lgetxattr(tmp.path().join("d"), "trusted.overlay.opaque", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"y");
}

#[test]
fn metadata_survives_diff_and_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("dir/f"), "hello").unwrap();
    fs::hard_link(src.join("dir/f"), src.join("hl")).unwrap();
    std::os::unix::fs::symlink("dir/f", src.join("sym")).unwrap();
    rustix::fs::chownat(
        rustix::fs::CWD,
        src.join("dir/f"),
        Some(rustix::fs::Uid::from_raw(1000)),
        Some(rustix::fs::Gid::from_raw(2000)),
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
    rustix::fs::chmodat(
        rustix::fs::CWD,
        src.join("dir"),
        rustix::fs::Mode::from_raw_mode(0o2750),
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
    rustix::fs::lsetxattr(
        src.join("dir/f"),
        "user.note",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let mut blob = Vec::new();
    let info = write_layer(
        &LayerSource::Dirs {
            lower: None,
            upper: &src,
        },
        &LayerOptions {
            compression: Compression::Zstd,
            source_date_epoch: None,
        },
        &mut blob,
    )
    .unwrap();
    let dst = tmp.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let stats = apply_layer(&blob[..], &dst, &ApplyOptions::default()).unwrap();
    assert_eq!(stats.diff_id, info.diff_id);
    assert_eq!(stats.compression, Compression::Zstd);
    let f = fs::metadata(dst.join("dir/f")).unwrap();
    assert_eq!((f.uid(), f.gid(), f.nlink()), (1000, 2000, 2));
    assert_eq!(f.ino(), fs::metadata(dst.join("hl")).unwrap().ino());
    assert_eq!(
        fs::metadata(dst.join("dir")).unwrap().mode() & 0o7777,
        0o2750
    );
    assert_eq!(
        fs::metadata(dst.join("dir")).unwrap().mtime(),
        fs::metadata(src.join("dir")).unwrap().mtime()
    );
    assert_eq!(fs::read_link(dst.join("sym")).unwrap(), Path::new("dir/f"));
    let mut v = [0u8; 8];
    let n = rustix::fs::lgetxattr(dst.join("dir/f"), "user.note", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"v");
}
