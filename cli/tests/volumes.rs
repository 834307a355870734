//! Volumes and mounts through the `forge` binary: named volumes made on first use and filled
//! from the image as docker does, bind mounts, tmpfs, `--read-only`, `forge volume
//! create|ls|inspect|rm|prune`, a volume in use refused, and no symlink leading out.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use common::Forge;

/// An image with files (one owned by 1000, a symlink) under /srv/data, and /srv/escape, a
/// symlink that climbs above the root.
fn data_image(forge: &Forge) {
    let dockerfile = "FROM busybox:latest\nRUN mkdir -p /srv/data && echo from-image > /srv/data/file && chown 1000:1000 /srv/data/file && ln -s /etc/passwd /srv/data/link && ln -s ../../../../../../etc /srv/escape\n";
    let ctx = forge.context("data", &[("Dockerfile", dockerfile)]);
    let r = forge.build(&ctx, "data:1", &[]);
    assert!(r.ok, "{}", r.stderr);
}

fn volume_data(forge: &Forge, name: &str) -> PathBuf {
    forge.store().join("forge/volumes").join(name).join("_data")
}

#[test]
fn a_named_volume_is_made_on_first_use_filled_from_the_image_and_kept() {
    let forge = Forge::with_busybox();
    data_image(&forge);
    let r = forge.ok(&["run", "--rm", "-v", "appdata:/srv/data", "data:1", "sh", "-c", "cat /srv/data/file; echo added > /srv/data/new"]);
    assert_eq!(r.stdout, "from-image\n");
    let data = volume_data(&forge, "appdata");
    // The image's files, owner and symlink as they were (the link not followed).
    assert_eq!(std::fs::metadata(data.join("file")).unwrap().uid(), 1000);
    assert_eq!(std::fs::read_link(data.join("link")).unwrap(), PathBuf::from("/etc/passwd"));
    assert_eq!(std::fs::read_to_string(data.join("new")).unwrap(), "added\n");
    // A second container sees what the first wrote; an existing volume is not filled again.
    let r = forge.ok(&["run", "--rm", "--mount", "type=volume,source=appdata,target=/elsewhere,readonly", "busybox", "sh", "-c", "cat /elsewhere/new; touch /elsewhere/x 2>&1; true"]);
    assert!(r.stdout.starts_with("added\n") && r.stdout.contains("Read-only file system"), "{}", r.stdout);
    // nocopy: a new volume stays empty.
    forge.ok(&["run", "--rm", "-v", "empty:/srv/data:nocopy", "data:1", "true"]);
    assert_eq!(std::fs::read_dir(volume_data(&forge, "empty")).unwrap().count(), 0);

    let ls = forge.ok(&["volume", "ls"]).stdout;
    assert_eq!(ls, "DRIVER    VOLUME NAME\nlocal     appdata\nlocal     empty\n");
    let inspect: serde_json::Value = serde_json::from_str(&forge.ok(&["volume", "inspect", "appdata"]).stdout).unwrap();
    assert_eq!(inspect[0]["Name"], "appdata");
    assert_eq!(inspect[0]["Mountpoint"], data.to_str().unwrap());
    let r = forge.run(&["volume", "inspect", "nothing"]);
    assert!(!r.ok && r.stderr.contains("no such volume: nothing"), "{}", r.stderr);
}

#[test]
fn a_volume_in_use_is_not_removed() {
    let forge = Forge::with_busybox();
    forge.ok(&["volume", "create", "kept"]);
    let id = forge.ok(&["create", "--name", "user", "-v", "kept:/data", "busybox", "true"]).stdout.trim().to_string();
    let r = forge.run(&["volume", "rm", "kept"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains(&format!("volume kept is in use by container(s) {id}")), "{}", r.stderr);
    assert!(volume_data(&forge, "kept").exists());
    // prune leaves it too, and takes the unused one.
    forge.ok(&["volume", "create", "unused"]);
    let r = forge.ok(&["volume", "prune", "-f"]);
    assert_eq!(r.stdout, "Deleted Volumes:\nunused\n\nTotal reclaimed volumes: 1\n");
    forge.ok(&["rm", "user"]);
    assert_eq!(forge.ok(&["volume", "rm", "kept"]).stdout, "kept\n");
    assert_eq!(forge.ok(&["volume", "ls", "-q"]).stdout, "");
}

#[test]
fn bind_mounts_tmpfs_and_read_only_root() {
    let forge = Forge::with_busybox();
    let host = forge.dir.path().join("host-dir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from-host\n").unwrap();
    let bind = format!("{}:/host", host.display());
    let r = forge.ok(&["run", "--rm", "-v", &bind, "busybox", "sh", "-c", "cat /host/in; echo back > /host/out"]);
    assert_eq!(r.stdout, "from-host\n");
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "back\n");
    let r = forge.ok(&["run", "--rm", "-v", &format!("{bind}:ro"), "busybox", "sh", "-c", "touch /host/no 2>&1; true"]);
    assert!(r.stdout.contains("Read-only file system"), "{}", r.stdout);
    assert!(!host.join("no").exists());
    // -v makes a missing host directory; --mount refuses it, as docker.
    let made = forge.dir.path().join("made-by-v");
    forge.ok(&["run", "--rm", "-v", &format!("{}:/m", made.display()), "busybox", "true"]);
    assert!(made.is_dir());
    let r = forge.run(&["run", "--rm", "--mount", "type=bind,source=/no/such/dir,target=/m", "busybox", "true"]);
    assert_eq!(r.code, Some(125));
    assert!(r.stderr.contains("the bind source path /no/such/dir does not exist"), "{}", r.stderr);

    // --read-only: the root cannot be written, the mounts can.
    let script = "touch /root-file 2>&1; echo x > /run/t && echo tmpfs-ok; echo y > /host/rw && echo bind-ok; grep ' /run ' /proc/mounts";
    let r = forge.ok(&["run", "--rm", "--read-only", "--tmpfs", "/run:size=1m", "-v", &bind, "busybox", "sh", "-c", script]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].contains("Read-only file system"), "{}", r.stdout);
    assert_eq!(lines[1..3], ["tmpfs-ok", "bind-ok"]);
    assert!(lines[3].starts_with("tmpfs /run tmpfs rw") && lines[3].contains("size=1024k"), "{}", r.stdout);
    let r = forge.ok(&["run", "--rm", "--mount", "type=tmpfs,target=/scratch", "busybox", "sh", "-c", "grep -c ' /scratch tmpfs ' /proc/mounts"]);
    assert_eq!(r.stdout, "1\n");
}

