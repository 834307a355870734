//! Layer writing: determinism across runs and codecs, SOURCE_DATE_EPOCH clamping, PAX only
//! where needed, whiteouts from plain directory diffs.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use forge_layerstore::archive::{decompress, Compression};
use forge_layerstore::diff::{write_layer, LayerInfo, LayerOptions, LayerSource};

fn make_tree(root: &Path) {
    let st = Command::new("sh")
        .arg("-ec")
        .arg(
            "mkdir -p a/b c; echo one > a/one; echo two > a/b/two; ln a/one c/one-link
             ln -s ../a/one c/sym; dd if=/dev/urandom of=big bs=1M count=3 2>/dev/null
             mkdir -p $(printf 'l%.0s' $(seq 1 120))/deep; echo long > $(printf 'l%.0s' $(seq 1 120))/deep/file
             touch -d @1700000000 a/one; chmod 640 a/b/two",
        )
        .current_dir(root)
        .status()
        .unwrap();
    assert!(st.success());
    rustix::fs::lsetxattr(
        root.join("a/one"),
        "user.k",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

fn layer(
    src: &LayerSource<'_>,
    compression: Compression,
    epoch: Option<i64>,
) -> (LayerInfo, Vec<u8>) {
    let mut out = Vec::new();
    let info = write_layer(
        src,
        &LayerOptions {
            compression,
            source_date_epoch: epoch,
        },
        &mut out,
    )
    .unwrap();
    (info, out)
}

/// (path, type flag, mtime, has PAX header before it) for each entry.
fn entries(blob: &[u8]) -> Vec<(String, u8, u64, bool)> {
    let (_, plain) = decompress(blob).unwrap();
    let mut a = tar::Archive::new(plain);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let pax = e.pax_extensions().unwrap().is_some();
        out.push((
            String::from_utf8(e.path_bytes().into_owned()).unwrap(),
            e.header().entry_type().as_byte(),
            e.header().mtime().unwrap(),
            pax,
        ));
    }
    out
}

/// The layer of `make_tree`'s tree, as a plain directory with nothing below it.
fn tree_layer(compression: Compression, source_date_epoch: Option<i64>) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(tmp.path());
    layer(&LayerSource::Dirs { lower: None, upper: tmp.path() }, compression, source_date_epoch).1
}

#[test]
fn same_tree_twice_gives_same_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    make_tree(&a);
    // A second, separately made copy: different inodes, times and creation order.
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", a.display()))
        .arg(&b)
        .status()
        .unwrap();
    assert!(st.success());
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (i1, b1) = layer(
            &LayerSource::Dirs {
                lower: None,
                upper: &a,
            },
            c,
            None,
        );
        let (i2, b2) = layer(
            &LayerSource::Dirs {
                lower: None,
                upper: &b,
            },
            c,
            None,
        );
        let (i3, _) = layer(
            &LayerSource::Dirs {
                lower: None,
                upper: &a,
            },
            c,
            None,
        );
        assert_eq!(i1, i2, "{c:?}");
        assert_eq!(i1, i3, "{c:?}");
        assert_eq!(b1, b2);
        assert_eq!(i1.media_type, c.media_type());
    }
    // Same uncompressed stream whatever the codec.
    let g = layer(
        &LayerSource::Dirs {
            lower: None,
            upper: &a,
        },
        Compression::Gzip,
        None,
    )
    .0;
    let z = layer(
        &LayerSource::Dirs {
            lower: None,
            upper: &a,
        },
        Compression::Zstd,
        None,
    )
    .0;
    assert_eq!(g.diff_id, z.diff_id);
    assert_ne!(g.digest, z.digest);
}

#[test]
fn entries_are_sorted_hardlinked_and_pax_only_when_needed() {
    let blob = tree_layer(Compression::None, None);
    let es = entries(&blob);
    let names: Vec<_> = es.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(&names[..6], ["a/", "a/b/", "a/b/two", "a/one", "big", "c/"]);
    let link = es.iter().find(|e| e.0 == "c/one-link").unwrap();
    assert_eq!(link.1, b'1', "hard link entry");
    let pax = |n: &str| es.iter().find(|e| e.0 == n).unwrap().3;
    // xattrs and a 121-byte name that ustar's prefix/name split cannot hold need PAX...
    assert!(pax("a/one"));
    assert!(pax(&format!("{}/", "l".repeat(120))));
    // ...short names, hard links and names the ustar prefix can split do not.
    for n in ["a/", "a/b/two", "big", "c/one-link", "c/sym"] {
        assert!(!pax(n), "{n}");
    }
    assert!(!pax(&format!("{}/deep/", "l".repeat(120))));
    assert!(es.iter().any(|e| e.0.ends_with("/deep/file")));
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    let blob = tree_layer(Compression::Gzip, Some(1_600_000_000));
    for (name, _, mtime, _) in entries(&blob) {
        assert!(mtime <= 1_600_000_000, "{name} mtime {mtime}");
    }
}

