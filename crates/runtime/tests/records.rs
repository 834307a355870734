//! The records of containers, without running any: IDs and prefixes, names, removal, and
//! reconciling a container whose supervisor died.

use forge_layerstore::diff::{LayerOptions, LayerSource};
use forge_layerstore::{ImageConfig, Layer, Store};
use forge_runtime::{Containers, CreateOptions, Error, Status};

/// A store with `tiny:1`, one layer holding a file, whose CMD is `cat /hello`.
fn store_with_image(dir: &std::path::Path) -> Store {
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hello"), "hi\n").unwrap();
    let store = Store::open(&dir.join("store")).unwrap();
    let layer = store.write_layer(&LayerSource::Dirs { lower: None, upper: &tree }, &LayerOptions::default()).unwrap();
    let mut config = ImageConfig::scratch();
    config.rootfs.diff_ids.push(layer.diff_id.clone());
    config.config.cmd = Some(vec!["cat".into(), "/hello".into()]);
    config.config.env = Some(vec!["PATH=/bin".into()]);
    let manifest = store.write_image(&config, &[Layer::from(&layer)]).unwrap();
    store.tag("tiny:1", &manifest).unwrap();
    store
}

fn opts(name: Option<&str>) -> CreateOptions {
    CreateOptions { image: "tiny:1".into(), name: name.map(str::to_string), ..CreateOptions::default() }
}

#[test]
fn ids_prefixes_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_image(dir.path());
    let containers = Containers::open(&store).unwrap();
    // 17 IDs: two of them share their first hex digit.
    let ids: Vec<String> = (0..17).map(|_| containers.create(&opts(None)).unwrap().id().to_string()).collect();
    let shared = ids.iter().find(|a| ids.iter().filter(|b| b[..1] == a[..1]).count() > 1).unwrap();
    assert!(matches!(containers.get(&shared[..1]), Err(Error::Ambiguous(_))));
    assert_eq!(containers.get(&shared[..12]).unwrap().id(), shared);
    assert_eq!(containers.get(&shared.to_uppercase()[..12]).unwrap().id(), shared);

    let c = containers.create(&opts(Some("web"))).unwrap();
    assert_eq!(c.config.args, ["cat", "/hello"]);
    assert_eq!(c.config.hostname, c.short_id());
    assert_eq!(containers.get("web").unwrap().id(), c.id());
    assert!(matches!(containers.create(&opts(Some("web"))), Err(Error::NameInUse { .. })));
    assert_eq!(containers.list().unwrap().len(), 18);
    assert_eq!(containers.list().unwrap().last().unwrap().id(), c.id(), "oldest first");
    containers.remove(&c, false).unwrap();
    assert!(matches!(containers.get("web"), Err(Error::NotFound(_))));
    containers.create(&opts(Some("web"))).unwrap();
    assert_eq!(containers.prune().unwrap().len(), 18);
    assert!(containers.list().unwrap().is_empty());
}

#[test]
fn a_running_container_whose_supervisor_is_gone_is_recorded_as_exited() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_image(dir.path());
    let containers = Containers::open(&store).unwrap();
    let c = containers.create(&opts(None)).unwrap();
    // What a forge killed while running it leaves: "running", and a lock nobody holds.
    let state_path = containers.dir_of(c.id()).join("state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["Status"] = "running".into();
    state["Pid"] = 999_999_999u32.into();
    state["Supervisor"] = 999_999_998u32.into();
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();

    let seen = containers.get(c.short_id()).unwrap();
    assert_eq!((seen.state.status, seen.state.exit_code, seen.state.pid), (Status::Exited, 255, 0));
    assert!(seen.state.error.contains("999999998"), "{}", seen.state.error);
    // Recorded, not only shown.
    let again: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    assert_eq!(again["Status"], "exited");
}

#[test]
fn concurrent_creates_get_a_name_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_image(dir.path());
    for round in 0..3 {
        let name = format!("race{round}");
        let results: Vec<Result<String, Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (store, name) = (&store, &name);
                    // Each thread its own handle, as separate forge processes would have.
                    s.spawn(move || Containers::open(store).unwrap().create(&opts(Some(name))).map(|c| c.id().to_string()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "{results:?}");
        assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, Error::NameInUse { .. })), "{results:?}");
        let containers = Containers::open(&store).unwrap();
        assert_eq!(containers.get(&name).unwrap().id(), won[0]);
    }
    // The losers left no records.
    assert_eq!(Containers::open(&store).unwrap().list().unwrap().len(), 3);
}
