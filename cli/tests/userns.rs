//! `--userns`: a remapped container's root is the `forge` range of /etc/subuid and /etc/subgid
//! (made when missing), the image's files still look root-owned inside without a copy, and
//! the default stays the host's user namespace.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::Forge;

/// The start of the `forge` range in a subordinate-id file.
fn forge_range(file: &str) -> u32 {
    let text = std::fs::read_to_string(file).unwrap();
    let line = text.lines().find(|l| l.starts_with("forge:")).unwrap_or_else(|| panic!("no forge range in {file}: {text}"));
    line.split(':').nth(1).unwrap().parse().unwrap()
}

/// Finds the file called `name` under `dir`.
fn find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if e.file_name() == name {
            return Some(p);
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if let Some(f) = find(&p, name) {
                return Some(f);
            }
        }
    }
    None
}

#[test]
fn remap_maps_root_to_the_forge_range_and_keeps_image_ownership() {
    let forge = Forge::with_busybox();
    // The first remapped container makes the range when there is none.
    forge.ok(&["run", "--rm", "--userns=remap", "busybox", "true"]);
    let (uid, gid) = (forge_range("/etc/subuid"), forge_range("/etc/subgid"));
    assert!(uid >= 100_000 && gid >= 100_000, "{uid} {gid}");
    // As under docker's remap, a host directory is the container root's to write once it
    // belongs to the mapped user.
    let data = forge.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
    let volume = format!("{}:/data", data.display());
    let script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; stat -c %u:%g /bin/busybox /etc/passwd /; \
                  touch /data/made-inside; echo x > /userns-marker; chown 1000:1000 /userns-marker; stat -c %u:%g /userns-marker";
    let r = forge.run(&["run", "--name", "remapped", "--userns=remap", "-v", &volume, "busybox", "sh", "-c", script]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let lines: Vec<Vec<&str>> = r.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], vec!["0".to_string(), uid.to_string(), "65536".into()], "{}", r.stdout);
    assert_eq!(lines[1], vec!["0".to_string(), gid.to_string(), "65536".into()], "{}", r.stdout);
    // Root inside; the image's files (root-owned on disk) are root's inside.
    assert_eq!(&lines[2..6], &[vec!["0"], vec!["0"], vec!["0:0"], vec!["0:0"]], "{}", r.stdout);
    assert_eq!(lines[6], vec!["0:0"], "{}", r.stdout);
    assert_eq!(lines[7], vec!["1000:1000"], "{}", r.stdout);
    // A file container root makes on a host bind mount is the mapped user's on the host.
    let made = std::fs::metadata(data.join("made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (uid, gid));
    // The writable layer on disk holds the ids as the container sees them: no shift leaks
    // into the store, so its diff is the same as without the remap.
    let marker = find(&forge.store(), "userns-marker").expect("the container's new file in its writable layer");
    let m = std::fs::metadata(&marker).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000), "{}", marker.display());
    // The mapping is the container's, recorded at create: a restart keeps it.
    let again = forge.run(&["start", "-a", "remapped"]);
    assert_eq!(again.stdout, r.stdout, "{}", again.stderr);
    forge.ok(&["rm", "remapped"]);
}

#[test]
fn a_remapped_containers_new_volume_is_its_roots() {
    let forge = Forge::with_busybox();
    let r = forge.run(&["run", "--rm", "--userns=remap", "-v", "userns-vol:/vol", "busybox", "sh", "-c", "touch /vol/f && stat -c %u:%g /vol /vol/f"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout, "0:0\n0:0\n");
    let inspected: serde_json::Value = serde_json::from_str(&forge.ok(&["volume", "inspect", "userns-vol"]).stdout).unwrap();
    let mountpoint = inspected[0]["Mountpoint"].as_str().unwrap_or_else(|| panic!("{inspected}"));
    let f = std::fs::metadata(Path::new(mountpoint).join("f")).unwrap();
    assert_eq!(f.uid(), forge_range("/etc/subuid"));
}

#[test]
fn host_is_the_default_and_the_store_may_default_to_remap() {
    let forge = Forge::with_busybox();
    let uid_map = |args: &[&str]| {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["busybox", "cat", "/proc/self/uid_map"]);
        let r = forge.run(&all);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r.stdout.split_whitespace().map(str::to_string).collect::<Vec<_>>()
    };
    let host = vec!["0".to_string(), "0".into(), "4294967295".into()];
    assert_eq!(uid_map(&[]), host);
    assert_eq!(uid_map(&["--userns=host"]), host);
    std::fs::write(forge.store().join("config.json"), r#"{"userns-remap": "default"}"#).unwrap();
    let remapped = uid_map(&[]);
    assert_eq!(remapped[0], "0");
    assert_eq!(remapped[1], forge_range("/etc/subuid").to_string());
    assert_eq!(uid_map(&["--userns=host"]), host);
}

#[test]
fn bad_userns_requests_are_refused_with_the_reason() {
    let forge = Forge::with_busybox();
    let r = forge.run(&["run", "--rm", "--userns=nobody", "busybox", "true"]);
    assert_eq!(r.code, Some(125));
    assert!(r.stderr.contains("--userns") && r.stderr.contains("remap"), "{}", r.stderr);
    let r = forge.run(&["run", "--rm", "--userns=remap", "--network", "host", "busybox", "true"]);
    assert_eq!(r.code, Some(125));
    assert!(r.stderr.contains("--network host"), "{}", r.stderr);
    let r = forge.run(&["run", "--rm", "--userns=remap", "--privileged", "busybox", "true"]);
    assert_eq!(r.code, Some(125));
    assert!(r.stderr.contains("--privileged"), "{}", r.stderr);
    std::fs::write(forge.store().join("config.json"), r#"{"userns-remap": 7}"#).unwrap();
    let r = forge.run(&["run", "--rm", "busybox", "true"]);
    assert_eq!(r.code, Some(125));
    assert!(r.stderr.contains("config.json") && r.stderr.contains("userns-remap"), "{}", r.stderr);
}
