//! Snapshots: stacked layer unpack, overlay mounts of the result, commit/remove rules, and
//! concurrent unpacks of one chain. Mount tests need root; they skip where mounting fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use forge_layerstore::archive::Compression;
use forge_layerstore::diff::{write_layer, LayerInfo, LayerOptions, LayerSource};
use forge_layerstore::snapshot::{Error, Kind, Mount, MountKind, Snapshotter};

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn layer(src: LayerSource<'_>) -> (LayerInfo, Vec<u8>) {
    let mut out = Vec::new();
    let opts = LayerOptions {
        compression: Compression::Gzip,
        source_date_epoch: None,
    };
    let info = write_layer(&src, &opts, &mut out).unwrap();
    (info, out)
}

/// Mounts one overlay description with the classic mount(8) string.
fn mount_classic(m: &Mount, target: &Path) -> Option<Mounted> {
    assert_eq!(m.kind, MountKind::Overlay);
    let ok = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &m.options.join(",")])
        .arg(target)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then(|| Mounted(target.to_path_buf())).or_else(|| {
        eprintln!("skipping: cannot mount overlayfs here (needs root)");
        None
    })
}

/// Mounts with the new mount API, one `lowerdir+` per layer, as the sandbox does: no
/// one-page limit on the option string.
fn mount_new_api(m: &Mount, target: &Path) -> Mounted {
    use rustix::mount::*;
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).unwrap();
    for opt in &m.options {
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        match k {
            "lowerdir" => {
                for dir in v.split(':') {
                    fsconfig_set_string(&fs, "lowerdir+", dir).unwrap();
                }
            }
            "ro" => {}
            _ => fsconfig_set_string(&fs, k, v).unwrap(),
        }
    }
    fsconfig_create(&fs).unwrap();
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).unwrap();
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .unwrap();
    Mounted(target.to_path_buf())
}

