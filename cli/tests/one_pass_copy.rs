//! The one-pass COPY (a directory to a destination that does not exist yet, written straight
//! into the snapshot's upperdir with its layer made from the same reads), through the binary:
//! every layer it makes is the diff of the snapshot it leaves, and the image holds what a COPY
//! through the overlay mount gives.

mod common;

use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;

use common::Forge;
use forge_layerstore::diff::{write_layer, LayerOptions, LayerSource};
use forge_layerstore::{Digest, Store};

/// A tree with what a COPY carries: nested and empty directories, modes with setuid, setgid
/// and sticky bits, symlinks (relative, absolute, dangling), a FIFO, hard links, a long name,
/// an xattr (not copied), a file past the in-memory size, and an ignored directory with an
/// exception.
fn rich_context(forge: &Forge) -> std::path::PathBuf {
    let long = "n".repeat(120);
    let ctx = forge.context(
        "rich",
        &[
            ("tree/a.txt", "alpha\n"),
            ("tree/sub/b.txt", "beta\n"),
            ("tree/sub/deeper/c.txt", "gamma\n"),
            (&format!("tree/sub/{long}"), "long name\n"),
            ("tree/skip/gone.txt", "ignored\n"),
            ("tree/skip/keep.txt", "kept\n"),
            (".dockerignore", "tree/skip\n!tree/skip/keep.txt\n"),
        ],
    );
    let t = ctx.join("tree");
    std::fs::create_dir(t.join("empty")).unwrap();
    let mode = |p: &str, m: u32| std::fs::set_permissions(t.join(p), std::fs::Permissions::from_mode(m)).unwrap();
    mode("a.txt", 0o4755);
    mode("sub", 0o2775);
    mode("empty", 0o1777);
    mode("sub/b.txt", 0o600);
    symlink("../a.txt", t.join("sub/rel-link")).unwrap();
    symlink("/etc/passwd", t.join("abs-link")).unwrap();
    symlink("nowhere", t.join("dangling")).unwrap();
    std::fs::hard_link(t.join("a.txt"), t.join("hard.txt")).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, t.join("fifo"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o640), 0).unwrap();
    rustix::fs::lsetxattr(t.join("a.txt"), "user.note", b"x", rustix::fs::XattrFlags::empty()).unwrap();
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(t.join("sub/big.bin"), &big).unwrap();
    // Fixed times, so the layer's entries carry something to compare.
    let stamp = std::process::Command::new("find").arg(&t).args(["-exec", "touch", "-h", "-d", "@1600000000", "{}", "+"]).status().unwrap();
    assert!(stamp.success());
    ctx
}

/// Each layer of `image` (of `count`) above the base equals the diff of the snapshot committed
/// for it, read again from disk.
fn assert_layers_are_their_snapshots(forge: &Forge, image: &str, count: usize) {
    let store = Store::open(&forge.store()).unwrap();
    let diff_ids: Vec<Digest> =
        forge.inspect(image)["RootFS"]["diff_ids"].as_array().unwrap().iter().map(|d| Digest::from_str(d.as_str().unwrap()).unwrap()).collect();
    assert_eq!(diff_ids.len(), count);
    for n in 2..=diff_ids.len() {
        let chain = forge_layerstore::chain_id(&diff_ids[..n]).unwrap();
        let own = store.snapshots().dirs(chain.as_str()).unwrap().lowerdirs[0].clone();
        let opts = LayerOptions { compression: forge_layerstore::archive::Compression::None, source_date_epoch: None };
        let scanned = write_layer(&LayerSource::OverlayUpper(&own), &opts, std::io::sink()).unwrap();
        assert_eq!(scanned.diff_id, diff_ids[n - 1], "layer {} is not the diff of its snapshot {}", n - 1, own.display());
    }
}