#[test]
fn no_symlink_or_name_leads_out_of_the_volumes() {
    let forge = Forge::with_busybox();
    data_image(&forge);
    // The image's /srv/escape climbs above its root: it resolves inside the image (its /etc),
    // never to the host's /etc, for the copy into the new volume and for the mount.
    let r = forge.ok(&["run", "--rm", "-v", "esc:/srv/escape", "data:1", "sh", "-c", "ls /srv/escape | sort"]);
    // The image's own /etc: without the files a container gets bound over it.
    let image_etc: String = forge.ok(&["run", "--rm", "data:1", "sh", "-c", "ls /etc | sort"]).stdout.lines().filter(|f| !["hostname", "hosts", "resolv.conf"].contains(f)).map(|f| format!("{f}\n")).collect();
    assert!(image_etc.contains("passwd\n"), "{image_etc}");
    assert_eq!(r.stdout, image_etc);
    let mut copied: Vec<String> = std::fs::read_dir(volume_data(&forge, "esc")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    copied.sort();
    assert_eq!(copied.join("\n") + "\n", image_etc);
    // The host's /etc was not mounted over (the image's was).
    assert!(std::path::Path::new("/etc/passwd").exists());
    // Names are never paths.
    for bad in ["a/b:/x", "x:/x", "na\\me:/x"] {
        let r = forge.run(&["run", "--rm", "-v", bad, "busybox", "true"]);
        assert_eq!(r.code, Some(125), "{bad}: {}", r.stderr);
    }
    let r = forge.run(&["volume", "create", "../x"]);
    assert!(!r.ok && r.stderr.contains("invalid volume name"), "{}", r.stderr);
}

#[test]
fn an_anonymous_volume_goes_with_its_rm_container() {
    let forge = Forge::with_busybox();
    data_image(&forge);
    // Filled from the image like a named one; gone with the --rm container.
    let r = forge.ok(&["run", "--rm", "-v", "/srv/data", "data:1", "sh", "-c", "cat /srv/data/file; ls /sys > /dev/null"]);
    assert_eq!(r.stdout, "from-image\n");
    assert_eq!(forge.ok(&["volume", "ls", "-q"]).stdout, "");
    // Without --rm it stays, under a random 64-hex name, and is in use until the container goes.
    forge.ok(&["run", "--name", "kept", "--mount", "type=volume,target=/srv/data", "data:1", "true"]);
    let name = forge.ok(&["volume", "ls", "-q"]).stdout.trim().to_string();
    assert!(name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    assert_eq!(std::fs::read_to_string(volume_data(&forge, &name).join("file")).unwrap(), "from-image\n");
    assert!(!forge.run(&["volume", "rm", &name]).ok);
    forge.ok(&["rm", "kept"]);
    forge.ok(&["volume", "rm", &name]);
}

#[test]
fn an_images_volume_gets_an_anonymous_volume_that_rm_v_removes() {
    let forge = Forge::with_busybox();
    data_image(&forge);
    let ctx = forge.context("declared", &[("Dockerfile", "FROM data:1\nVOLUME /srv/data\n")]);
    let r = forge.build(&ctx, "declared:1", &[]);
    assert!(r.ok, "{}", r.stderr);
    forge.ok(&["run", "--name", "decl", "declared:1", "sh", "-c", "echo more >> /srv/data/file"]);
    let name = forge.ok(&["volume", "ls", "-q"]).stdout.trim().to_string();
    assert_eq!(std::fs::read_to_string(volume_data(&forge, &name).join("file")).unwrap(), "from-image\nmore\n");
    // A mount at the same path replaces it.
    forge.ok(&["run", "--rm", "-v", "named:/srv/data/", "declared:1", "true"]);
    assert_eq!(forge.ok(&["volume", "ls", "-q"]).stdout, format!("{name}\nnamed\n"));
    assert_eq!(forge.ok(&["rm", "-v", "decl"]).stdout, "decl\n");
    assert_eq!(forge.ok(&["volume", "ls", "-q"]).stdout, "named\n");
}