#[test]
fn three_stacked_layers_mount_as_the_merged_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (t1, t2, u3) = (t.join("t1"), t.join("t2"), t.join("u3"));
    fs::create_dir_all(t1.join("d")).unwrap();
    fs::write(t1.join("a"), "v1").unwrap();
    fs::write(t1.join("b"), "b").unwrap();
    fs::write(t1.join("d/x"), "x").unwrap();
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&t1)
        .arg(&t2)
        .status()
        .unwrap()
        .success());
    fs::write(t2.join("a"), "v2").unwrap();
    fs::remove_file(t2.join("b")).unwrap();
    // Layer 3 as an upperdir would hold it: `d` made opaque with new content.
    fs::create_dir_all(u3.join("d")).unwrap();
    fs::write(u3.join("d/new"), "n").unwrap();
    rustix::fs::lsetxattr(
        u3.join("d"),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();

    let (l1, b1) = layer(LayerSource::Dirs {
        lower: None,
        upper: &t1,
    });
    let (l2, b2) = layer(LayerSource::Dirs {
        lower: Some(&t1),
        upper: &t2,
    });
    let (l3, b3) = layer(LayerSource::OverlayUpper(&u3));

    let snap = Snapshotter::open(&t.join("store")).unwrap();
    let c1 = snap.unpack_layer(&b1[..], None, &l1.diff_id).unwrap();
    assert_eq!(c1, l1.diff_id);
    let c2 = snap.unpack_layer(&b2[..], Some(&c1), &l2.diff_id).unwrap();
    let c3 = snap.unpack_layer(&b3[..], Some(&c2), &l3.diff_id).unwrap();
    assert_eq!(
        forge_layerstore::chain_id([&l1.diff_id, &l2.diff_id, &l3.diff_id]).unwrap(),
        c3
    );
    // Unpacking again is a no-op returning the same chain.
    assert_eq!(
        snap.unpack_layer(&b3[..], Some(&c2), &l3.diff_id).unwrap(),
        c3
    );
    assert!(snap.exists(&c3).unwrap());
    // A wrong diffID is refused and leaves nothing behind.
    let bogus = forge_layerstore::Digest::of(b"bogus");
    assert!(matches!(
        snap.unpack_layer(&b1[..], None, &bogus),
        Err(Error::DiffIdMismatch { .. })
    ));

    let mounts = snap.prepare("step-1", Some(&c3)).unwrap();
    assert_eq!(mounts.len(), 1);
    assert!(mounts[0].options.iter().any(|o| o == "redirect_dir=off"));
    assert!(matches!(
        snap.prepare("step-1", Some(&c3)),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        snap.prepare("x", Some(&bogus)),
        Err(Error::NotFound(_))
    ));

    let merged = t.join("merged");
    fs::create_dir(&merged).unwrap();
    {
        let Some(_m) = mount_classic(&mounts[0], &merged) else {
            return;
        };
        assert_eq!(fs::read_to_string(merged.join("a")).unwrap(), "v2");
        assert!(!merged.join("b").exists());
        assert!(!merged.join("d/x").exists());
        assert_eq!(fs::read_to_string(merged.join("d/new")).unwrap(), "n");
        fs::write(merged.join("run-output"), "r").unwrap();
    }
    let c4 = forge_layerstore::Digest::of(b"layer 4");
    snap.commit(&c4, "step-1").unwrap();
    assert!(matches!(snap.stat("step-1"), Err(Error::NotFound(_))));
    let info = snap.stat(c4.as_str()).unwrap();
    assert_eq!(
        (info.kind, info.parent.as_ref()),
        (Kind::Committed, Some(&c3))
    );
    assert!(matches!(snap.remove(c3.as_str()), Err(Error::InUse(_))));
    let view = snap.view("look", Some(&c4)).unwrap();
    assert!(view[0].options.iter().any(|o| o == "ro"));
    assert_eq!(snap.list().unwrap().len(), 5);
    snap.remove("look").unwrap();
    snap.remove(c4.as_str()).unwrap();
    snap.remove(c3.as_str()).unwrap();
    assert_eq!(snap.list().unwrap().len(), 2);
    let leftovers: Vec<_> = fs::read_dir(t.join("store/forge/snapshots/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.parse::<u64>().is_err())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn concurrent_unpacks_of_one_chain_both_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..200 {
        fs::write(src.join(format!("f{i}")), format!("{i}")).unwrap();
    }
    let (info, blob) = layer(LayerSource::Dirs {
        lower: None,
        upper: &src,
    });
    let store = tmp.path().join("store");
    let chains: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (store, blob, d) = (&store, &blob, &info.diff_id);
                s.spawn(move || {
                    Snapshotter::open(store)
                        .unwrap()
                        .unpack_layer(&blob[..], None, d)
                        .unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(chains.iter().all(|c| c == &info.diff_id));
    let snap = Snapshotter::open(&store).unwrap();
    assert_eq!(snap.list().unwrap().len(), 1);
    let dirs = fs::read_dir(store.join("forge/snapshots/snapshots"))
        .unwrap()
        .count();
    assert_eq!(dirs, 1, "losers removed their copies");
}

#[test]
fn a_hundred_and_twenty_layers_mount_with_the_new_api() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let snap = Snapshotter::open(&t.join("store")).unwrap();
    let mut parent = None;
    for i in 0..120 {
        let src = t.join(format!("src{i}"));
        fs::create_dir(&src).unwrap();
        fs::write(src.join(format!("f{i}")), format!("{i}")).unwrap();
        let (info, blob) = layer(LayerSource::Dirs {
            lower: None,
            upper: &src,
        });
        parent = Some(
            snap.unpack_layer(&blob[..], parent.as_ref(), &info.diff_id)
                .unwrap(),
        );
    }
    let mounts = snap.prepare("many", parent.as_ref()).unwrap();
    let lowerdir = mounts[0]
        .options
        .iter()
        .find(|o| o.starts_with("lowerdir="))
        .unwrap();
    assert_eq!(lowerdir.split(':').count(), 120);
    let merged = t.join("merged");
    fs::create_dir(&merged).unwrap();
    if !Command::new("mount")
        .args(["-t", "tmpfs", "probe"])
        .arg(&merged)
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipping: cannot mount here (needs root)");
        return;
    }
    drop(Mounted(merged.clone()));
    let _m = mount_new_api(&mounts[0], &merged);
    for i in [0, 59, 119] {
        assert_eq!(
            fs::read_to_string(merged.join(format!("f{i}"))).unwrap(),
            i.to_string()
        );
    }
}