#[test]
fn dir_diff_writes_changes_and_whiteouts_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir(&lower).unwrap();
    make_tree(&lower);
    fs::create_dir(&upper).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", lower.display()))
        .arg(&upper)
        .status()
        .unwrap();
    assert!(st.success());
    fs::write(upper.join("a/b/added"), b"x").unwrap();
    fs::remove_file(upper.join("c/sym")).unwrap();
    let (_, blob) = layer(
        &LayerSource::Dirs {
            lower: Some(&lower),
            upper: &upper,
        },
        Compression::None,
        None,
    );
    let names: Vec<_> = entries(&blob).into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["a/", "a/b/", "a/b/added", "c/", "c/.wh.sym"]);
}

#[test]
fn upperdir_whiteouts_and_opaque_dirs_are_translated() {
    let tmp = tempfile::tempdir().unwrap();
    let up = tmp.path();
    fs::create_dir(up.join("opq")).unwrap();
    fs::write(up.join("opq/new"), b"n").unwrap();
    rustix::fs::lsetxattr(
        up.join("opq"),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        up.join("gone"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    let (_, blob) = layer(&LayerSource::OverlayUpper(up), Compression::None, None);
    let es = entries(&blob);
    let names: Vec<_> = es.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, [".wh.gone", "opq/", "opq/.wh..wh..opq", "opq/new"]);
    assert!(!es[1].3, "overlay xattrs are not written");
    let mut s = String::new();
    let (_, mut r) = decompress(&blob[..]).unwrap();
    r.read_to_string(&mut s).ok();
}

/// A layer streamed while its change is made (the upperdir scanned first, then each new entry
/// appended from its open fd with the bytes just written) is byte for byte the layer of the
/// finished upperdir: xattrs, modes, owners, a directory's time given ahead, symlinks, FIFOs,
/// a long name, and a big file handed over by reading it back.
#[test]
fn a_streamed_layer_equals_the_scan_of_the_finished_upperdir() {
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path();
    fs::create_dir_all(upper.join("usr/dest")).unwrap();
    fs::write(upper.join("usr/before"), "there before").unwrap();
    let dest_mtime = fs::metadata(upper.join("usr/dest")).unwrap().mtime();
    let opts = LayerOptions { compression: Compression::None, source_date_epoch: None };
    let mut layer = forge_layerstore::diff::LayerStream::new(&opts, Vec::new()).unwrap();
    layer.scan_upper(upper).unwrap();

    let dest = upper.join("usr/dest");
    let long = "n".repeat(150);
    let sub = dest.join("sub");
    fs::create_dir(&sub).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o2750)).unwrap();
    std::os::unix::fs::chown(&sub, Some(7), Some(8)).unwrap();
    rustix::fs::lsetxattr(&sub, "user.dir", b"d", rustix::fs::XattrFlags::empty()).unwrap();
    let sub_fd = fs::File::open(&sub).unwrap();
    layer.append_open(b"usr/dest/sub", &sub, &sub_fd, Some(1_600_000_000), std::io::empty()).unwrap();
    let small = sub.join(&long);
    fs::write(&small, b"small content").unwrap();
    fs::set_permissions(&small, fs::Permissions::from_mode(0o4755)).unwrap();
    rustix::fs::lsetxattr(&small, "user.file", b"f", rustix::fs::XattrFlags::empty()).unwrap();
    let f = fs::File::open(&small).unwrap();
    layer.append_open(format!("usr/dest/sub/{long}").as_bytes(), &small, &f, None, &b"small content"[..]).unwrap();
    let big = sub.join("zbig");
    let bytes: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    fs::write(&big, &bytes).unwrap();
    let f = fs::File::open(&big).unwrap();
    layer.append_open(b"usr/dest/sub/zbig", &big, &f, None, &f).unwrap();
    symlink("../sub", dest.join("tlink")).unwrap();
    layer.append_path(b"usr/dest/tlink", &dest.join("tlink")).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, dest.join("zfifo"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap();
    layer.append_path(b"usr/dest/zfifo", &dest.join("zfifo")).unwrap();
    // A regular file needs its content: a path alone is refused.
    assert!(layer.append_path(b"usr/dest/sub/zbig", &big).is_err());

    // The times the layer was promised, set as the copy sets them: children first.
    let t = |s: i64| rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: s, tv_nsec: 0 },
        last_modification: rustix::fs::Timespec { tv_sec: s, tv_nsec: 0 },
    };
    rustix::fs::utimensat(rustix::fs::CWD, &sub, &t(1_600_000_000), rustix::fs::AtFlags::empty()).unwrap();
    rustix::fs::utimensat(rustix::fs::CWD, &dest, &t(dest_mtime), rustix::fs::AtFlags::empty()).unwrap();
    let (streamed, out) = layer.finish().unwrap();

    let (scanned, blob) = self::layer(&LayerSource::OverlayUpper(upper), Compression::None, None);
    assert_eq!(streamed, scanned);
    assert_eq!(out, blob);
    let names: Vec<String> = entries(&out).into_iter().map(|e| e.0).collect();
    assert_eq!(names[..4], ["usr/", "usr/before", "usr/dest/", "usr/dest/sub/"], "{names:?}");
    assert_eq!(names.len(), 8, "{names:?}");
}