#[test]
fn a_copy_to_a_new_destination_makes_the_layer_of_its_snapshot() {
    let forge = Forge::with_busybox();
    let ctx = rich_context(&forge);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\n\
         COPY tree/ /new/dest/\n\
         COPY --chown=7:8 --chmod=750 tree /owned\n\
         COPY tree/ /etc/under-existing/\n\
         COPY tree/ /new/dest/\n",
    )
    .unwrap();
    let r = forge.build(&ctx, "rich:1", &[]);
    assert!(r.ok, "{}", r.stderr);

    assert_layers_are_their_snapshots(&forge, "rich:1", 5);

    let root = forge.rootfs("rich:1");
    for dest in ["new/dest", "etc/under-existing"] {
        let d = root.join(dest);
        let meta = |p: &str| std::fs::symlink_metadata(d.join(p)).unwrap_or_else(|e| panic!("{dest}/{p}: {e}"));
        assert_eq!(std::fs::read_to_string(d.join("sub/deeper/c.txt")).unwrap(), "gamma\n");
        assert_eq!(std::fs::read(d.join("sub/big.bin")).unwrap().len(), 3 << 20);
        assert_eq!((meta("a.txt").mode() & 0o7777, meta("a.txt").uid(), meta("a.txt").mtime()), (0o4755, 0, 1_600_000_000));
        assert_eq!(meta("sub").mode() & 0o7777, 0o2775);
        assert_eq!(meta("sub").mtime(), 1_600_000_000, "{dest}/sub keeps its time after its children are written");
        assert_eq!(meta("empty").mode() & 0o7777, 0o1777);
        assert_eq!(meta("sub/b.txt").mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read_link(d.join("sub/rel-link")).unwrap(), Path::new("../a.txt"));
        assert_eq!(std::fs::read_link(d.join("abs-link")).unwrap(), Path::new("/etc/passwd"));
        assert_eq!(std::fs::read_link(d.join("dangling")).unwrap(), Path::new("nowhere"));
        assert!(meta("fifo").file_type().is_fifo());
        assert_eq!(std::fs::read_to_string(d.join("hard.txt")).unwrap(), "alpha\n");
        assert_eq!(std::fs::read_to_string(d.join("skip/keep.txt")).unwrap(), "kept\n");
        assert!(!d.join("skip/gone.txt").exists());
        assert_eq!(std::fs::read_to_string(d.join(format!("sub/{}", "n".repeat(120)))).unwrap(), "long name\n");
    }
    let owned = |p: &str| std::fs::symlink_metadata(root.join("owned").join(p)).unwrap();
    for p in ["a.txt", "sub", "sub/b.txt", "sub/deeper/c.txt"] {
        assert_eq!((owned(p).uid(), owned(p).gid(), owned(p).mode() & 0o7777), (7, 8, 0o750), "/owned/{p}");
    }
    assert!(owned("fifo").file_type().is_fifo() && owned("abs-link").file_type().is_symlink());
    // /etc's own entry (copied up to hold the new directory) kept the base's metadata.
    let etc = std::fs::metadata(root.join("etc")).unwrap();
    let base = std::fs::metadata(forge.rootfs("busybox:latest").join("etc")).unwrap();
    assert_eq!((etc.mode(), etc.uid(), etc.gid()), (base.mode(), base.uid(), base.gid()));
}

#[test]
fn a_file_copied_to_a_new_name_makes_the_layer_of_its_snapshot() {
    let forge = Forge::with_busybox();
    let ctx = forge.context("files", &[("small.txt", "small\n"), ("sub/inner.txt", "inner\n")]);
    // Past the in-memory size: copied by the kernel while the layer reads it.
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(ctx.join("big.bin"), &big).unwrap();
    std::fs::set_permissions(ctx.join("big.bin"), std::fs::Permissions::from_mode(0o4751)).unwrap();
    let stamp = std::process::Command::new("touch").args(["-d", "@1600000000"]).arg(ctx.join("big.bin")).arg(ctx.join("small.txt")).status().unwrap();
    assert!(stamp.success());
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\n\
         COPY big.bin /new/dir/big.bin\n\
         COPY --chown=7:8 --chmod=640 big.bin /etc/\n\
         COPY small.txt /etc\n\
         COPY sub/inner.txt /top.txt\n\
         COPY sub/inner.txt /etc/small.txt\n",
    )
    .unwrap();
    let r = forge.build(&ctx, "files:1", &[]);
    assert!(r.ok, "{}", r.stderr);
    assert_layers_are_their_snapshots(&forge, "files:1", 6);

    let root = forge.rootfs("files:1");
    let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(std::fs::read(root.join("new/dir/big.bin")).unwrap(), big);
    assert_eq!((meta("new/dir/big.bin").mode() & 0o7777, meta("new/dir/big.bin").uid(), meta("new/dir/big.bin").mtime()), (0o4751, 0, 1_600_000_000));
    assert_eq!(std::fs::read(root.join("etc/big.bin")).unwrap(), big);
    assert_eq!((meta("etc/big.bin").uid(), meta("etc/big.bin").gid(), meta("etc/big.bin").mode() & 0o7777), (7, 8, 0o640));
    assert_eq!(std::fs::read_to_string(root.join("top.txt")).unwrap(), "inner\n");
    // A name already taken goes through the mount, which replaces it.
    assert_eq!(std::fs::read_to_string(root.join("etc/small.txt")).unwrap(), "inner\n");
    // /etc's own entry (copied up to hold the new file) kept the base's metadata.
    let etc = meta("etc");
    let base = std::fs::metadata(forge.rootfs("busybox:latest").join("etc")).unwrap();
    assert_eq!((etc.mode(), etc.uid(), etc.gid()), (base.mode(), base.uid(), base.gid()));
}
