//! Image names are checked with docker's grammar before they become tags.

use forge_layerstore::store::{check_name, Error};

#[test]
fn names_follow_dockers_grammar() {
    for good in [
        "busybox",
        "busybox:latest",
        "user/app:v1.2-rc_3",
        "127.0.0.1:5000/a/b/c:1",
        "localhost:5000/x",
        "Registry.Example.com/app:1",
        "docker.io/library/busybox@sha256:0123456789012345678901234567890123456789012345678901234567890123",
    ] {
        check_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for (bad, why) in [
        ("../../../etc:1", ""),
        ("a b:1", ""),
        ("UPPER/x:1", "must be lowercase"),
        ("x/UPPER:1", "must be lowercase"),
        ("", "empty"),
        ("a:b:c:d", ""),
        ("name:", ""),
        ("-lead:1", ""),
        ("a//b:1", ""),
        ("a\nb:1", ""),
        ("x:bad/tag", ""),
    ] {
        match check_name(bad) {
            Err(e @ Error::InvalidName { .. }) => assert!(e.to_string().contains(why), "{bad:?}: {e}"),
            other => panic!("{bad:?} was accepted: {other:?}"),
        }
    }
    let long = format!("{}:1", "a".repeat(300));
    assert!(check_name(&long).is_err(), "over 255 characters");
}

#[test]
fn a_bad_name_is_never_tagged() {
    let dir = tempfile::tempdir().unwrap();
    let store = forge_layerstore::Store::open(&dir.path().join("store")).unwrap();
    let config = forge_layerstore::ImageConfig::scratch();
    let manifest = store.write_image(&config, &[]).unwrap();
    assert!(store.tag("../../../etc:1", &manifest).is_err());
    assert!(store.index().list().unwrap().is_empty());
}
