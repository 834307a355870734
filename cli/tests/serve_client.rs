//! forge's CLI as a client of `forge serve` (`forge -H`, `FORGE_HOST`): `ps`, `images` and
//! `version` print the server's store as the local commands print theirs.

mod common;

use common::server::Server;
use common::Forge;

#[test]
fn forge_dash_h_lists_the_servers_containers_and_images() {
    // The client's own store is empty: what it prints comes from the server's.
    let forge = Forge::with_busybox();
    let client = Forge::empty();
    let server = Server::start(&forge, &[]);
    let host = format!("unix://{}", server.socket.display());
    let id = server.ok(&["create", "--name", "hello", "busybox", "echo", "hi"]).stdout.trim().to_string();

    let remote = client.ok(&["-H", &host, "ps", "-a", "--format", "json"]).stdout;
    let row: serde_json::Value = serde_json::from_str(remote.trim()).unwrap();
    assert_eq!((row["ID"].as_str(), row["Names"].as_str(), row["Image"].as_str(), row["State"].as_str()), (Some(&id[..12]), Some("hello"), Some("busybox"), Some("created")));
    assert_eq!(row["Command"], "\"echo hi\"");
    assert_eq!(client.ok(&["-H", &host, "ps", "-aq"]).stdout.trim(), &id[..12]);
    // Without -a only running ones, as locally; without -H the client's own (empty) store.
    assert_eq!(client.ok(&["-H", &host, "ps", "-q"]).stdout, "");
    assert_eq!(client.ok(&["ps", "-aq"]).stdout, "");

    // FORGE_HOST does what -H does; the table matches the server's store's own listing.
    let images = client.cmd().env("FORGE_HOST", &host).args(["images"]).output().unwrap();
    let images = String::from_utf8_lossy(&images.stdout).into_owned();
    assert_eq!(images, forge.ok(&["images"]).stdout);
    assert!(images.lines().nth(1).is_some_and(|l| l.starts_with("busybox ") && l.contains("latest")), "{images}");

    let version = client.ok(&["-H", &host, "version"]).stdout;
    assert!(version.contains(&format!("Server: forge {}", env!("CARGO_PKG_VERSION"))) && version.contains("API 1.43"), "{version}");

    // What runs only on a local store refuses -H instead of acting on the wrong store.
    let rm = client.run(&["-H", &host, "rm", "hello"]);
    assert!(!rm.ok && rm.stderr.contains("runs ps, images and version on the server"), "{}", rm.stderr);
    assert_eq!(server.ok(&["ps", "-aq"]).stdout.trim(), &id[..12]);
    let nowhere = client.run(&["-H", "unix:///nonexistent/forge.sock", "ps"]);
    assert!(!nowhere.ok && nowhere.stderr.contains("connecting to /nonexistent/forge.sock"), "{}", nowhere.stderr);
    let bad = client.run(&["-H", "http://x", "ps"]);
    assert!(!bad.ok && bad.stderr.contains("use unix:///path/to/socket or tcp://host:port"), "{}", bad.stderr);
    server.ok(&["rm", "hello"]);
}
